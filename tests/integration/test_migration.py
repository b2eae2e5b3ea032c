"""A whole offline migration through `pgmove do`, checked independently of pgmove's own verify."""

from __future__ import annotations

import json

import psycopg
import pytest

from pgmove.sandbox.servers import wait_until
from tests.integration.writer import Writer

pytestmark = pytest.mark.slow


def state_of(done) -> str:  # type: ignore[no-untyped-def]
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)["state"]


def rows(cluster, db, query):  # type: ignore[no-untyped-def]
    with psycopg.connect(cluster.admin_dsn(db)) as conn:
        return conn.execute(query).fetchall()


def test_full_dump_migration_with_a_live_writer(pgmove, source, target, passwords):  # type: ignore[no-untyped-def]
    """Plan, freeze (two people), copy, verify, cutover (two people): every acknowledged write arrives, later ones fail."""
    pgmove.start_worker()
    writer = Writer(source.tcp_dsn("app", "appdb"), passwords.app).start()
    try:
        assert state_of(pgmove.do("U_ALICE", "plan prod-old prod-new --jobs 2", "--wait", "--json")) == "ready"
        assert state_of(pgmove.do("U_ALICE", "freeze prod-old", "--json")) == "awaiting_freeze_approval"
        wait_until(lambda: len(writer.acknowledged) >= 10, 30, "the writer's inserts before the freeze")
        done = pgmove.do("U_BOB", "approve prod-old", "--wait", "--json")
        migration = json.loads(done.stdout)
        assert migration["state"] == "verified", done.stderr
        frozen_at = next(s for s in migration["steps"] if s["name"] == "freeze")["finished_at"]
        wait_until(lambda: [t for t, _ in writer.refused if t > _ts(frozen_at)], 30, "an insert refused after the freeze")
    finally:
        writer.stop()
    assert state_of(pgmove.do("U_ALICE", "cutover prod-old", "--json")) == "awaiting_cutover_approval"
    final = json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)
    assert final["state"] == "cut_over"
    assert {"id", "state", "source", "target", "steps"} <= set(final)

    # Every insert the source acknowledged is on the target; after the freeze every insert failed.
    acked = {i for i, _ in writer.acknowledged}
    assert acked, "the writer never got an insert in"
    on_target = {r[0] for r in rows(target, "appdb", "SELECT id FROM orders WHERE customer LIKE 'writer-%'")}
    assert acked <= on_target
    frozen_ts = _ts(frozen_at)
    assert not [t for _, t in writer.acknowledged if t > frozen_ts], "an insert was acknowledged after the freeze"
    assert [t for t, _ in writer.refused if t > frozen_ts], "no insert was attempted and refused after the freeze"

    # Every database, role, setting and row is there, checked with plain SQL.
    for db in ("pagila", "appdb", "archive"):
        for table in _tables(source, db):
            assert _count(source, db, table) == _count(target, db, table), (db, table)
    roles = "SELECT rolname, rolcanlogin, rolconnlimit FROM pg_roles WHERE rolname IN ('app', 'reporter', 'readers') ORDER BY 1"
    assert rows(source, "postgres", roles) == rows(target, "postgres", roles)
    members = "SELECT roleid::regrole::text, member::regrole::text FROM pg_auth_members WHERE member::regrole::text = 'reporter'"
    assert rows(target, "postgres", members) == [("readers", "reporter")]
    settings = """SELECT coalesce(d.datname, '*'), coalesce(r.rolname, '*'), s.setconfig FROM pg_db_role_setting s
                  LEFT JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole ORDER BY 1, 2"""
    assert dict(((d, r), c) for d, r, c in rows(target, "postgres", settings)) == {
        ("appdb", "*"): ["work_mem=8MB"],
        ("archive", "*"): ["default_transaction_read_only=on"],
        ("*", "app"): ['search_path="$user", public'],
        ("*", "reporter"): ["statement_timeout=42s"],
    }
    acl = "SELECT datacl::text, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'appdb'"
    assert rows(source, "postgres", acl) == rows(target, "postgres", acl)
    assert rows(target, "postgres", acl)[0][1] == "the app's data"
    assert rows(target, "appdb", "SELECT last_value FROM orders_id_seq")[0][0] >= max(acked)

    # The app logs in with its own password on the target and can write; the archive stays read-only.
    with psycopg.connect(target.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as conn:
        conn.execute("INSERT INTO orders (customer, total) VALUES ('after cutover', 1)")
    with psycopg.connect(target.tcp_dsn("app", "archive"), password=passwords.app, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE t (x int)")
    # A direct table grant to the second role arrived too.
    grant = "SELECT has_table_privilege('reporter', 'orders', 'INSERT'), has_column_privilege('reporter', 'orders', 'total', 'UPDATE')"
    assert rows(target, "appdb", grant) == [(True, True)]

    # The switch hook ran once, told where the target is, and was given no password.
    hook = json.loads(pgmove.hook_output.read_text())
    assert hook["argv"] == ["--to", "prod-new"]
    assert hook["env"]["PGHOST"] == "127.0.0.1" and hook["env"]["PGPORT"] == str(target.port)
    assert hook["env"]["PGMOVE_SOURCE"] == "prod-old" and hook["env"]["PGMOVE_TARGET"] == "prod-new"
    assert "PGPASSWORD" not in hook["env"]
    assert not any(p in json.dumps(hook) for p in passwords.all())

    # The source stays frozen after cutover: a write there fails.
    with psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO orders (customer, total) VALUES ('too late', 1)")


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def _tables(cluster, db):  # type: ignore[no-untyped-def]
    query = """SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"""
    return [r[0] for r in rows(cluster, db, query)]


def _count(cluster, db, table):  # type: ignore[no-untyped-def]
    return rows(cluster, db, f"SELECT count(*) FROM ONLY {table}")[0][0]  # noqa: S608 -- names from the catalog
