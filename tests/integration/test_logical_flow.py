"""A logical migration through `pgmove do` and a real worker, checked with plain SQL: a live writer loses nothing,
the one-approval window gives the source back when it cannot finish, and nothing of the replication is left."""

from __future__ import annotations

import json
import time

import psycopg
import pytest
from psycopg import sql

from pgmove.sandbox.servers import wait_until
from pgmove.steps.connect import Endpoint
from pgmove.steps.replication.cleanup import leftovers
from tests.integration.test_worker import store_of
from tests.integration.writer import Writer

pytestmark = pytest.mark.slow


def configure(pgmove, **settings: object) -> None:  # type: ignore[no-untyped-def]
    """Top-level config keys for this test (before the first section)."""
    lines = "".join(f"{k} = {v}\n" for k, v in settings.items())
    text = pgmove.config_path.read_text()
    pgmove.config_path.write_text(text.replace("[access]", f"{lines}[access]", 1))


def do_json(pgmove, user: str, text: str, wait: bool = True) -> dict:  # type: ignore[no-untyped-def, type-arg]
    done = pgmove.do(user, text, *(["--wait"] if wait else []), "--json")
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def refused_with(done, text: str) -> bool:  # type: ignore[no-untyped-def]
    return done.returncode != 0 and text in done.stdout + done.stderr


def zero_leftovers(source, target, passwords) -> dict[str, int]:  # type: ignore[no-untyped-def]
    src = Endpoint("prod-old", source.tcp_dsn("pgmove"), password=passwords.source_pgmove)
    dst = Endpoint("prod-new", target.tcp_dsn("pgmove"), password=passwords.target_pgmove)
    return {k: v for k, v in leftovers(src, dst).items() if v}


def sync_and_cut_over(pgmove, window: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """plan --method logical, sync, then the one-approval cutover: the final record."""
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new --method logical")["state"] == "ready"
    synced = do_json(pgmove, "U_ALICE", "sync prod-old")
    assert synced["state"] == "in_sync", synced.get("failure")
    assert do_json(pgmove, "U_ALICE", f"cutover prod-old --window {window}", wait=False)["state"] == \
        "awaiting_cutover_approval"
    return do_json(pgmove, "U_BOB", "approve prod-old")


def rows(cluster, db: str, query: str) -> list[tuple]:  # type: ignore[no-untyped-def, type-arg]
    with psycopg.connect(cluster.admin_dsn(db)) as conn:
        return conn.execute(query).fetchall()


def writer_ids(cluster) -> set[int]:  # type: ignore[no-untyped-def]
    return {r[0] for r in rows(cluster, "appdb", "SELECT id FROM orders WHERE customer LIKE 'writer-%'")}


def sequences(cluster, db: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    query = "SELECT schemaname || '.' || sequencename, coalesce(last_value, 0) FROM pg_sequences"
    return {name: value for name, value in rows(cluster, db, query)}


def event_time(pgmove, migration_id: str, text: str) -> float:  # type: ignore[no-untyped-def]
    found = [e.at for e in store_of(pgmove).events(migration_id) if text in e.message]
    assert found, f"no event saying {text!r}"
    return found[-1].timestamp()


def test_a_live_writer_loses_nothing_through_sync_and_the_one_approval_cutover(pgmove, source, target, passwords):  # type: ignore[no-untyped-def]
    """plan --method logical, sync, cutover --window 10s with one approval: every acknowledged write is on the target,
    none was acknowledged after the freeze, sequences are at or past the source's, and no replication object is left."""
    live_writer_through_the_window(pgmove, source, target, passwords)


def test_the_one_approval_cutover_from_postgresql_15_to_18(pgmove18, source, target18, passwords):  # type: ignore[no-untyped-def]
    """The same whole logical migration with a live writer, to a PostgreSQL 18 target."""
    live_writer_through_the_window(pgmove18, source, target18, passwords)


def live_writer_through_the_window(pgmove, source, target, passwords) -> None:  # type: ignore[no-untyped-def]
    pgmove.start_worker()
    writer = Writer(source.tcp_dsn("app", "appdb"), passwords.app).start()
    try:
        assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new --method logical")["state"] == "ready"
        synced = do_json(pgmove, "U_ALICE", "sync prod-old")
        assert synced["state"] == "in_sync", synced.get("failure")
        wait_until(lambda: len(writer.acknowledged) >= 20, 30, "the writer's inserts while in sync")
        assert do_json(pgmove, "U_ALICE", "cutover prod-old --window 10s", wait=False)["state"] == \
            "awaiting_cutover_approval"
        final = do_json(pgmove, "U_BOB", "approve prod-old")
        assert final["state"] == "cut_over", final.get("failure")
        frozen = event_time(pgmove, final["id"], "frozen for the cutover window")
        wait_until(lambda: [t for t, _ in writer.refused if t > frozen], 30, "an insert refused after the freeze")
    finally:
        writer.stop()
    acked = {i for i, _ in writer.acknowledged}
    assert acked and acked <= writer_ids(target)
    assert not [t for _, t in writer.acknowledged if t > frozen], "an insert was acknowledged after the freeze"
    for db in ("appdb", "pagila"):
        on_source, on_target = sequences(source, db), sequences(target, db)
        assert all(on_target[name] >= value for name, value in on_source.items()), db
    assert zero_leftovers(source, target, passwords) == {}
    switch = next(s for s in final["steps"] if s["name"] == "switch")
    assert switch["status"] == "done"
    # The content was checked while in sync; inside the window only what was still changing then, and the rest
    assert synced["live_verification"]["tables"] > 0 and synced["live_verification"]["seconds"] > 0
    # and the estimate the cutover's approval states counts what it left to the window at the rate it measured
    assert synced["live_verification"]["bytes"] > 0
    assert synced["expected_downtime_seconds"] >= 1.0
    assert final["verification"]["mode"] == "live" and final["verification"]["ok"]
    assert final["verification"]["live_seconds"] == synced["live_verification"]["seconds"]


def test_a_window_that_cannot_drain_gives_the_source_back_and_replication_goes_on(pgmove, source, target, passwords):  # type: ignore[no-untyped-def]
    """With the target's subscription disabled the 10 s window runs out: the source takes writes again within the
    window plus 2 s, the migration is in sync again, the monitor posts the disabled subscription and blocks the
    cutover, and once enabled nothing written meanwhile is lost; abort then leaves no replication object."""
    configure(pgmove, sync_check_seconds=1)
    pgmove.start_worker()
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new --method logical")["state"] == "ready"
    synced = do_json(pgmove, "U_ALICE", "sync prod-old")
    assert synced["state"] == "in_sync", synced.get("failure")
    subscriptions = [d["subscription"] for d in synced["sync_setup"]["databases"] if d["database"] == "appdb"]
    refused = pgmove.do("U_ALICE", "plan prod-old prod-new")
    assert refused_with(refused, "abort prod-old")  # a second migration of the same source
    again = pgmove.do("U_ALICE", "sync prod-old")
    assert refused_with(again, "already in sync")

    writer = Writer(source.tcp_dsn("app", "appdb"), passwords.app).start()
    try:
        assert do_json(pgmove, "U_ALICE", "cutover prod-old --window 10s", wait=False)["state"] == \
            "awaiting_cutover_approval"
        with psycopg.connect(target.admin_dsn("appdb"), autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")  # as replication does: past the target's guards
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(subscriptions[0])))
        approved_at = time.time()
        back = do_json(pgmove, "U_BOB", "approve prod-old")
        assert back["state"] == "in_sync", back.get("failure")
        frozen = event_time(pgmove, back["id"], "frozen for the cutover window")
        unfrozen = event_time(pgmove, back["id"], "writes are back on prod-old")
    finally:
        writer.stop()
    assert [t for t, _ in writer.refused if t > frozen], "the freeze refused no insert"
    # A session opened during the freeze keeps its read-only default: a new one, as a pool would open, writes.
    with psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as conn:
        conn.execute("INSERT INTO orders (customer, total) VALUES ('writer-after-window', 1)")
    assert unfrozen - frozen < 10 + 2, "the source was not writable again within the window + 2 s"
    assert unfrozen - approved_at < 10 + 2 + 2
    switch = next(s for s in reversed(back["steps"]) if s["name"] == "switch")
    assert switch["status"] == "failed" and "ran out" in switch["message"]

    store = store_of(pgmove)
    wait_until(lambda: any("replication problem" in e.message for e in store.events(back["id"])), 30,
               "the disabled subscription posted")
    blocked = pgmove.do("U_ALICE", "cutover prod-old")
    assert refused_with(blocked, "problems to resolve")
    with psycopg.connect(target.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # as replication does: past the target's guards
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(subscriptions[0])))
    acked = {i for i, _ in writer.acknowledged}
    wait_until(lambda: acked <= writer_ids(target), 60, "every acknowledged insert replicated")

    aborted = do_json(pgmove, "U_ALICE", "abort prod-old")
    assert aborted["state"] == "aborted", aborted.get("failure")
    assert zero_leftovers(source, target, passwords) == {}
    assert rows(source, "postgres", "SHOW default_transaction_read_only") == [("off",)]


def test_logical_refusals_say_why(pgmove, source, target):  # type: ignore[no-untyped-def]
    """sync of a dump plan, --replica-identity-full without logical, and --window on a cutover that is not from
    in sync are refused with what to do instead, and change nothing."""
    pgmove.start_worker()
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new")["state"] == "ready"
    refused = pgmove.do("U_ALICE", "sync prod-old")
    assert refused_with(refused, "--method logical")
    flag = pgmove.do("U_ALICE", "plan prod-old prod-new --replica-identity-full")
    assert refused_with(flag, "--replica-identity-full is for --method logical")  # plain text on the terminal
    window = pgmove.do("U_ALICE", "cutover prod-old --window 10s")
    assert refused_with(window, "--window is for a cutover from in sync")
    assert do_json(pgmove, "U_ALICE", "status prod-old", wait=False)["state"] == "ready"


def test_a_source_without_logical_wal_is_refused_at_plan_naming_the_restart(pgmove, source, target):  # type: ignore[no-untyped-def]
    """A source at wal_level=replica fails the logical plan's preflight with the restart it needs, and sync is
    refused with the same problem."""
    source.stop()
    source.start(port=source.port, settings={"wal_level": "replica"})
    pgmove.start_worker()
    planned = do_json(pgmove, "U_ALICE", "plan prod-old prod-new --method logical")
    assert planned["state"] == "failed"
    assert "wal_level = replica" in planned["failure"]["reason"] and "restart" in planned["failure"]["reason"]
    refused = pgmove.do("U_ALICE", "sync prod-old")
    assert refused_with(refused, "wal_level = replica")


def test_a_worker_killed_inside_the_window_leaves_the_next_one_to_give_the_source_back(pgmove, source, target, passwords):  # type: ignore[no-untyped-def]
    """SIGKILL of the worker while the window drains (subscription disabled): a second worker's reaper turns the dead
    switch into the unfreeze, the source takes writes again, the migration is in sync, and abort leaves nothing."""
    doomed = pgmove.start_worker("doomed")
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new --method logical")["state"] == "ready"
    synced = do_json(pgmove, "U_ALICE", "sync prod-old")
    assert synced["state"] == "in_sync", synced.get("failure")
    assert do_json(pgmove, "U_ALICE", "cutover prod-old --window 60s", wait=False)["state"] == "awaiting_cutover_approval"
    for d in synced["sync_setup"]["databases"]:  # a subscription is altered from its own database
        with psycopg.connect(target.admin_dsn(d["database"]), autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = off")  # the archive database is read-only
            conn.execute("SET session_replication_role = replica")  # as replication does: past the target's guards
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(d["subscription"])))
    do_json(pgmove, "U_BOB", "approve prod-old", wait=False)
    store = store_of(pgmove)
    wait_until(lambda: any("frozen for the cutover window" in e.message for e in store.events(synced["id"])), 60,
               "the window's freeze")
    pgmove.kill_worker(doomed)
    pgmove.start_worker("second")
    back = do_json(pgmove, "U_ALICE", "status prod-old")
    assert back["state"] == "in_sync", back.get("failure")
    assert rows(source, "postgres", "SHOW default_transaction_read_only") == [("off",)]
    with psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as conn:
        conn.execute("INSERT INTO orders (customer, total) VALUES ('after the window', 1)")
    assert do_json(pgmove, "U_ALICE", "abort prod-old")["state"] == "aborted"
    assert zero_leftovers(source, target, passwords) == {}


def test_abort_while_syncing_stops_the_sync_and_leaves_nothing(pgmove, source, target, passwords):  # type: ignore[no-untyped-def]
    """An abort once the sync has recorded its objects stops the running sync step and removes every object."""
    pgmove.start_worker()
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new --method logical")["state"] == "ready"
    do_json(pgmove, "U_ALICE", "sync prod-old", wait=False)
    store = store_of(pgmove)
    m = store.active_for("prod-old")
    wait_until(lambda: (cur := store.get(m.id)) is not None and cur.sync_setup is not None
               and bool(cur.sync_setup.databases), 120, "the sync's recorded objects")
    aborted = do_json(pgmove, "U_ALICE", "abort prod-old")
    assert aborted["state"] == "aborted", aborted.get("failure")
    assert zero_leftovers(source, target, passwords) == {}


def test_the_two_step_path_freezes_drains_verifies_and_its_cutover_removes_the_replication(pgmove, source, target, passwords):  # type: ignore[no-untyped-def]
    """freeze from in sync drains instead of copying and reaches verified; the cutover approved apart then leaves
    the source frozen and no replication object on either side; sequences are at or past the source's."""
    pgmove.start_worker()
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new --method logical")["state"] == "ready"
    assert do_json(pgmove, "U_ALICE", "sync prod-old")["state"] == "in_sync"
    with psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as conn:
        conn.execute("INSERT INTO orders (customer, total) VALUES ('writer-in-sync', 1)")
    assert do_json(pgmove, "U_ALICE", "freeze prod-old", wait=False)["state"] == "awaiting_freeze_approval"
    verified = do_json(pgmove, "U_BOB", "approve prod-old")
    assert verified["state"] == "verified", verified.get("failure")
    assert [s["name"] for s in verified["steps"]][-3:] == ["freeze", "drain", "verify"]
    assert writer_ids(target) == writer_ids(source)
    assert do_json(pgmove, "U_ALICE", "cutover prod-old", wait=False)["state"] == "awaiting_cutover_approval"
    final = do_json(pgmove, "U_BOB", "approve prod-old")
    assert final["state"] == "cut_over", final.get("failure")
    assert final["sync_setup"] is None and zero_leftovers(source, target, passwords) == {}
    assert rows(source, "postgres", "SHOW default_transaction_read_only") == [("on",)]
    on_source, on_target = sequences(source, "appdb"), sequences(target, "appdb")
    assert all(on_target[name] >= value for name, value in on_source.items())


def test_unfreeze_after_a_drain_gives_writes_back_and_removes_the_replication(pgmove, source, target, passwords):  # type: ignore[no-untyped-def]
    """An unfreeze of a verified logical migration restores the source and drops every replication object: ready,
    with sync the next step."""
    pgmove.start_worker()
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new --method logical")["state"] == "ready"
    assert do_json(pgmove, "U_ALICE", "sync prod-old")["state"] == "in_sync"
    do_json(pgmove, "U_ALICE", "freeze prod-old", wait=False)
    assert do_json(pgmove, "U_BOB", "approve prod-old")["state"] == "verified"
    ready = do_json(pgmove, "U_ALICE", "unfreeze prod-old")
    assert ready["state"] == "ready" and ready["sync_setup"] is None and ready["freeze"] is None
    assert zero_leftovers(source, target, passwords) == {}
    with psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as conn:
        conn.execute("INSERT INTO orders (customer, total) VALUES ('after unfreeze', 1)")


def test_ddl_on_the_source_in_sync_is_posted_and_blocks_the_freeze(pgmove, source, target):  # type: ignore[no-untyped-def]
    """A column added on the source while in sync is an event in the thread within seconds (the check period is
    1 s here), the status shows it as blocking, and freeze is refused naming it."""
    configure(pgmove, sync_check_seconds=1)
    pgmove.start_worker()
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new --method logical")["state"] == "ready"
    synced = do_json(pgmove, "U_ALICE", "sync prod-old")
    assert synced["state"] == "in_sync", synced.get("failure")
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("ALTER TABLE orders ADD COLUMN note text")
    store = store_of(pgmove)
    posted = wait_until(lambda: [e for e in store.events(synced["id"]) if e.message.startswith("replication problem")],
                        60, "the DDL drift posted")
    assert "appdb" in posted[0].message
    refused = pgmove.do("U_ALICE", "freeze prod-old")
    assert refused_with(refused, "problems to resolve")
    status = pgmove.do("U_ALICE", "status prod-old")
    assert "PROBLEM (blocks freeze and cutover)" in status.stdout


def test_a_worker_killed_in_sync_leaves_the_next_one_to_remove_everything(pgmove, source, target, passwords):  # type: ignore[no-untyped-def]
    """SIGKILL of the worker once the sync recorded its objects: the sync is marked failed, and abort with a second
    worker finds and removes every object, by the names recorded before they were created."""
    doomed = pgmove.start_worker("doomed")
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new --method logical")["state"] == "ready"
    do_json(pgmove, "U_ALICE", "sync prod-old", wait=False)
    store = store_of(pgmove)
    m = store.active_for("prod-old")
    wait_until(lambda: (cur := store.get(m.id)) is not None and cur.sync_setup is not None
               and bool(cur.sync_setup.databases), 120, "the sync's recorded objects")
    pgmove.kill_worker(doomed)
    pgmove.start_worker("second")
    failed = do_json(pgmove, "U_ALICE", "status prod-old")
    assert failed["state"] == "failed" and failed["failure"]["step"] == "sync"
    assert do_json(pgmove, "U_ALICE", "abort prod-old")["state"] == "aborted"
    assert zero_leftovers(source, target, passwords) == {}
