"""The bot's edge: Bolt verifies, persists and acks; cli/botproc.py composes it with the responder process.

Slack gives 3 seconds for an ack. In one Python process the ack path competes for the interpreter
with everything else the bot does; so the edge does nothing but persist and ack, and the work runs
in a second process that reads the same Redis inbox.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from pgmove.bot.http import BodyLimit, BoundedWSGIServer, QuietHandler
from pgmove.bot.listeners import actions, commands
from pgmove.bot.settings import SlackSettings
from pgmove.state.store import Store

log = logging.getLogger("pgmove.bot")


def web_client(settings: SlackSettings) -> WebClient:
    """Retries 429s after Retry-After and dropped connections, as slack_sdk's handlers do it."""
    return WebClient(token=settings.bot_token, base_url=settings.api_url, timeout=10,
                     retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=20), ConnectionErrorRetryHandler(max_retry_count=3)])


def build_app(store: Store, settings: SlackSettings) -> App:
    # The listeners only persist and ack, so they can run inline in the request's own thread.
    app = App(client=web_client(settings), signing_secret=settings.signing_secret, process_before_response=True,
              request_verification_enabled=True, ignoring_self_events_enabled=True)
    commands.register(app, store)
    actions.register(app, store)
    return app


@dataclass
class Edge:
    server: WSGIServer | None = None
    socket: SocketModeHandler | None = None

    def shutdown(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.socket is not None:
            self.socket.close()  # type: ignore[no-untyped-call]


def start_edge(store: Store, settings: SlackSettings, port: int, host: str) -> Edge:
    app = build_app(store, settings)
    store.warm_up(32)  # each ack does one LPUSH: have the connections ready before Slack's first burst
    if settings.app_token:
        handler = SocketModeHandler(app, settings.app_token)
        handler.connect()  # type: ignore[no-untyped-call]
        log.info("connected to Slack over Socket Mode")
        return Edge(socket=handler)
    server = make_server(host, port, BodyLimit(SlackRequestHandler(app)), server_class=BoundedWSGIServer,
                         handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log.info("serving Slack requests on http://%s:%s/slack/events", host, server.server_port)
    return Edge(server=server)
