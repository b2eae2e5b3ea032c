"""The Slack edge: the Bolt app (Socket Mode or HTTP), thin listeners, and the notifier."""
