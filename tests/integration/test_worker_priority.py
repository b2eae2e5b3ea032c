"""The worker yields the CPU to the bot: it and the client programs it starts run at the configured niceness."""

from __future__ import annotations

import os

from pgmove.sandbox.servers import wait_until


def _niceness(pid: int) -> int:
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[16])


def test_the_worker_process_runs_at_the_configured_niceness(pgmove):  # type: ignore[no-untyped-def]
    """A worker started with the default configuration runs at niceness 10, above the bot's 0."""
    proc = pgmove.start_worker()
    wait_until(lambda: _niceness(proc.pid) == 10 or proc.poll() is not None, 30, "the worker lowering its priority")
    assert proc.poll() is None, "the worker exited"
    assert _niceness(proc.pid) == 10
    assert _niceness(os.getpid()) < 10
