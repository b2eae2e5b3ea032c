"""The bot's HTTP port against strangers, measured on the real bot process: a huge unsigned body is refused
unread, slow half-open connections cost a bounded number of threads and are dropped, a bad Content-Length
is a 400 (not a 500 with a traceback), and Slack's own requests still get their ack afterwards."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from pgmove.bot.http import DEADLINE, MAX_BODY, WORKERS
from pgmove.sandbox.servers import wait_until


def _status(pid: int) -> dict[str, int]:
    """Threads and memory (kB) of the edge process, from the kernel; VmHWM is the peak resident size."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Threads", "VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def _raw(port: int, head: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        return s.recv(4096)


def test_a_200_mb_unsigned_body_is_refused_unread(http_world):  # type: ignore[no-untyped-def]
    """Only Content-Length is looked at before the 413: the bot's peak memory does not grow with the body."""
    w = http_world
    pid = w.pgmove.bots[-1].pid
    before = _status(pid)["VmHWM"]
    size = 200 * 1024 * 1024
    chunk = b"x" * (1024 * 1024)
    with socket.create_connection(("127.0.0.1", w.port), timeout=5) as s:
        s.sendall(b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                  + f"Content-Length: {size}\r\n\r\n".encode() + chunk)
        try:
            answer = s.recv(4096)  # a bounded edge answers now, without waiting for the body
        except TimeoutError:
            answer = b""
        if not answer:  # an edge that reads everything first: give it the body, then hear its answer
            try:
                for _ in range(size // len(chunk) - 1):
                    s.sendall(chunk)
                s.settimeout(60)
                answer = s.recv(4096)
            except OSError:
                pass
    grown_mb = (_status(pid)["VmHWM"] - before) / 1024
    assert answer.startswith(b"HTTP/1.0 413") or answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert grown_mb < 32, f"the edge's peak memory grew by {grown_mb:.0f} MB for a body it should not read"
    assert MAX_BODY < size


def test_half_open_connections_hold_a_bounded_number_of_threads_and_are_dropped(http_world):  # type: ignore[no-untyped-def]
    """200 clients that send half a request and wait: the edge's thread count stays bounded, the deadline closes
    them, and a signed slash command is acked afterwards."""
    w = http_world
    pid = w.pgmove.bots[-1].pid
    w.driver.command("U_ALICE", "help")  # warm: the first request's threads exist before the baseline
    baseline = _status(pid)["Threads"]
    held = []
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", w.port), timeout=DEADLINE * 3)
            s.sendall(b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Len")
            held.append(s)
        # Every connection is in: once the edge holds WORKERS of them, the rest wait in the listen backlog.
        wait_until(lambda: _status(pid)["Threads"] >= baseline + WORKERS - 4, 10, "the edge to take its share")
        peak = max(_status(pid)["Threads"] for _ in range(50))
        assert peak <= baseline + WORKERS + 2, f"{peak - baseline} threads for 200 half-open connections"

        closed = []

        def drained(s: socket.socket) -> None:
            try:
                closed.append(s.recv(1) == b"")
            except OSError:
                closed.append(True)

        readers = [threading.Thread(target=drained, args=(s,)) for s in held[:WORKERS]]
        for t in readers:
            t.start()
        for t in readers:
            t.join(DEADLINE * 3)
        assert closed and all(closed), "the edge kept a slow client's connection past its deadline"
    finally:
        for s in held:
            s.close()
    w.driver.command("U_ALICE", "help")  # asserts a 200 ack
    assert _status(pid)["Threads"] <= baseline + WORKERS + 2


def test_a_bad_content_length_is_a_400_with_no_traceback(http_world):  # type: ignore[no-untyped-def]
    """Not a number, negative, or missing: a 4xx answer naming the problem; nothing in the log but a line."""
    w = http_world
    for header, expected in ((b"Content-Length: abc\r\n", b"400"), (b"Content-Length: -5\r\n", b"400"),
                             (b"Content-Length: 1e3\r\n", b"400"), (b"", b"411")):
        answer = _raw(w.port, b"POST /slack/events HTTP/1.0\r\nHost: bot\r\n" + header + b"\r\n")
        assert answer.split(b"\r\n")[0].split()[1] == expected, answer[:100]
    w.driver.command("U_ALICE", "help")
    assert "Traceback" not in w.pgmove.worker_logs()
