"""Approve and Reject buttons: persist the click, ack; the responder decides (the approver is the payload's user)."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import Ack, App

from pgmove.handlers import blocks
from pgmove.state.store import Store


def register(app: App, store: Store) -> None:
    def persist_and_ack(ack: Ack, body: dict[str, Any]) -> None:
        try:
            store.push_chat_request(json.dumps({"kind": "action", "body": body}))
        finally:
            ack()

    app.action(blocks.APPROVE)(persist_and_ack)
    app.action(blocks.REJECT)(persist_and_ack)
