"""Every way out of the logical path before a cutover (abort or unfreeze from each state, and a worker SIGKILLed in
the sync, the drain and the cleanup) ends with no replication slot (table-sync ones included), publication,
subscription or origin on either server, counted with plain SQL, and the source's catalog exactly as before."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgmove.sandbox.servers import wait_until
from tests.integration import catalog
from tests.integration.test_logical_flow import configure, do_json
from tests.integration.test_worker import store_of

pytestmark = pytest.mark.slow
NONE = {"slots": 0, "subscriptions": 0, "origins": 0, "publications": 0}


def in_sync(pgmove, plan_flags: str = "") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    assert do_json(pgmove, "U_ALICE", f"plan prod-old prod-new --method logical{plan_flags}")["state"] == "ready"
    synced = do_json(pgmove, "U_ALICE", "sync prod-old")
    assert synced["state"] == "in_sync", synced.get("failure")
    return synced


def syncing(pgmove) -> str:  # type: ignore[no-untyped-def]
    """Sync started and its objects recorded (some made, the initial copy running): the migration's id."""
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new --method logical")["state"] == "ready"
    do_json(pgmove, "U_ALICE", "sync prod-old", wait=False)
    store = store_of(pgmove)
    m = store.active_for("prod-old")
    assert m is not None
    wait_until(lambda: (cur := store.get(m.id)) is not None and cur.sync_setup is not None
               and bool(cur.sync_setup.databases), 120, "the sync's recorded objects")
    return m.id


def stuck_apply(source, target) -> psycopg.Connection:  # type: ignore[no-untyped-def, type-arg]
    """The target's apply waits on a lock the returned session holds, behind a write made on the source: no error
    and next to no lag (so the freeze is allowed), but a drain that can never finish while the lock is held."""
    holder = psycopg.connect(target.admin_dsn("appdb"))
    holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("INSERT INTO orders (customer, total) VALUES ('never applied in time', 1)")
    return holder


def frozen_from_in_sync(pgmove, source, target) -> tuple[str, psycopg.Connection]:  # type: ignore[no-untyped-def, type-arg]
    """Frozen from in_sync, the drain waiting for a write the target cannot apply yet."""
    synced = in_sync(pgmove)
    holder = stuck_apply(source, target)
    assert do_json(pgmove, "U_ALICE", "freeze prod-old", wait=False)["state"] == "awaiting_freeze_approval"
    do_json(pgmove, "U_BOB", "approve prod-old", wait=False)
    return str(synced["id"]), holder


def draining(pgmove, source, target) -> psycopg.Connection:  # type: ignore[no-untyped-def, type-arg]
    migration_id, holder = frozen_from_in_sync(pgmove, source, target)
    store = store_of(pgmove)
    wait_until(lambda: (m := store.get(migration_id)) is not None and m.lease is not None
               and m.lease.step == "drain", 120, "the drain running")
    return holder


def rows(cluster, query: str) -> list[tuple[Any, ...]]:  # type: ignore[no-untyped-def]
    """A session of its own each time: the unfreeze ends idle sessions opened during the freeze."""
    with psycopg.connect(cluster.admin_dsn(), autocommit=True) as conn:
        return conn.execute(query).fetchall()


def end(pgmove, verb: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    done = do_json(pgmove, "U_ALICE", f"{verb} prod-old")
    assert done["state"] == expected, (done["state"], done.get("failure"))


def end_then_release(pgmove, holder: psycopg.Connection, verb: str, expected: str) -> None:  # type: ignore[no-untyped-def, type-arg]
    """The way out starts while the target's table is still locked; the lock goes a moment later (removing the
    target's guards waits for it, as it would for a long query there)."""
    do_json(pgmove, "U_ALICE", f"{verb} prod-old", wait=False)
    time.sleep(1.0)
    holder.close()
    done = wait_until(lambda: (d := do_json(pgmove, "U_ALICE", "status prod-old", wait=False))["state"] in
                      (expected, "failed") and d, 120, f"the {verb} done")
    assert done["state"] == expected, (done["state"], done.get("failure"))


def abort_syncing(pgmove, source, target) -> None:  # type: ignore[no-untyped-def]
    syncing(pgmove)
    end(pgmove, "abort", "aborted")


def abort_in_sync_with_identity_full(pgmove, source, target) -> None:  # type: ignore[no-untyped-def]
    synced = in_sync(pgmove, " --replica-identity-full")
    assert [t["name"] for t in synced["sync_setup"]["identity_full"]] == ["loose_lines"]
    end(pgmove, "abort", "aborted")


def abort_in_sync_with_the_source_down(pgmove, source, target) -> None:  # type: ignore[no-untyped-def]
    """The cleanup cannot reach the source: the abort fails saying what is left and keeps the record, so the abort
    asked again once the source is back removes the slots and publications instead of forgetting them."""
    in_sync(pgmove)
    port = source.port
    source.stop()
    try:
        failed = do_json(pgmove, "U_ALICE", "abort prod-old")
    finally:
        source.start(port=port)
    assert failed["state"] == "failed" and failed["failure"]["step"] == "unfreeze", failed.get("failure")
    assert "could not be fully removed" in failed["failure"]["reason"], failed["failure"]
    assert "pg_drop_replication_slot" in failed["failure"]["reason"]
    assert catalog.replication_objects(source)["slots"] > 0  # still there, and still on the record
    end(pgmove, "abort", "aborted")


def abort_awaiting_freeze_approval(pgmove, source, target) -> None:  # type: ignore[no-untyped-def]
    in_sync(pgmove)
    assert do_json(pgmove, "U_ALICE", "freeze prod-old", wait=False)["state"] == "awaiting_freeze_approval"
    end(pgmove, "abort", "aborted")


def abort_awaiting_window_approval(pgmove, source, target) -> None:  # type: ignore[no-untyped-def]
    in_sync(pgmove)
    assert do_json(pgmove, "U_ALICE", "cutover prod-old --window 10s", wait=False)["state"] == \
        "awaiting_cutover_approval"
    end(pgmove, "abort", "aborted")


def unfreeze_draining(pgmove, source, target) -> None:  # type: ignore[no-untyped-def]
    end_then_release(pgmove, draining(pgmove, source, target), "unfreeze", "ready")


def abort_verified(pgmove, source, target) -> None:  # type: ignore[no-untyped-def]
    in_sync(pgmove)
    do_json(pgmove, "U_ALICE", "freeze prod-old", wait=False)
    assert do_json(pgmove, "U_BOB", "approve prod-old")["state"] == "verified"
    end(pgmove, "abort", "aborted")


def unfreeze_failed_drain(pgmove, source, target) -> None:  # type: ignore[no-untyped-def]
    configure(pgmove, drain_seconds=2)
    holder = frozen_from_in_sync(pgmove, source, target)[1]
    failed = do_json(pgmove, "U_ALICE", "status prod-old")
    assert failed["state"] == "failed" and failed["failure"]["step"] == "drain", failed.get("failure")
    end_then_release(pgmove, holder, "unfreeze", "ready")


def killed_in_sync(pgmove, source, target) -> None:  # type: ignore[no-untyped-def]
    syncing(pgmove)
    pgmove.kill_worker(pgmove.workers[0])
    pgmove.start_worker("second")
    failed = do_json(pgmove, "U_ALICE", "status prod-old")
    assert failed["state"] == "failed" and failed["failure"]["step"] == "sync", failed.get("failure")
    end(pgmove, "abort", "aborted")


def killed_in_drain(pgmove, source, target) -> None:  # type: ignore[no-untyped-def]
    holder = draining(pgmove, source, target)
    pgmove.kill_worker(pgmove.workers[0])
    pgmove.start_worker("second")
    failed = do_json(pgmove, "U_ALICE", "status prod-old")
    assert failed["state"] == "failed" and failed["failure"]["step"] == "drain", failed.get("failure")
    end_then_release(pgmove, holder, "unfreeze", "ready")


def killed_in_cleanup(pgmove, source, target) -> None:  # type: ignore[no-untyped-def]
    """The unfreeze of a verified migration removes the replication; the worker dies with the target's subscriptions
    and the source's slots gone but a publication left (its drop waits on a row lock the test holds)."""
    in_sync(pgmove)
    do_json(pgmove, "U_ALICE", "freeze prod-old", wait=False)
    assert do_json(pgmove, "U_BOB", "approve prod-old")["state"] == "verified"
    # Only DROP PUBLICATION waits on a row lock: a lock on the whole catalog would hold up whatever else reads it
    # (the WAL sender among them). Holding a transaction id, the session is not one the unfreeze ends.
    holder = psycopg.connect(source.admin_dsn("pagila"), application_name="pgmove",
                             options="-c default_transaction_read_only=off")
    try:
        assert holder.execute("SELECT count(*) FROM (SELECT 1 FROM pg_publication FOR UPDATE) p").fetchone() == (1,)
        do_json(pgmove, "U_ALICE", "unfreeze prod-old", wait=False)
        try:
            wait_until(lambda: rows(source, "SELECT 1 FROM pg_stat_activity WHERE datname = 'pagila' AND "
                                    "wait_event_type = 'Lock' AND query LIKE 'DROP PUBLICATION%'"),
                       120, "the cleanup waiting to drop the publication")  # after the unfreeze, each slot released
        except TimeoutError as exc:
            m = store_of(pgmove).active_for("prod-old")
            events = [f"{e.at:%H:%M:%S.%f} {e.kind} {e.message}"[:300] for e in store_of(pgmove).events(m.id)] if m else []
            activity = rows(source, "SELECT pid, datname, usename, application_name, state, wait_event_type, "
                            "wait_event, left(query, 120) FROM pg_stat_activity WHERE datname IS NOT NULL")
            locks = rows(source, "SELECT l.pid, a.backend_type, a.application_name, l.locktype, l.relation::regclass, "
                         "l.mode, l.granted, pg_blocking_pids(l.pid), a.wait_event, left(a.query, 200) FROM pg_locks l "
                         "JOIN pg_stat_activity a ON a.pid = l.pid WHERE cardinality(pg_blocking_pids(l.pid)) > 0")
            raise AssertionError(f"{exc}\nevents:\n" + "\n".join(events) + "\nsource sessions:\n"
                                 + "\n".join(map(str, activity)) + "\nblocked locks:\n"
                                 + "\n".join(map(str, locks))) from exc
        pgmove.kill_worker(pgmove.workers[0])  # before the cleanup's lock timeout: it dies waiting
        assert rows(source, "SELECT count(*) FROM pg_replication_slots") == [(0,)]
        assert catalog.replication_objects(target)["subscriptions"] == 0
    finally:
        holder.rollback()
        holder.close()
    pgmove.start_worker("second")
    failed = do_json(pgmove, "U_ALICE", "status prod-old")
    assert failed["state"] == "failed" and failed["failure"]["step"] == "unfreeze", failed.get("failure")
    end(pgmove, "abort", "aborted")


WAYS: dict[str, Callable[..., None]] = {f.__name__: f for f in (
    abort_syncing, abort_in_sync_with_identity_full, abort_in_sync_with_the_source_down,
    abort_awaiting_freeze_approval, abort_awaiting_window_approval,
    unfreeze_draining, abort_verified, unfreeze_failed_drain, killed_in_sync, killed_in_drain, killed_in_cleanup)}


@pytest.mark.parametrize("way", list(WAYS))
def test_every_way_out_before_the_cutover_leaves_no_replication_and_the_source_as_before(pgmove, source, target, passwords, way):  # type: ignore[no-untyped-def]
    """Abort or unfreeze from each state of the logical path, or a SIGKILLed worker then a second one: 0 slots,
    publications, subscriptions and origins on both servers, the source's catalog unchanged, and the app writes."""
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("CREATE TABLE loose_lines (line text)")  # keyless: left out, or REPLICA IDENTITY FULL
        conn.execute("INSERT INTO loose_lines SELECT 'line ' || g FROM generate_series(1, 100) g")
    before = catalog.snapshot(source)
    pgmove.start_worker()
    WAYS[way](pgmove, source, target)
    assert catalog.replication_objects(source) == NONE
    assert catalog.replication_objects(target) == NONE
    assert catalog.snapshot(source) == before
    with psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as conn:
        conn.execute("INSERT INTO orders (customer, total) VALUES ('after', 1)")
