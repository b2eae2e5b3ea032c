"""While it follows the source, the target refuses every write but replication's and pgmove's: the early split brain
(an app or a person writing to the new server before the cutover) is refused with the read-only error, replication
goes on, and the cutover and the abort leave no guard behind."""

from __future__ import annotations

import psycopg
import pytest

from pgmove.sandbox.servers import wait_until
from pgmove.steps import guards
from tests.integration.test_logical_flow import do_json, writer_ids
from tests.integration.writer import Writer

pytestmark = pytest.mark.slow
MOVED = ("appdb", "pagila")


def guard_objects(target, db: str) -> int:  # type: ignore[no-untyped-def]
    with psycopg.connect(target.admin_dsn(db)) as conn:
        row = conn.execute("SELECT (SELECT count(*) FROM pg_trigger WHERE tgname = %s) + "
                           "(SELECT count(*) FROM pg_event_trigger WHERE evtname = %s) + "
                           "(SELECT count(*) FROM pg_namespace WHERE nspname = %s)",
                           (guards.TABLE_TRIGGER, guards.EVENT_TRIGGER, guards.SCHEMA)).fetchone()
        assert row is not None
        return int(row[0])


def in_sync(pgmove) -> dict:  # type: ignore[no-untyped-def, type-arg]
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new --method logical")["state"] == "ready"
    synced = do_json(pgmove, "U_ALICE", "sync prod-old")
    assert synced["state"] == "in_sync", synced.get("failure")
    return synced


def test_the_target_refuses_the_app_until_the_cutover_and_takes_its_writes_after(pgmove, source, target,  # type: ignore[no-untyped-def]
                                                                                passwords):
    """In sync: the app role's INSERT and an admin's DDL on the target are refused with SQLSTATE 25006, naming the
    move, while the source's writes keep arriving; a superuser in replica mode can still write on purpose. After the
    one-approval cutover the app writes on the target and no guard object is left in any moved database."""
    pgmove.start_worker()
    writer = Writer(source.tcp_dsn("app", "appdb"), passwords.app).start()
    try:
        in_sync(pgmove)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="target of the move from prod-old"), \
                psycopg.connect(target.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as app:
            app.execute("INSERT INTO orders (customer, total) VALUES ('early split brain', 1)")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), \
                psycopg.connect(target.admin_dsn("appdb"), autocommit=True) as admin:
            admin.execute("CREATE TABLE written_too_early (x int)")
        with psycopg.connect(target.admin_dsn("appdb"), autocommit=True) as admin:
            admin.execute("SET session_replication_role = replica")  # the documented override, as the apply worker
            admin.execute("DELETE FROM orders WHERE false")
        wait_until(lambda: len(writer.acknowledged) >= 20, 30, "the writer's inserts while in sync")
        acked = {i for i, _ in writer.acknowledged}
        wait_until(lambda: acked <= writer_ids(target), 60, "the source's inserts replicated through the guards")
        assert do_json(pgmove, "U_ALICE", "cutover prod-old --window 30s", wait=False)["state"] == \
            "awaiting_cutover_approval"
        final = do_json(pgmove, "U_BOB", "approve prod-old")
        assert final["state"] == "cut_over", final.get("failure")
    finally:
        writer.stop()
    with psycopg.connect(target.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as app:
        app.execute("INSERT INTO orders (customer, total) VALUES ('after the cutover', 1)")
    assert {db: guard_objects(target, db) for db in MOVED} == {db: 0 for db in MOVED}


def test_an_abort_after_sync_leaves_no_guard_on_the_target(pgmove, source, target, passwords):  # type: ignore[no-untyped-def]
    """The guards go with the replication: after an abort the target's databases take the app's writes again."""
    pgmove.start_worker()
    in_sync(pgmove)
    assert all(guard_objects(target, db) > 0 for db in MOVED)
    aborted = do_json(pgmove, "U_ALICE", "abort prod-old")
    assert aborted["state"] == "aborted", aborted.get("failure")
    assert {db: guard_objects(target, db) for db in MOVED} == {db: 0 for db in MOVED}
    with psycopg.connect(target.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as app:
        # An id of its own: replication does not carry sequences, so after an abort the target's are where they were
        app.execute("INSERT INTO orders (id, customer, total) VALUES (990001, 'after the abort', 1)")
