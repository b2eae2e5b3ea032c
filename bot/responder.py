"""The responder: takes acked requests from the inbox, runs them through the handlers, answers through
response_url. It runs in its own process beside the edge, so no amount of work here delays an ack.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from slack_sdk.webhook import WebhookClient

from pgmove.handlers import blocks, views
from pgmove.handlers.commands import Deps, decide, handle

log = logging.getLogger("pgmove.responder")


class Responder:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def run_forever(self, stop: threading.Event) -> None:
        requeued = self.deps.store.requeue_taken_chat_requests()
        if requeued:
            log.warning("%s request(s) taken by a responder that stopped are back in line", requeued)
        while not stop.is_set():
            raw = self.deps.store.take_chat_request(timeout_seconds=1.0)
            if raw is None:
                continue
            try:
                self.process(json.loads(raw))
            except Exception:
                log.exception("a chat request failed; it is dropped so it cannot block the ones behind it")
            finally:
                self.deps.store.chat_request_done(raw)

    def process(self, request: dict[str, Any]) -> None:
        body = request["body"]
        if request["kind"] == "command":
            self._command(body)
        elif request["kind"] == "action":
            self._action(body)

    def _command(self, body: dict[str, Any]) -> None:
        user, channel = body.get("user_id", ""), body.get("channel_id")
        if not channel:  # None means "no channel to check" (the CLI); from Slack it is refused
            self._respond(body.get("response_url"), views.no_channel_text(), in_channel=False)
            return
        # A retried delivery carries the same trigger_id: it gets the first one's effect, once.
        key = f"slash:{body['trigger_id']}" if body.get("trigger_id") else None
        reply = handle(self.deps, user, body.get("text", ""), channel=channel, request_key=key)
        if reply.duplicate:
            return
        if reply.migration is not None:
            self.deps.store.set_chat_ref(reply.migration.id, "channel", channel, only_if_missing=True)
        text = reply.text
        if reply.kind == "accepted" and reply.verb in ("freeze", "cutover"):
            text = text.splitlines()[0]  # the approval message with its buttons follows from the notifier
        self._respond(body.get("response_url"), text, in_channel=reply.visibility == "channel")

    def _action(self, body: dict[str, Any]) -> None:
        action = body["actions"][0]
        user, channel = body["user"]["id"], (body.get("channel") or {}).get("id") or ""
        command = blocks.clicked(str(action.get("action_id", "")), str(action.get("value", "")))
        if command is None:
            self._respond(body.get("response_url"), "That request is not known to pgmove any more.", in_channel=False)
            return
        reply = decide(self.deps, user, command, channel,
                       request_key=f"action:{body.get('trigger_id') or action.get('action_ts')}")
        if not reply.ok and not reply.duplicate:
            # The decision itself shows in the approval message (the notifier edits it); a refusal goes
            # to the one who clicked, and to nobody else.
            self._respond(body.get("response_url"), reply.text, in_channel=False)

    @staticmethod
    def _respond(url: str | None, text: str, in_channel: bool) -> None:
        if not url:
            return
        client = WebhookClient(url, timeout=10)
        for piece, message in blocks.text_messages(text):
            client.send(text=piece, blocks=message, response_type="in_channel" if in_channel else "ephemeral",
                        replace_original=False)
