"""/pgmove: ack at once, then run the same handler as the CLI and answer through response_url."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond

from handlers import blocks
from handlers.commands import Deps, handle


def register(app: App, deps: Deps) -> None:
    @app.command("/pgmove")
    def pgmove(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()  # within Slack's 3 s, whatever comes next
        user, channel = body.get("user_id", ""), body.get("channel_id", "")
        # A retried delivery carries the same trigger_id: it gets the first one's effect, once.
        key = f"slash:{body['trigger_id']}" if body.get("trigger_id") else None
        reply = handle(deps, user, body.get("text", ""), channel=channel, request_key=key)
        if reply.duplicate:
            return
        if reply.migration is not None:
            deps.store.set_chat_ref(reply.migration.id, "channel", channel, only_if_missing=True)
        for text, message_blocks in blocks.text_messages(reply.text):
            respond(text=text, blocks=message_blocks, replace_original=False,
                    response_type="in_channel" if reply.visibility == "channel" else "ephemeral")
