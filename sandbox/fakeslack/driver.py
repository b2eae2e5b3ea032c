"""Plays people in the channel: signed slash commands and button clicks, over HTTP or Socket Mode."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
import urllib.request
from typing import Any

from pgmove.sandbox.fakeslack.server import TEAM, FakeSlack, Message

_trigger = itertools.count(1)


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Exactly as Slack signs: v0=HMAC-SHA256(secret, 'v0:{timestamp}:{body}')."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


class Driver:
    def __init__(self, slack: FakeSlack, signing_secret: str, channel: str = "C_DBMIG",
                 bot_url: str | None = None, socket: bool = False) -> None:
        self.slack, self.secret, self.channel, self.bot_url, self.socket = slack, signing_secret, channel, bot_url, socket
        self.ack_seconds: list[float] = []

    # -- what people do ----------------------------------------------------------------------

    def command(self, user: str, text: str, channel: str | None = None, retry_of: dict[str, Any] | None = None) -> dict[str, Any]:
        """`/pgmove <text>` typed by `user`; returns the payload so a test can have Slack retry it."""
        channel = self.channel if channel is None else channel  # "": a payload with no channel
        if retry_of is None:
            self.slack.record_action(user, channel, f"/pgmove {text.removeprefix('/pgmove ').strip()}")
        payload = retry_of or {
            "token": "legacy", "team_id": TEAM, "channel_id": channel, "channel_name": "db-migrations",
            "user_id": user, "user_name": user.lower(), "command": "/pgmove", "text": text.removeprefix("/pgmove ").strip(),
            "api_app_id": "A_PGMOVE", "trigger_id": f"trigger-{next(_trigger)}",
            "response_url": f"http://127.0.0.1:{self.slack.port}/respond/{urllib.parse.quote(user + ':' + channel)}",
        }
        if self.socket:
            self.ack_seconds.append(self.slack.send_envelope("slash_commands", payload))
        else:
            body = urllib.parse.urlencode(payload).encode()
            extra = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"} if retry_of else {}
            status, _ = self.post(body, {**sign(self.secret, body), **extra}, "application/x-www-form-urlencoded")
            assert status == 200, status
        return payload

    def click(self, user: str, message: Message, action_id: str, with_channel: bool = True) -> None:
        """A button click; with_channel=False sends it as a payload without its channel would arrive."""
        button = next(e for b in message.blocks or [] if b["type"] == "actions" for e in b["elements"]
                      if e["action_id"] == action_id)
        self.slack.record_action(user, message.channel, f"clicked [{button['text']['text']}]")
        payload: dict[str, Any] = {
            "type": "block_actions", "team": {"id": TEAM}, "user": {"id": user, "username": user.lower()},
            "api_app_id": "A_PGMOVE", "trigger_id": f"trigger-{next(_trigger)}",
            "container": {"type": "message", "message_ts": message.ts, "channel_id": message.channel},
            "channel": {"id": message.channel}, "message": {"ts": message.ts, "text": message.text},
            "response_url": f"http://127.0.0.1:{self.slack.port}/respond/{urllib.parse.quote(user + ':' + message.channel)}",
            "actions": [{"type": "button", "action_id": action_id, "block_id": "approval", "value": button["value"],
                         "action_ts": f"{time.time():.6f}"}],
        }
        if not with_channel:
            del payload["channel"]
            del payload["container"]["channel_id"]
        if self.socket:
            self.ack_seconds.append(self.slack.send_envelope("interactive", payload))
        else:
            body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
            status, _ = self.post(body, sign(self.secret, body), "application/x-www-form-urlencoded")
            assert status == 200, status

    def post(self, body: bytes, headers: dict[str, str], content_type: str) -> tuple[int, bytes]:
        assert self.bot_url is not None
        request = urllib.request.Request(self.bot_url, data=body, method="POST",
                                         headers={**headers, "Content-Type": content_type})
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, data = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, data = exc.code, exc.read()
        self.ack_seconds.append(time.monotonic() - started)
        return status, data
