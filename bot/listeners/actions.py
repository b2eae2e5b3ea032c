"""Approve and Reject buttons: the approver is the payload's user id; the value names only the request."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond

from handlers import blocks
from handlers.commands import Deps, handle


def register(app: App, deps: Deps) -> None:
    def decide(verb: str, ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        action = body["actions"][0]
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id")
        migration_id, _, request_id = str(action.get("value", "")).partition(":")
        migration = deps.store.get(migration_id)
        if migration is None or not request_id:
            respond(text="That request is not known to pgmove any more.", response_type="ephemeral", replace_original=False)
            return
        text = f"approve {migration.source} {request_id}" if verb == "approve" else f"reject {migration.source} --request {request_id}"
        key = f"action:{body.get('trigger_id') or action.get('action_ts')}"
        reply = handle(deps, user, text, channel=channel, request_key=key)
        if not reply.ok and not reply.duplicate:
            # The decision itself shows in the approval message (the notifier edits it); refusals go to the clicker only.
            text, message_blocks = blocks.reply_message(reply.text)
            respond(text=text, blocks=message_blocks, response_type="ephemeral", replace_original=False)

    @app.action(blocks.APPROVE)
    def approve(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        decide("approve", ack, body, respond)

    @app.action(blocks.REJECT)
    def reject(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        decide("reject", ack, body, respond)
