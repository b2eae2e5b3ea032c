"""A step's finished sessions are reused inside `reusing_sessions`, and nothing of one user's session state reaches
the next: the window opens one session per database instead of one per visit, with the same semantics."""

from __future__ import annotations

import psycopg
import pytest

from pgmove.steps import sessions
from pgmove.steps.connect import Endpoint, connection, reusing_sessions


@pytest.fixture
def src(source, passwords) -> Endpoint:  # type: ignore[no-untyped-def]
    return Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",))


def alive(source, pid: int) -> bool:  # type: ignore[no-untyped-def]
    with psycopg.connect(source.admin_dsn()) as admin:
        return bool(admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0])  # type: ignore[index]


def test_a_reused_session_starts_as_a_new_one_would(src):  # type: ignore[no-untyped-def]
    """Settings, role, an open transaction, temp tables and advisory locks left by one user are gone for the next,
    which gets the same backend with pgmove's login settings."""
    with reusing_sessions():
        with connection(src, "appdb") as conn:
            first = conn.info.backend_pid
            conn.execute("CREATE TEMP TABLE scratch (x int)")
            conn.execute("SELECT pg_advisory_lock(42)")
            conn.execute("SET search_path = public")
            conn.execute("SET default_transaction_read_only = on")
            conn.execute("SET ROLE app")
            conn.autocommit = False
            conn.execute("SELECT 1")  # a transaction left open
        with connection(src, "appdb") as conn:
            assert conn.info.backend_pid == first
            assert conn.autocommit
            row = conn.execute("SELECT current_setting('search_path'), current_setting('default_transaction_read_only'), "
                               "current_user, to_regclass('pg_temp.scratch'), "
                               "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())"
                               ).fetchone()
            assert row == ("pg_catalog", "off", "pgmove", None, 0)
            assert conn.execute("SELECT current_setting('application_name')").fetchone() == ("pgmove",)


def test_a_session_ended_while_idle_is_replaced_and_all_close_at_the_end(source, src):  # type: ignore[no-untyped-def]
    """A cached session the server ended meanwhile (as a freeze ends older sessions) is replaced by a new one
    without an error; sessions of another database are not mixed up; leaving the block closes every session."""
    with reusing_sessions():
        with connection(src, "appdb") as conn:
            ended = conn.info.backend_pid
        with connection(src, "pagila") as conn:
            other = conn.info.backend_pid
            assert other != ended and conn.info.dbname == "pagila"
        with psycopg.connect(source.admin_dsn()) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (ended,))
        with connection(src, "appdb") as conn:
            replaced = conn.info.backend_pid
            assert replaced != ended and conn.execute("SELECT current_database()").fetchone() == ("appdb",)
        assert alive(source, replaced) and alive(source, other)
    assert not alive(source, replaced) and not alive(source, other)


def test_without_the_block_every_session_closes_when_its_user_is_done(source, src):  # type: ignore[no-untyped-def]
    """Outside `reusing_sessions` nothing is kept: a finished session is gone from the server."""
    with connection(src, "appdb") as conn:
        pid = conn.info.backend_pid
    assert not alive(source, pid)


def test_psycopg_settings_of_one_user_do_not_reach_the_next(src):  # type: ignore[no-untyped-def]
    """read_only, isolation level and deferrable set on the connection object are reset: the next user's
    transaction writes at the default isolation."""
    with reusing_sessions():
        with connection(src, "appdb") as conn:
            conn.read_only = True
            conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
            conn.deferrable = True
        with connection(src, "appdb") as conn:
            assert (conn.read_only, conn.isolation_level, conn.deferrable) == (None, None, None)
            with conn.transaction():
                conn.execute("CREATE TEMP TABLE written (x int)")
                assert conn.execute("SHOW transaction_isolation").fetchone() == ("read committed",)


def test_ending_the_sessions_older_than_a_freeze_spares_the_steps_own_idle_ones(source, src):  # type: ignore[no-untyped-def]
    """The freeze ends every session born before it; the step's idle sessions kept for reuse are pgmove's: they are
    neither ended nor reported, while an app's older session is."""
    app = psycopg.connect(source.admin_dsn("appdb"), autocommit=True)
    try:
        with reusing_sessions():
            with connection(src, "pagila") as conn:
                kept = conn.info.backend_pid
            with connection(src) as conn:
                now = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
                ended, _ = sessions.end_sessions(src, conn, now, 0.5, lambda *a, **k: None)
            assert [s["pid"] for s in ended] == [app.info.backend_pid]
            assert alive(source, kept)
    finally:
        app.close()
