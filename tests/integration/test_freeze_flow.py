"""The freeze through pgmove itself: a worker dying mid-freeze, a leak-proof copy that passes the quiet check."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.integration.catalog import customize, snapshot
from tests.integration.test_worker import store_of, wait_for

pytestmark = pytest.mark.slow


def test_a_worker_killed_mid_freeze_is_retried_and_unfreeze_is_exact(pgmove, source, passwords):  # type: ignore[no-untyped-def]
    """Standalone freeze (no migration planned): the worker dies during the grace period; retry finishes; unfreeze is exact."""
    customize(source)
    before = snapshot(source)
    blocker = psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app)
    blocker.execute("SELECT 1")  # an open transaction: the freeze must wait out its grace period
    worker = pgmove.start_worker("doomed")
    assert pgmove.do("U_ALICE", "freeze prod-old --grace 60s").returncode == 0
    assert pgmove.do("U_BOB", "approve prod-old").returncode == 0
    store = store_of(pgmove)
    m = store.active_for("prod-old")
    assert m.target is None
    wait_for(lambda: any("get 60s to finish" in e.message for e in store.events(m.id)))
    pgmove.kill_worker(worker)
    failed = json.loads(pgmove.do("U_ALICE", "status prod-old", "--wait", "--json").stdout)
    assert failed["state"] == "failed" and failed["failure"]["step"] == "freeze"
    assert snapshot(source) != before  # half frozen: defaults and DDL guard in place

    blocker.close()
    pgmove.start_worker("second")
    frozen = json.loads(pgmove.do("U_ALICE", "retry prod-old", "--wait", "--json").stdout)
    assert frozen["state"] == "frozen", frozen.get("failure")
    assert frozen["freeze"]["taken_at"] == failed["freeze"]["taken_at"], "the retry re-took the snapshot"
    with psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("BEGIN READ WRITE; INSERT INTO orders (customer) VALUES ('x'); COMMIT")

    done = json.loads(pgmove.do("U_ALICE", "unfreeze prod-old", "--wait", "--json").stdout)
    assert done["state"] == "ready" and done["freeze"] is None
    assert snapshot(source) == before


def test_a_copy_taken_during_a_no_connect_freeze_carries_nothing_of_it(pgmove, source, target, passwords):  # type: ignore[no-untyped-def]
    """The target is writable, logins work, and no guard, revoked privilege or read-only default made it across."""
    customize(source)
    before = snapshot(source, ["appdb", "pagila", "archive"])
    pgmove.start_worker()
    assert pgmove.do("U_ALICE", "plan prod-old prod-new", "--wait").returncode == 0
    assert pgmove.do("U_ALICE", "freeze prod-old --mode no-connect").returncode == 0
    done = pgmove.do("U_BOB", "approve prod-old", "--wait", "--json")
    migration = json.loads(done.stdout)
    assert migration["state"] == "verified", done.stderr
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app)

    after = snapshot(target, ["appdb", "pagila", "archive"])
    for key in ("appdb:relation_acls", "appdb:function_acls", "appdb:function_acls_lo", "appdb:triggers",
                "appdb:event_triggers", "appdb:functions", "pagila:triggers", "pagila:event_triggers",
                "archive:event_triggers", "pagila:relation_acls", "appdb:schemas"):
        assert after[key] == before[key], key
    roles = {r[0]: r[1] for r in after["roles"]}
    assert roles["app"] is True and roles["reporter"] is True and roles["retired"] is False
    settings = {(d, r): sorted(c) for d, r, c in after["db_role_settings"]}  # order within setconfig is meaningless
    assert settings[("archive", "*")] == ["default_transaction_read_only=on"]
    assert settings[("*", "reporter")] == ["default_transaction_read_only=off", "statement_timeout=42s"]
    assert settings[("pagila", "app")] == ["default_transaction_read_only=off"]
    assert ("*", "*") not in settings and settings[("appdb", "*")] == ["work_mem=8MB"]
    with psycopg.connect(target.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as conn:
        conn.execute("BEGIN; INSERT INTO orders (customer) VALUES ('on the new server'); SELECT nextval('orders_id_seq'); COMMIT")
        conn.execute("SELECT lo_put(4242, 0, 'x')")
    events = " ".join(e.message for e in store_of(pgmove).events(migration["id"]))
    assert "quiet check: no write on prod-old since the freeze took hold" in events
    assert "quiet check: no write on prod-old during the copy" in events
