"""The watch after cutover against real servers, on what a hostile review found it hid: a client that connects as
pgmove's own role, and an app that lives in the maintenance database (`postgres`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pgmove.sandbox.servers import wait_until
from pgmove.state.watch import fold, start, summarize
from pgmove.steps import watch as readings
from pgmove.steps.connect import APPLICATION_NAME, Endpoint

pytestmark = pytest.mark.slow


def _stat(cluster, db: str, column: str) -> int:  # type: ignore[no-untyped-def]
    """Read from template1: the test's own polling must not commit in a database the watch counts."""
    with psycopg.connect(cluster.admin_dsn("template1"), autocommit=True) as conn:
        row = conn.execute(psycopg.sql.SQL("SELECT {} FROM pg_stat_database WHERE datname = %s").format(
            psycopg.sql.Identifier(column)), (db,)).fetchone()
    return int(row[0]) if row else 0


def test_a_client_connecting_as_pgmoves_own_role_is_named_and_only_pgmoves_sessions_are_spared(  # type: ignore[no-untyped-def]
        source, target, passwords):
    """An app (badly) using pgmove's role on the old server is a client not switched: named by role, application
    and address; a session pgmove opened (application_name pgmove) and the reading's own session are not."""
    src = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove)
    dst = Endpoint("prod-new", target.tcp_dsn("pgmove"), passwords.target_pgmove)
    app = psycopg.connect(source.tcp_dsn("pgmove"), password=passwords.source_pgmove, autocommit=True,
                          application_name="orders-worker")
    own = psycopg.connect(source.tcp_dsn("pgmove"), password=passwords.source_pgmove, autocommit=True,
                          application_name=APPLICATION_NAME)
    try:
        reading = readings.read(dst, src, [])
    finally:
        app.close()
        own.close()
    assert reading.problems == []
    named = [c.describe() for c in reading.clients]
    assert "pgmove (orders-worker) from 127.0.0.1 to postgres" in named, named
    assert not [c for c in reading.clients if c.application == APPLICATION_NAME], named


def test_an_app_living_in_the_maintenance_database_is_counted_and_named(source, target, passwords):  # type: ignore[no-untyped-def]
    """Commits in `postgres` on the new server count (pgmove's own readings there do not), and a client left in
    `postgres` on the old server is named with its refused (rolled back) transaction."""
    with psycopg.connect(target.admin_dsn(), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE ROLE app LOGIN PASSWORD {}").format(passwords.app))
        conn.execute("CREATE TABLE public.jobs (id bigserial PRIMARY KEY)")
        conn.execute("GRANT ALL ON public.jobs, public.jobs_id_seq TO app")
    src = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",))
    dst = Endpoint("prod-new", target.tcp_dsn("pgmove"), passwords.target_pgmove, ("app",))
    t0 = datetime.now(UTC)
    baseline = readings.read(dst, src, ["app"], at=t0)
    before, refused_before = _stat(target, "postgres", "xact_commit"), _stat(source, "postgres", "xact_rollback")
    with psycopg.connect(target.tcp_dsn("app"), password=passwords.app, autocommit=True) as app:
        for _ in range(5):
            app.execute("INSERT INTO public.jobs DEFAULT VALUES")
    straggler = psycopg.connect(source.tcp_dsn("app"), password=passwords.app, application_name="cron")
    try:
        straggler.execute("SELECT 1")
        straggler.rollback()  # a write the frozen source refused ends like this
        wait_until(lambda: _stat(target, "postgres", "xact_commit") >= before + 5, 30, "the app's commits counted")
        wait_until(lambda: _stat(source, "postgres", "xact_rollback") > refused_before, 30, "the rollback counted")
        w = start(baseline, t0, t0 + timedelta(minutes=15))
        for n in (1, 2):  # two readings more: pgmove's own commits in `postgres` pile up, and are taken out
            w = fold(w, readings.read(dst, src, ["app"], at=t0 + timedelta(minutes=7.5 * n)))
    finally:
        straggler.close()
    text, ok = summarize(w, "prod-old", "prod-new", [])
    assert not ok
    found = re.search(r"prod-new took ([\d,]+) commits from app in 15 min, 1 client still on prod-old", text)
    assert found and int(found.group(1).replace(",", "")) >= 5, text
    assert re.search(r"^  postgres: [\d,]+ commits", text, re.M), text
    assert "app (cron) from 127.0.0.1 to postgres (seen 2x" in text
    assert "transaction(s) rolled back on prod-old since cutover" in text
