"""PostgreSQL 15 to 18: the whole move, and a plan refused when the target lacks what the source uses."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.integration.test_migration import _count, _tables

pytestmark = pytest.mark.slow


def rows(cluster, db, query):  # type: ignore[no-untyped-def]
    with psycopg.connect(cluster.admin_dsn(db)) as conn:
        return conn.execute(query).fetchall()


def test_a_whole_migration_from_15_to_18(pgmove18, source, target18, passwords):  # type: ignore[no-untyped-def]
    """Client tools matching the target are chosen and named in the plan; the copy verifies; the app writes on 18."""
    pgmove18.start_worker()
    planned = json.loads(pgmove18.do("U_ALICE", "plan prod-old prod-new", "--wait", "--json").stdout)
    assert planned["state"] == "ready", planned.get("failure")
    assert planned["preflight"]["target_version"].startswith("18")
    assert "PostgreSQL 18" in planned["preflight"]["tools"]["pg_dump"]
    assert pgmove18.do("U_ALICE", "freeze prod-old").returncode == 0
    done = pgmove18.do("U_BOB", "approve prod-old", "--wait", "--json")
    verified = json.loads(done.stdout)
    assert verified["state"] == "verified", (verified.get("failure"), (verified.get("verification") or {}).get("problems"))
    assert pgmove18.do("U_ALICE", "cutover prod-old").returncode == 0
    assert json.loads(pgmove18.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)["state"] == "cut_over"

    for db in ("pagila", "appdb", "archive"):
        for table in _tables(source, db):
            assert _count(source, db, table) == _count(target18, db, table), (db, table)
    assert rows(target18, "postgres", "SHOW server_version")[0][0].startswith("18")
    with psycopg.connect(target18.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as conn:
        conn.execute("INSERT INTO orders (customer, total) VALUES ('on 18', 1)")
    with psycopg.connect(target18.tcp_dsn("app", "archive"), password=passwords.app, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE t (x int)")


def test_a_target_lacking_an_extension_or_an_icu_collation_is_refused_at_plan_time(pgmove18, source):  # type: ignore[no-untyped-def]
    """The plan names what is missing, and the freeze is refused until it is fixed."""
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pgcrypto")
        conn.execute('ALTER TABLE public.orders ADD COLUMN note text COLLATE "de-DE-x-icu"')
    pgmove18.start_worker()
    done = pgmove18.do("U_ALICE", "plan prod-old prod-new", "--wait", "--json")
    planned = json.loads(done.stdout)
    assert done.returncode == 1 and planned["state"] == "failed" and planned["failure"]["step"] == "preflight"
    problems = " ".join(planned["preflight"]["problems"])
    assert "extension pgcrypto" in problems and "database appdb" in problems
    assert 'collation "de-DE-x-icu"' in problems
    refused = pgmove18.do("U_ALICE", "freeze prod-old")
    assert refused.returncode == 2 and "not now" in refused.stderr.lower()
