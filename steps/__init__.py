"""Everything that touches the PostgreSQL servers being moved; nothing here knows Slack or Redis."""
