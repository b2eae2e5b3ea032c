"""Builds the Bolt app and serves it: Socket Mode when an app token is set, signed HTTP otherwise."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.listeners import actions, commands
from bot.notifier import Notifier
from bot.settings import SlackSettings
from handlers.commands import Deps

log = logging.getLogger("pgmove.bot")


def web_client(settings: SlackSettings) -> WebClient:
    """Retries 429s after Retry-After and dropped connections, as slack_sdk's handlers do it."""
    return WebClient(token=settings.bot_token, base_url=settings.api_url, timeout=10,
                     retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=20), ConnectionErrorRetryHandler(max_retry_count=3)])


def build_app(deps: Deps, settings: SlackSettings) -> App:
    app = App(client=web_client(settings), signing_secret=settings.signing_secret, process_before_response=False,
              request_verification_enabled=True, ignoring_self_events_enabled=True)
    commands.register(app, deps)
    actions.register(app, deps)
    return app


@dataclass
class RunningBot:
    app: App
    notifier: Notifier
    stop: threading.Event
    server: WSGIServer | None = None
    socket: SocketModeHandler | None = None

    def shutdown(self) -> None:
        self.stop.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.socket is not None:
            self.socket.close()  # type: ignore[no-untyped-call]


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # one slow request never delays another's ack


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 -- the stdlib's name
        log.debug(format, *args)


def start(deps: Deps, settings: SlackSettings, port: int = 3000, host: str = "0.0.0.0") -> RunningBot:
    """Start serving and notifying in background threads; the caller decides how long to live."""
    app = build_app(deps, settings)
    stop = threading.Event()
    notifier = Notifier(deps.store, web_client(settings), deps.config)
    threading.Thread(target=notifier.run_forever, args=(stop,), name="notifier", daemon=True).start()
    running = RunningBot(app, notifier, stop)
    if settings.app_token:
        running.socket = SocketModeHandler(app, settings.app_token)
        running.socket.connect()  # type: ignore[no-untyped-call]
        log.info("connected to Slack over Socket Mode")
    else:
        running.server = make_server(host, port, SlackRequestHandler(app), server_class=_ThreadingWSGIServer,
                                     handler_class=_QuietHandler)
        threading.Thread(target=running.server.serve_forever, name="http", daemon=True).start()
        log.info("serving Slack requests on http://%s:%s/slack/events", host, running.server.server_port)
    return running
