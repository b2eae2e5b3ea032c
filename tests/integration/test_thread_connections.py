"""The per-thread session cache the copy and the verification share: one session per thread and database, ended by the stop token."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from pgmove.sandbox.servers import wait_until
from pgmove.state.errors import StepFailed
from pgmove.steps.connect import Endpoint, StopToken, ThreadConnections


def _sessions(source, pids: list[int]) -> int:  # type: ignore[no-untyped-def]
    with psycopg.connect(source.admin_dsn("postgres")) as conn:
        return int(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)).fetchone()[0])


def _in_thread(sessions: ThreadConnections, ep: Endpoint, db: str) -> psycopg.Connection[Any]:
    found: list[Any] = []
    thread = threading.Thread(target=lambda: found.append(sessions.get(ep, db)))
    thread.start()
    thread.join()
    return found[0]  # type: ignore[no-any-return]


def test_each_thread_keeps_one_prepared_session_per_database_and_close_ends_them_all(source, passwords):  # type: ignore[no-untyped-def]
    """A thread gets its own session back on every call, another thread a different one; all are set up, all closed."""
    ep = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove)
    sessions = ThreadConnections(lambda conn: conn.execute("SET default_transaction_read_only = on"))
    mine = sessions.get(ep, "appdb")
    assert sessions.get(ep, "appdb") is mine
    assert sessions.get(ep, "postgres") is not mine
    theirs = _in_thread(sessions, ep, "appdb")
    assert theirs is not mine
    for conn in (mine, theirs):
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
    pids = [mine.info.backend_pid, theirs.info.backend_pid]
    sessions.close()
    assert mine.closed and theirs.closed
    wait_until(lambda: _sessions(source, pids) == 0, 10, "the closed sessions to end")


def test_a_fired_stop_token_ends_the_cached_sessions_and_no_task_gets_one_after(source, passwords):  # type: ignore[no-untyped-def]
    """Once the step is stopped, its cached sessions are ended on the server and asking for one raises."""
    stop = StopToken()
    ep = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, stop=stop)
    sessions = ThreadConnections()
    cached = sessions.get(ep, "appdb")
    pids = [cached.info.backend_pid, _in_thread(sessions, ep, "appdb").info.backend_pid]
    stop.fire()
    wait_until(lambda: _sessions(source, pids) == 0, 10, "the stopped step's sessions to end")
    with pytest.raises(StepFailed, match="stopped"):
        sessions.get(ep, "appdb")  # cached, but ended: never handed out again
    with pytest.raises(StepFailed, match="stopped"):
        sessions.get(ep, "postgres")
    sessions.close()
