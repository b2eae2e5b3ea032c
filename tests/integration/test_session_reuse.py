"""A step's finished sessions are reused inside `reusing_sessions`, and nothing of one user's session state reaches
the next: the window opens one session per database instead of one per visit, with the same semantics."""

from __future__ import annotations

import psycopg
import pytest

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
