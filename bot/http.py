"""The HTTP edge's server: a bounded number of connection threads, a deadline per connection, a capped body.

Anyone on the network can reach this port, and Slack's signature is checked only once the body is read. So
nothing is read before the Content-Length is known to be sane: missing (411), not a number (400), over
MAX_BODY (413, the body left unread). Slack's requests are small (a slash command is a few KB; a button
click carries its message, at most 50 blocks of 3,000 characters, about 200 KB), so 1 MiB leaves room
without letting a stranger make the bot hold hundreds of MB.

Connections are served by at most `workers` threads; further ones wait in the listen backlog (no thread,
no memory beyond the kernel's). A watchdog closes any connection still open after `deadline` seconds (a
client that sends its request byte by byte would otherwise hold a thread for good). Slack sends a request
in one go, well within a second. What this cannot do is tell a flood of slow strangers from Slack: a
reverse proxy in front (or Socket Mode, with no open port) is the answer to that.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

log = logging.getLogger("pgmove.bot.http")

MAX_BODY = 1 << 20
WORKERS = 32
DEADLINE = 10.0

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class BodyLimit:
    """WSGI middleware: reads the body itself, bounded, before Bolt (which trusts Content-Length) sees it."""

    def __init__(self, app: WsgiApp, max_body: int = MAX_BODY) -> None:
        self.app, self.max_body = app, max_body

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        raw = (environ.get("CONTENT_LENGTH") or "").strip()
        if not raw:
            return _refuse(start_response, "411 Length Required", "a Content-Length is required")
        if not (raw.isascii() and raw.isdigit()):  # isdigit alone takes `²`, which int() then refuses
            return _refuse(start_response, "400 Bad Request", "Content-Length is not a number")
        length = int(raw)
        if length > self.max_body:
            return _refuse(start_response, "413 Content Too Large", f"the body may be at most {self.max_body} bytes")
        try:
            body = environ["wsgi.input"].read(length)
        except OSError:  # the deadline closed the connection, or the client went away
            return _refuse(start_response, "408 Request Timeout", "the body did not arrive in time")
        if len(body) != length:
            return _refuse(start_response, "400 Bad Request", "the body is shorter than its Content-Length")
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


def _refuse(start_response: StartResponse, status: str, why: str) -> list[bytes]:
    body = (why + "\n").encode()
    # HTTP/1.0: the connection closes after the answer (wsgiref forbids setting Connection itself).
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class QuietHandler(WSGIRequestHandler):
    timeout = DEADLINE  # no single read waits longer than a whole request may take

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 -- the stdlib's name
        log.debug(format, *args)


class BoundedWSGIServer(WSGIServer):
    request_queue_size = 1024  # the stdlib's 5 resets connections when Slack sends a burst

    def __init__(self, address: tuple[str, int], handler: type[WSGIRequestHandler],
                 workers: int = WORKERS, deadline: float = DEADLINE) -> None:
        super().__init__(address, handler)
        self.deadline = deadline
        self._slots = threading.BoundedSemaphore(workers)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="http")
        self._open: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        threading.Thread(target=self._watch, name="http-deadline", daemon=True).start()

    def process_request(self, request: Any, client_address: Any) -> None:
        # Waiting here stops the accept loop: further connections queue in the kernel, costing no thread.
        self._slots.acquire()
        with self._lock:
            self._open[request] = time.monotonic()
        self._pool.submit(self._serve, request, client_address)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except OSError:
            log.debug("connection from %s closed early", client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._lock:
                self._open.pop(request, None)
            self.shutdown_request(request)
            self._slots.release()

    def _watch(self) -> None:
        while not self._stopped.wait(min(0.5, self.deadline / 4)):
            cutoff = time.monotonic() - self.deadline
            with self._lock:
                late = [s for s, started in self._open.items() if started < cutoff]
            for sock in late:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # the serving thread's read ends; it cleans up
                except OSError:
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("request from %s failed", client_address, exc_info=True)

    def server_close(self) -> None:
        self._stopped.set()
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)
