"""/pgmove: persist the request, ack. Nothing else happens in the edge process (see bot/responder.py)."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import Ack, App

from pgmove.state.store import Store


def register(app: App, store: Store) -> None:
    @app.command("/pgmove")
    def pgmove(ack: Ack, body: dict[str, Any]) -> None:
        # Stored before the ack leaves: a request Slack saw acknowledged is never lost, even if the bot
        # dies right after. An LPUSH is the only work done before answering Slack.
        try:
            store.push_chat_request(json.dumps({"kind": "command", "body": body}))
        except Exception:
            ack(response_type="ephemeral", text="pgmove cannot reach its store right now; nothing was done. Try again shortly.")
            raise
        ack()
