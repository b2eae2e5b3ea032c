"""A strict local stand-in for Slack: the Web API methods pgmove uses, response_url, file uploads,
Socket Mode over a real WebSocket, and channel state (messages, threads, edits, ephemerals).

It rejects what Slack rejects (limits.py), answers 429 on demand, and notes when the bot is slow to ack.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from websockets.sync.server import ServerConnection, serve

from pgmove.sandbox.fakeslack.limits import SlackError, check_message, unescaped_mentions
from pgmove.sandbox.servers import free_port

BOT_USER, BOT_ID, TEAM = "U_PGMOVE", "B_PGMOVE", "T_TEAM"


@dataclass
class Message:
    ts: str
    channel: str
    user: str
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)  # every earlier version, oldest first
    files: list[dict[str, Any]] = field(default_factory=list)
    via: str = "chat.postMessage"

    def all_text(self) -> str:
        """As people read it: Slack shows &lt; &gt; &amp; as the characters (raw_text() keeps them)."""
        return self.raw_text().replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")

    def raw_text(self) -> str:
        parts = [self.text or ""]
        for block in self.blocks or []:
            parts.append(json.dumps(block))
        return "\n".join(parts)


@dataclass
class Ephemeral:
    user: str
    channel: str
    text: str
    blocks: list[dict[str, Any]] | None
    ts: str = ""


@dataclass
class UserAction:
    """What a person did (typed a command, clicked a button): part of what the channel shows."""

    ts: str
    user: str
    channel: str
    text: str


class FakeSlack:
    def __init__(self, bot_token: str = "xoxb-test", app_token: str = "xapp-test") -> None:
        self.bot_token, self.app_token = bot_token, app_token
        self.lock = threading.RLock()
        self.messages: list[Message] = []
        self.ephemerals: list[Ephemeral] = []
        self.actions: list[UserAction] = []
        self.calls: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []  # every call Slack would have refused, with why
        self.uploads: dict[str, dict[str, Any]] = {}
        self.rate_limit_every = 0  # N > 0: every Nth Web API call gets 429
        self.throttled = 0
        self.stall_calls, self.stall_seconds = 0, 0.0  # the next N calls answer only after a delay
        self.stalled = 0  # stalled calls that have not taken effect yet: a test waits for 0 instead of sleeping
        self._counter = itertools.count(1)
        self._clock = itertools.count(1)
        self._sockets: list[ServerConnection] = []
        self._acks: dict[str, threading.Event] = {}
        self.port = free_port()
        self.http = _Server(("127.0.0.1", self.port), _handler(self))
        self.ws_port = free_port()
        self.ws = serve(self._socket_session, "127.0.0.1", self.ws_port)
        self._threads = [threading.Thread(target=self.http.serve_forever, daemon=True),
                         threading.Thread(target=self.ws.serve_forever, daemon=True)]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def start(self) -> FakeSlack:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self.http.shutdown()
        self.ws.shutdown()

    # -- Web API ----------------------------------------------------------------------------

    def call(self, method: str, params: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self.lock:
            stall = self.stall_calls > 0
            self.stall_calls -= 1 if stall else 0
            self.stalled += 1 if stall else 0
        if stall:
            # Like a slow Slack: the caller may give up, while the call still takes effect afterwards.
            time.sleep(self.stall_seconds)
        with self.lock:
            try:
                n = next(self._counter)
                self.calls.append({"method": method, "params": params, "at": time.time()})
                if self.rate_limit_every and n % self.rate_limit_every == 0:
                    self.throttled += 1
                    return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "0"}
                try:
                    expected = self.app_token if method == "apps.connections.open" else self.bot_token
                    if token != expected:
                        raise SlackError("invalid_auth")
                    handler = getattr(self, "_" + method.replace(".", "_"), None)
                    if handler is None:
                        raise SlackError("unknown_method")
                    return 200, {"ok": True, **handler(params)}, {}
                except SlackError as exc:
                    self.errors.append({"method": method, "error": exc.error, "detail": exc.detail, "params": params})
                    return 200, {"ok": False, "error": exc.error, "detail": exc.detail}, {}
            finally:
                self.stalled -= 1 if stall else 0

    def _check(self, method: str, text: Any, blocks: Any) -> None:
        """Slack's limits refuse the call; an unescaped mention goes through (Slack would notify) but is noted."""
        check_message(text, blocks)
        for found in unescaped_mentions(text, blocks):
            self.errors.append({"method": method, "error": "unescaped_mention", "detail": found, "text": text})

    def _auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://fake.slack/", "team": "team", "user": "pgmove", "team_id": TEAM, "user_id": BOT_USER,
                "bot_id": BOT_ID}

    def _apps_connections_open(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"ws://127.0.0.1:{self.ws_port}/link"}

    def _chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        blocks = _json(p.get("blocks"))
        self._check("chat.postMessage", p.get("text"), blocks)
        channel = _required(p, "channel")
        thread_ts = p.get("thread_ts")
        if thread_ts and not self.find(thread_ts):
            raise SlackError("thread_not_found")
        message = Message(self._ts(), channel, BOT_USER, p.get("text") or "", blocks, thread_ts)
        self.messages.append(message)
        return {"channel": channel, "ts": message.ts, "message": {"text": message.text, "ts": message.ts}}

    def _chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self.find(_required(p, "ts"))
        if message is None or message.channel != p.get("channel"):
            raise SlackError("message_not_found")
        if message.user != BOT_USER:
            raise SlackError("cant_update_message")
        blocks = _json(p.get("blocks"))
        self._check("chat.update", p.get("text"), blocks)
        message.edits.append({"text": message.text, "blocks": message.blocks})
        message.text, message.blocks = p.get("text") or "", blocks
        return {"channel": message.channel, "ts": message.ts}

    def _chat_postEphemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        blocks = _json(p.get("blocks"))
        self._check("chat.postEphemeral", p.get("text"), blocks)
        self.ephemerals.append(Ephemeral(_required(p, "user"), _required(p, "channel"), p.get("text") or "", blocks, self._ts()))
        return {"message_ts": self._ts()}

    def _files_getUploadURLExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        file_id = f"F{next(self._counter)}"
        self.uploads[file_id] = {"filename": _required(p, "filename"), "length": int(_required(p, "length")), "data": None}
        return {"upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}", "file_id": file_id}

    def _files_completeUploadExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        files = _json(p.get("files")) or []
        shared = []
        for f in files:
            upload = self.uploads.get(f["id"])
            if upload is None or upload["data"] is None:
                raise SlackError("file_not_found")
            shared.append({"id": f["id"], "title": f.get("title") or upload["filename"], "content": upload["data"].decode()})
        channel = p.get("channel_id")
        if channel:
            message = Message(self._ts(), channel, BOT_USER, p.get("initial_comment") or "", None, p.get("thread_ts"),
                              files=shared, via="files.completeUploadExternal")
            self.messages.append(message)
        return {"files": [{"id": f["id"], "title": f["title"]} for f in shared]}

    # -- response_url -------------------------------------------------------------------------

    def respond(self, token: str, body: dict[str, Any]) -> None:
        user, channel = token.split(":", 1)
        blocks = body.get("blocks")
        self._check("response_url", body.get("text"), blocks)
        with self.lock:
            if body.get("response_type") == "in_channel":
                self.messages.append(Message(self._ts(), channel, BOT_USER, body.get("text") or "", blocks, via="response_url"))
            else:
                self.ephemerals.append(Ephemeral(user, channel, body.get("text") or "", blocks, self._ts()))

    # -- Socket Mode --------------------------------------------------------------------------

    def _socket_session(self, ws: ServerConnection) -> None:
        self._sockets.append(ws)
        ws.send(json.dumps({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A_PGMOVE"}}))
        try:
            for raw in ws:
                data = json.loads(raw)
                event = self._acks.get(data.get("envelope_id", ""))
                if event is not None:
                    event.set()
        except Exception:  # the bot went away; a reconnect opens a new session
            pass
        finally:
            self._sockets.remove(ws)

    def socket_connected(self) -> bool:
        return bool(self._sockets)

    def send_envelope(self, kind: str, payload: dict[str, Any], timeout: float = 3.0) -> float:
        """Deliver over the WebSocket; returns the seconds until the bot acked (Slack gives it 3)."""
        envelope_id = f"env-{next(self._counter)}"
        acked = threading.Event()
        self._acks[envelope_id] = acked
        started = time.monotonic()
        self._sockets[-1].send(json.dumps({"envelope_id": envelope_id, "type": kind, "payload": payload,
                                           "accepts_response_payload": kind == "slash_commands"}))
        if not acked.wait(timeout):
            raise AssertionError(f"the bot did not ack {kind} within {timeout}s")
        return time.monotonic() - started

    def record_action(self, user: str, channel: str, text: str) -> None:
        with self.lock:
            self.actions.append(UserAction(self._ts(), user, channel, text))

    # -- reading the channel ------------------------------------------------------------------

    def find(self, ts: str) -> Message | None:
        return next((m for m in self.messages if m.ts == ts), None)

    def channel_messages(self, channel: str) -> list[Message]:
        return [m for m in self.messages if m.channel == channel and m.thread_ts is None]

    def thread(self, ts: str) -> list[Message]:
        return [m for m in self.messages if m.thread_ts == ts]

    def ephemerals_for(self, user: str) -> list[Ephemeral]:
        return [e for e in self.ephemerals if e.user == user]

    def _ts(self) -> str:
        return f"{1_790_000_000 + next(self._clock)}.000100"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # Slack takes bursts; the stdlib's 5 would reset connections


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise SlackError("invalid_blocks_format") from None
    return value


def _required(p: dict[str, Any], key: str) -> Any:
    if not p.get(key):
        raise SlackError(f"missing_{key}" if key != "channel" else "channel_not_found")
    return p[key]


def _handler(slack: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 -- http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.startswith("/upload/"):
                upload = slack.uploads.get(self.path.rsplit("/", 1)[-1])
                if upload is None:
                    return self._send(404, {"ok": False})
                upload["data"] = body
                return self._send(200, {"ok": True})
            if self.path.startswith("/respond/"):
                try:
                    slack.respond(urllib.parse.unquote(self.path[len("/respond/"):]), json.loads(body))
                except SlackError as exc:
                    slack.errors.append({"method": "response_url", "error": exc.error, "detail": exc.detail})
                    return self._send(400, {"ok": False, "error": exc.error})
                return self._send(200, {"ok": True})
            method = self.path.split("/api/", 1)[-1]
            if self.headers.get("Content-Type", "").startswith("application/json"):
                params = json.loads(body or b"{}")
            else:
                params = {k: v[-1] for k, v in urllib.parse.parse_qs(body.decode()).items()}
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ") or params.get("token")
            status, reply, headers = slack.call(method, params, token)
            self._send(status, reply, headers)

        def _send(self, status: int, reply: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
