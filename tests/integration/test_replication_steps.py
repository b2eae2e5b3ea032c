"""Logical replication's server-side steps against real servers: readiness, setup, status, drain, finish, cleanup."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgmove.sandbox.servers import PgCluster, wait_until
from pgmove.state.models import FreezeMode
from pgmove.state.replication import SyncSetup
from pgmove.steps import freeze
from pgmove.steps.connect import Endpoint
from pgmove.steps.replication import cleanup, drain, readiness, setup, status
from pgmove.steps.tools import ToolSet, choose_toolset
from tests.integration import fidelity
from tests.integration.freezeworld import Events
from tests.integration.writer import Writer

pytestmark = pytest.mark.slow
DATABASES = ["appdb", "archive", "pagila"]
MIGRATION = "mig-0a1b2c3d"
GIB = 1 << 30


def endpoints(source: PgCluster, target: PgCluster, passwords: Any) -> tuple[Endpoint, Endpoint]:
    return (Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",)),
            Endpoint("prod-new", target.tcp_dsn("pgmove"), passwords.target_pgmove))


def toolset_for(source: PgCluster, target: PgCluster) -> ToolSet:
    found = choose_toolset(source.major, target.major, [str(target.bin_dir)])
    assert found is not None
    return found


def add_awkward_tables(source: PgCluster) -> None:
    """A table without a key, an unlogged one, a standalone sequence and a large object: what replication misses."""
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (body text, n int)")
        conn.execute("INSERT INTO notes SELECT 'note ' || g, g FROM generate_series(1, 2000) g")
        conn.execute("CREATE UNLOGGED TABLE scratch (k int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO scratch SELECT g, 'v' FROM generate_series(1, 50) g")
        conn.execute("CREATE SEQUENCE tickets")
        conn.execute("SELECT setval('tickets', 41)")
        conn.execute("SELECT lo_from_bytea(4242, 'before sync')")


def start(src: Endpoint, dst: Endpoint, tools: ToolSet, tmp_path: Path, databases: list[str] = DATABASES,
          full: bool = False, records: list[SyncSetup] | None = None, previous: SyncSetup | None = None,
          initial_copy: str = "snapshot") -> SyncSetup:
    kept = records if records is not None else []
    return setup.start(src, dst, databases, MIGRATION, replica_identity_full=full, toolset=tools,
                       work_dir=str(tmp_path), jobs=2, record=lambda s: kept.append(s.model_copy(deep=True)),
                       progress=Events(), should_stop=lambda: False, previous=previous,
                       initial_copy=initial_copy)


def wait_in_sync(src: Endpoint, dst: Endpoint, done: SyncSetup, timeout: float = 120) -> Any:
    def ready() -> Any:
        current = status.read(src, dst, done, max_retained_wal_bytes=GIB)
        return current if current.in_sync(64 * 1024) else None
    return wait_until(ready, timeout, "every table ready and the lag under 64 kB", every=0.3)


def rows(cluster: PgCluster, database: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(cluster.admin_dsn(database), autocommit=True) as conn:
        return conn.execute(query, params or None).fetchall()


def execute(cluster: PgCluster, database: str, *statements: str) -> None:
    with psycopg.connect(cluster.admin_dsn(database), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def test_readiness_blocks_wal_level_replica_and_lists_keyless_tables(golden_source, sandbox_root, target, passwords):  # type: ignore[no-untyped-def]
    """A source with wal_level=replica is a blocking problem naming the restart; keyless tables come with their sizes."""
    base = sandbox_root / "replica-wal"
    cluster = golden_source.clone(base, "replica-wal").start(settings={"wal_level": "replica"})
    try:
        add_awkward_tables(cluster)
        src, dst = endpoints(cluster, target, passwords)
        found = readiness.check(src, dst, DATABASES, replica_identity_full=False)
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    assert found.settings["source.wal_level"] == "replica"
    assert any("wal_level = replica" in p and "restart" in p for p in found.problems), found.problems
    keyless = {(t.database, t.schema_name, t.name): t.size_bytes for t in found.keyless}
    assert keyless.get(("appdb", "public", "notes"), 0) > 0, keyless
    assert not any(name == "scratch" for _, _, name in keyless)
    assert any("scratch" in line for line in found.not_carried), found.not_carried


def test_readiness_passes_a_logical_source(source, target, passwords):  # type: ignore[no-untyped-def]
    """The test clusters run wal_level=logical with room for three databases' slots: nothing blocks."""
    src, dst = endpoints(source, target, passwords)
    found = readiness.check(src, dst, DATABASES, replica_identity_full=False)
    assert found.problems == [], found.problems
    assert found.settings["source.wal_level"] == "logical"


def test_readiness_blocks_a_copy_whose_wal_outgrows_max_slot_wal_keep_size(golden_source, sandbox_root, source, target, passwords):  # type: ignore[no-untyped-def]
    """A source writing WAL while max_slot_wal_keep_size is smaller than what the initial copy would hold is blocked,
    with the estimate and the size to raise it to; the same source without the limit gets the estimate only."""
    base = sandbox_root / "small-keep"
    cluster = golden_source.clone(base, "small-keep").start(settings={"max_slot_wal_keep_size": "1MB"})
    stop = False

    def write() -> None:
        with psycopg.connect(cluster.admin_dsn("appdb"), autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS wal_maker (x text)")
            while not stop:
                conn.execute("INSERT INTO wal_maker SELECT repeat('x', 200) FROM generate_series(1, 2000)")

    import threading
    writer = threading.Thread(target=write)
    writer.start()
    budget = readiness.WalBudget(copy_bytes=10 * 1024**3, copy_bytes_per_second=50 * 1024**2,
                                 max_retained_bytes=10 * 1024**3)
    try:
        time.sleep(0.5)
        src, dst = endpoints(cluster, target, passwords)
        found = readiness.check(src, dst, DATABASES, replica_identity_full=False, wal=budget)
        unlimited = readiness.check(*endpoints(source, target, passwords), DATABASES, replica_identity_full=False,
                                    wal=budget)
    finally:
        stop = True
        writer.join()
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    assert any("max_slot_wal_keep_size (1 MB)" in p and "invalidated" in p for p in found.problems), found.problems
    assert int(found.settings["source.wal_held_during_copy_bytes"]) > 1024 * 1024
    assert not any("max_slot_wal_keep_size (" in p for p in unlimited.problems), unlimited.problems
    assert "pg_wal's disk" in unlimited.wal_held and "pg_wal's disk" in found.wal_held


@pytest.mark.parametrize("target_name", ["target", "target18"])
@pytest.mark.parametrize("initial_copy", ["subscription", "snapshot"])
def test_sync_follows_writes_then_drain_and_finish_leave_the_target_equal(source, passwords, tmp_path, request,  # type: ignore[no-untyped-def]
                                                                           target_name, initial_copy):
    """Writes made while in sync arrive; after freeze, drain and finish every row, sequence and large object
    matches the source's; cleanup on the frozen source then leaves no slot, publication, subscription or origin.
    Either initial copy: the subscription's own, or pgmove's at the slot's snapshot."""
    target = request.getfixturevalue(target_name)
    add_awkward_tables(source)
    for cluster in (source, target):  # the subscription's statement carries the source's password: the log must not
        execute(cluster, "postgres", "ALTER SYSTEM SET log_statement = 'all'", "SELECT pg_reload_conf()")
    src, dst = endpoints(source, target, passwords)
    events = Events()
    writer = Writer(source.tcp_dsn("app", "appdb"), passwords.app).start()  # through setup, sync and the freeze
    done = setup.start(src, dst, DATABASES, MIGRATION, replica_identity_full=False, toolset=toolset_for(source, target),
                       work_dir=str(tmp_path), jobs=2, record=lambda s: None, progress=events, should_stop=lambda: False,
                       initial_copy=initial_copy)
    assert {t.name for t in done.left_out} >= {"notes", "scratch"}
    secret = passwords.source_pgmove
    assert secret not in done.model_dump_json() and secret not in repr(events.messages + events.data)
    assert secret not in Path(target.log).read_text() and secret not in Path(source.log).read_text()
    assert not rows(target, "postgres", "SELECT 1 FROM pg_stat_activity WHERE strpos(query, %s) > 0", secret)
    wait_in_sync(src, dst, done)
    execute(source, "appdb", "UPDATE orders SET total = 2 WHERE id = 1", "DELETE FROM orders WHERE id = 2",
            "INSERT INTO notes VALUES ('late', 0)", "SELECT nextval('tickets')", "SELECT lo_from_bytea(4343, 'during sync')",
            "INSERT INTO orders (customer, total) VALUES ('live', 1)")
    wait_until(lambda: rows(target, "appdb", "SELECT 1 FROM orders WHERE customer = 'live'"), 30, "the live insert")
    assert rows(target, "appdb", "SELECT total FROM orders WHERE id = 1") == [(2,)]
    assert rows(target, "appdb", "SELECT 1 FROM orders WHERE id = 2") == []
    snap = freeze.capture(src, FreezeMode.READ_ONLY, "replication test", "f1")
    frozen = freeze.apply(src, snap, 1.0, Events())
    writer.stop()
    try:  # from the freeze's durable position, as the cutover window drains
        drained = drain.run(src, dst, done, time.monotonic() + 30, Events(), lambda: False, frozen["durable_lsn"])
        finished = drain.finish(src, dst, done, Events())
        assert sum(d["left_out_tables"] for d in finished["databases"]) >= 2
        acknowledged = {i for i, _ in writer.acknowledged}
        assert len(acknowledged) > 50
        assert acknowledged <= {r[0] for r in rows(target, "appdb", "SELECT id FROM orders")}
        for db in DATABASES:
            assert fidelity.differences({db: {"schema": [], "contents": fidelity.contents(source, db)}},
                                        {db: {"schema": [], "contents": fidelity.contents(target, db)}}) == [], db
        assert drained["lsn"]
        left = cleanup.run(src, dst, MIGRATION, done, Events())
        assert left["left"] == []
        assert set(cleanup.leftovers(src, dst).values()) == {0}
    finally:
        freeze.unfreeze(src, snap, Events())


def test_ddl_on_the_source_is_a_problem_until_the_target_has_it_too(source, target, passwords, tmp_path):  # type: ignore[no-untyped-def]
    """A column added on the source blocks the freeze, naming the table; made on the target too, the problem clears."""
    src, dst = endpoints(source, target, passwords)
    done = start(src, dst, toolset_for(source, target), tmp_path, ["appdb"])
    wait_in_sync(src, dst, done)
    execute(source, "appdb", "ALTER TABLE orders ADD COLUMN note text")
    current = status.read(src, dst, done, max_retained_wal_bytes=GIB)
    assert any("schema changed" in p and "public.orders" in p for p in current.problems), current.problems
    assert not current.in_sync(GIB)
    execute(target, "appdb", "ALTER TABLE orders ADD COLUMN note text")
    assert status.read(src, dst, done, max_retained_wal_bytes=GIB).problems == []
    cleanup.run(src, dst, MIGRATION, done, Events())
    assert set(cleanup.leftovers(src, dst).values()) == {0}


def test_a_conflicting_row_on_the_target_is_reported_until_removed(source, target, passwords, tmp_path):  # type: ignore[no-untyped-def]
    """A row inserted on the target first stops the apply worker: status says so; removing the row lets it catch up."""
    src, dst = endpoints(source, target, passwords)
    done = start(src, dst, toolset_for(source, target), tmp_path, ["appdb"])
    wait_in_sync(src, dst, done)
    execute(target, "appdb", "INSERT INTO orders (id, customer) VALUES (900001, 'target first')")
    execute(source, "appdb", "INSERT INTO orders (id, customer) VALUES (900001, 'source')")

    def reported() -> Any:
        current = status.read(src, dst, done, max_retained_wal_bytes=GIB)
        return current if current.problems else None

    current = wait_until(reported, 60, "the apply error in the status", every=0.5)
    assert "apply worker" in current.problems[0] and current.databases[0].apply_errors > 0, current.problems
    execute(target, "appdb", "DELETE FROM orders WHERE id = 900001")
    wait_until(lambda: rows(target, "appdb", "SELECT customer FROM orders WHERE id = 900001") == [("source",)], 60,
               "the source's row applied once the conflict is gone")
    cleanup.run(src, dst, MIGRATION, done, Events())
    assert set(cleanup.leftovers(src, dst).values()) == {0}


class Killed(Exception):
    """Stands in for a worker dying right after it recorded a name."""


def test_cleanup_after_a_setup_killed_halfway_on_a_frozen_source(source, target, passwords, tmp_path):  # type: ignore[no-untyped-def]
    """Setup dies with one database subscribed (its initial copy still running), a second with only a slot and a
    publication; cleanup without any record, on a frozen source, leaves nothing on either side and undoes FULL."""
    add_awkward_tables(source)
    src, dst = endpoints(source, target, passwords)
    records: list[SyncSetup] = []
    done = start(src, dst, toolset_for(source, target), tmp_path, ["pagila", "appdb"], full=True, records=records,
                 initial_copy="subscription")  # its table-sync workers hold slots of their own while they copy
    assert rows(source, "appdb", "SELECT relreplident FROM pg_class WHERE relname = 'notes'") == [("f",)]
    assert [t.name for t in done.identity_full] == ["notes"]
    half = done.database("appdb")
    assert half is not None
    # The appdb subscription never came: its slot and publication did (a CREATE SUBSCRIPTION that died).
    with psycopg.connect(target.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(half.subscription)))
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(sql.Identifier(half.subscription)))
        conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(sql.Identifier(half.subscription)))
    before = cleanup.leftovers(src, dst)
    assert before["source.slots"] >= 2 and before["source.publications"] == 2 and before["target.subscriptions"] == 1
    snap = freeze.capture(src, FreezeMode.READ_ONLY, "replication cleanup test", "f2")
    freeze.apply(src, snap, 1.0, Events())
    try:
        first = cleanup.run(src, dst, MIGRATION, None, Events())
        assert first["left"] == [] and first["slots"], first
        assert set(cleanup.leftovers(src, dst).values()) == {0}
        cleanup.run(src, dst, MIGRATION, records[-1], Events())  # the record, later: undoes FULL, finds nothing else
        assert rows(source, "appdb", "SELECT relreplident FROM pg_class WHERE relname = 'notes'") == [("d",)]
    finally:
        freeze.unfreeze(src, snap, Events())
    assert set(cleanup.leftovers(src, dst).values()) == {0}


def test_a_setup_killed_after_recording_is_finished_by_the_retry(source, target, passwords, tmp_path):  # type: ignore[no-untyped-def]
    """The retry drops the half-made target database it recorded, makes it again and replicates."""
    src, dst = endpoints(source, target, passwords)
    records: list[SyncSetup] = []

    def dies_after_the_fingerprint(s: SyncSetup) -> None:
        records.append(s.model_copy(deep=True))
        if s.schema_fingerprint:
            raise Killed()

    tools = toolset_for(source, target)
    with pytest.raises(Killed):
        setup.start(src, dst, ["appdb"], MIGRATION, replica_identity_full=False, toolset=tools, work_dir=str(tmp_path),
                    jobs=2, record=dies_after_the_fingerprint, progress=Events(), should_stop=lambda: False)
    assert rows(target, "postgres", "SELECT 1 FROM pg_database WHERE datname = 'appdb'") == [(1,)]
    done = start(src, dst, tools, tmp_path, ["appdb"], previous=records[-1])
    wait_in_sync(src, dst, done)
    execute(source, "appdb", "INSERT INTO orders (customer) VALUES ('after retry')")
    wait_until(lambda: rows(target, "appdb", "SELECT 1 FROM orders WHERE customer = 'after retry'"), 30, "the insert")
    cleanup.run(src, dst, MIGRATION, done, Events())
    assert set(cleanup.leftovers(src, dst).values()) == {0}


def test_the_drain_gives_up_at_its_deadline_naming_the_database(source, target, passwords, tmp_path):  # type: ignore[no-untyped-def]
    """With the subscription disabled the source's last writes are never confirmed: the drain fails at its deadline."""
    src, dst = endpoints(source, target, passwords)
    done = start(src, dst, toolset_for(source, target), tmp_path, ["appdb"])
    wait_in_sync(src, dst, done)
    entry = done.databases[0]
    with psycopg.connect(target.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(entry.subscription)))
    wait_until(lambda: not rows(target, "appdb", "SELECT 1 FROM pg_stat_subscription WHERE pid IS NOT NULL"), 30,
               "the apply worker to stop")
    execute(source, "appdb", "INSERT INTO orders (customer) VALUES ('never applied')")
    began = time.monotonic()
    with pytest.raises(Exception, match="appdb") as failed:
        drain.run(src, dst, done, time.monotonic() + 1.0, Events(), lambda: False)
    assert "ran out of time" in str(failed.value)
    assert time.monotonic() - began < 5
    behind = status.read(src, dst, done, max_retained_wal_bytes=GIB)
    assert any("disabled" in p for p in behind.problems)
    assert behind.databases[0].lag_bytes > 0 and behind.databases[0].retained_wal_bytes >= behind.databases[0].lag_bytes
    cleanup.run(src, dst, MIGRATION, done, Events())
    assert set(cleanup.leftovers(src, dst).values()) == {0}


def test_cleanup_with_the_source_down_drops_the_subscription_and_names_the_slot_left(source, target, passwords, tmp_path):  # type: ignore[no-untyped-def]
    """The subscription goes anyway (detached from its slot first); the report names the slot left on the source,
    and a later cleanup with the source back removes it."""
    src, dst = endpoints(source, target, passwords)
    done = start(src, dst, toolset_for(source, target), tmp_path, ["appdb"])
    wait_in_sync(src, dst, done)
    port = source.port
    source.stop()
    try:
        result = cleanup.run(src, dst, MIGRATION, done, Events())
        assert result["subscriptions"] == [done.databases[0].subscription]
        assert len(result["left"]) == 1 and done.databases[0].slot in result["left"][0], result["left"]
        assert "pg_drop_replication_slot" in result["left"][0]
    finally:
        source.start(port)
    assert cleanup.leftovers(src, dst)["target.subscriptions"] == 0
    assert cleanup.leftovers(src, dst)["source.slots"] == 1
    assert cleanup.run(src, dst, MIGRATION, done, Events())["left"] == []
    assert set(cleanup.leftovers(src, dst).values()) == {0}


def test_a_no_connect_freeze_leaves_replication_running_and_the_drain_passes(source, target, passwords, tmp_path):  # type: ignore[no-untyped-def]
    """The freeze ends client sessions and logins, not the subscription's WAL sender: the last write is drained."""
    src, dst = endpoints(source, target, passwords)
    done = start(src, dst, toolset_for(source, target), tmp_path, ["appdb"])
    wait_in_sync(src, dst, done)
    execute(source, "appdb", "INSERT INTO orders (customer) VALUES ('just before the freeze')")
    snap = freeze.capture(src, FreezeMode.NO_CONNECT, "replication test", "f3")
    freeze.apply(src, snap, 0.5, Events())
    try:
        assert rows(source, "postgres", "SELECT 1 FROM pg_stat_replication WHERE application_name = %s",
                    done.databases[0].subscription)
        drain.run(src, dst, done, time.monotonic() + 20, Events(), lambda: False)
        assert rows(target, "appdb", "SELECT 1 FROM orders WHERE customer = 'just before the freeze'")
        assert cleanup.run(src, dst, MIGRATION, done, Events())["left"] == []
    finally:
        freeze.unfreeze(src, snap, Events())
    assert set(cleanup.leftovers(src, dst).values()) == {0}
