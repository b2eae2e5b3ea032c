"""What stops a logical migration at the door, through `pgmove do` and a real worker: an apply error on the target
is posted to the thread and blocks the freeze and the cutover until it is gone, and a cutover while the target is
further behind than the threshold is refused naming the lag."""

from __future__ import annotations

import psycopg
import pytest

from pgmove.sandbox.servers import wait_until
from tests.integration.test_logical_flow import configure, do_json, refused_with, zero_leftovers
from tests.integration.test_worker import store_of

pytestmark = pytest.mark.slow


def execute(cluster, db: str, statement: str) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(cluster.admin_dsn(db), autocommit=True) as conn:
        conn.execute(statement)


def rows(cluster, query: str) -> list[tuple]:  # type: ignore[no-untyped-def, type-arg]
    with psycopg.connect(cluster.admin_dsn("appdb")) as conn:
        return conn.execute(query).fetchall()


def test_an_apply_error_on_the_target_is_posted_and_blocks_the_freeze_and_the_cutover(pgmove, source, target, passwords):  # type: ignore[no-untyped-def]
    """A row inserted on the target first makes the source's insert of the same key fail to apply: the thread gets
    the apply worker's failure naming the database, freeze and cutover are refused with it, and once the row is
    removed the resolution is posted, the source's row arrives and the cutover may be asked for."""
    configure(pgmove, sync_check_seconds=1)
    pgmove.start_worker()
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new --method logical")["state"] == "ready"
    synced = do_json(pgmove, "U_ALICE", "sync prod-old")
    assert synced["state"] == "in_sync", synced.get("failure")
    # As replication does, past the target's guards (which refuse every other write while it follows the source)
    execute(target, "appdb", "SET session_replication_role = replica; "
            "INSERT INTO orders (id, customer, total) VALUES (900001, 'target first', 1)")
    execute(source, "appdb", "INSERT INTO orders (id, customer, total) VALUES (900001, 'source', 1)")
    store = store_of(pgmove)
    posted = wait_until(lambda: [e.message for e in store.events(synced["id"])
                                 if e.message.startswith("replication problem:")], 60, "the apply error posted")
    assert "appdb" in posted[0] and "apply worker" in posted[0], posted
    assert "SET session_replication_role = replica" in posted[0], posted  # the target refuses the advice otherwise
    for verb in ("freeze", "cutover"):
        refused = pgmove.do("U_ALICE", f"{verb} prod-old")
        assert refused_with(refused, "problems to resolve"), refused.stdout + refused.stderr
        assert "apply worker" in refused.stdout + refused.stderr
    assert do_json(pgmove, "U_ALICE", "status prod-old", wait=False)["state"] == "in_sync"

    execute(target, "appdb", "SET session_replication_role = replica; DELETE FROM orders WHERE id = 900001")
    wait_until(lambda: any(e.message.startswith("replication problem resolved:") for e in store.events(synced["id"])),
               60, "the resolution posted")
    wait_until(lambda: rows(target, "SELECT customer FROM orders WHERE id = 900001") == [("source",)], 60,
               "the source's row applied once the conflict is gone")
    assert do_json(pgmove, "U_ALICE", "cutover prod-old", wait=False)["state"] == "awaiting_cutover_approval"
    assert do_json(pgmove, "U_ALICE", "abort prod-old")["state"] == "aborted"
    assert zero_leftovers(source, target, passwords) == {}


def test_a_cutover_while_the_target_is_behind_the_threshold_is_refused_naming_the_lag(pgmove, source, target, passwords):  # type: ignore[no-untyped-def]
    """The target's apply waits on a lock the test holds while the source writes 4 MB: cutover and freeze are refused
    with the bytes behind and the threshold (1 MB here), nothing changes, and once the lock goes the cutover is
    accepted."""
    configure(pgmove, sync_check_seconds=1, sync_max_lag_bytes=1_000_000)
    pgmove.start_worker()
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new --method logical")["state"] == "ready"
    synced = do_json(pgmove, "U_ALICE", "sync prod-old")
    assert synced["state"] == "in_sync", synced.get("failure")
    store = store_of(pgmove)

    def behind(at_least: int) -> bool:
        m = store.get(synced["id"])
        return m is not None and m.sync_status is not None and not m.sync_status.problems and any(
            d.database == "appdb" and d.lag_bytes > at_least for d in m.sync_status.databases)

    holder = psycopg.connect(target.admin_dsn("appdb"))
    try:
        holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")  # the apply worker waits: no error, only lag
        # Many commits, not one big transaction: the slot confirms up to just before a commit the subscriber has
        # not applied, so the bytes behind count from the first commit it waits on.
        with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
            for _ in range(100):
                conn.execute("INSERT INTO orders (customer, total) SELECT repeat('x', 400), g "
                             "FROM generate_series(1, 100) g")
        wait_until(lambda: behind(1_000_000), 60, "a reading with appdb more than 1 MB behind")
        for verb in ("cutover", "freeze"):
            refused = pgmove.do("U_ALICE", f"{verb} prod-old")
            said = refused.stdout + refused.stderr
            assert refused_with(refused, "is behind prod-old"), said
            assert "appdb" in said and "bytes behind" in said and "threshold is 1000000 bytes" in said, said
        assert do_json(pgmove, "U_ALICE", "status prod-old", wait=False)["state"] == "in_sync"
    finally:
        holder.rollback()
        holder.close()
    # Every database, not only appdb: the others' slots were confirmed short of appdb's WAL meanwhile.
    wait_until(lambda: (m := store.get(synced["id"])) is not None and m.sync_status is not None
               and all(d.lag_bytes <= 1_000_000 for d in m.sync_status.databases) and not m.sync_status.problems,
               60, "a reading under the threshold")
    assert do_json(pgmove, "U_ALICE", "cutover prod-old", wait=False)["state"] == "awaiting_cutover_approval"
    assert do_json(pgmove, "U_ALICE", "abort prod-old")["state"] == "aborted"
    assert zero_leftovers(source, target, passwords) == {}
