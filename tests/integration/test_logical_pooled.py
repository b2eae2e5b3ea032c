"""The logical method's one-approval window through a real PgBouncer: the app waits in its pooler from before the
freeze to after the switch, so a probe committing every 10 ms sees no error and every write it was told of is on
the target; a client holding a transaction past the PAUSE timeout, or a worker killed while the pooler is paused,
gives the window up with the pooler resumed on the writable source."""

from __future__ import annotations

import time

import psycopg
import pytest
from psycopg import sql

from pgmove.sandbox.servers import wait_until
from tests.integration.test_logical_flow import do_json, sync_and_cut_over, zero_leftovers
from tests.integration.test_pooler import Probe
from tests.integration.test_pooler_cutover import LEASE_SECONDS
from tests.integration.test_worker import store_of

pytestmark = pytest.mark.slow


def test_a_probe_through_pgbouncer_sees_no_error_across_the_logical_window(pgmove_pooled, source, target, pgbouncer, passwords):  # type: ignore[no-untyped-def]
    """plan --method logical, sync, cutover with one approval: the probe's reads and inserts through transaction
    pooling never fail, each acknowledged insert is on the target, later ones land there, and nothing is left
    paused or replicating."""
    pgmove_pooled.start_worker()
    probe = Probe(pgbouncer.dsn("app", "appdb"), passwords.app)
    probe.start()
    try:
        wait_until(lambda: len(probe.acked) >= 20, 20, "the probe's first writes")
        final = sync_and_cut_over(pgmove_pooled, "20s")
        assert final["state"] == "cut_over", final.get("failure")
        seen = len(probe.acked)
        wait_until(lambda: len(probe.acked) >= seen + 20, 20, "the probe's writes after the switch")
    finally:
        probe.stop.set()
        probe.join()
    assert probe.errors == [], probe.errors[:3]
    with psycopg.connect(target.admin_dsn("appdb")) as conn:
        on_target = {r[0] for r in conn.execute("SELECT id FROM orders WHERE customer = 'probe'").fetchall()}
    assert {i for i, _ in probe.acked} <= on_target, "an acknowledged write is missing on the target"
    assert {port for _, port in probe.acked[:5]} == {source.port}
    assert {port for _, port in probe.acked[-5:]} == {target.port}
    assert pgbouncer.database("appdb")["paused"] == 0 and final["poolers_paused"] == []
    assert zero_leftovers(source, target, passwords) == {}
    switch = next(s for s in final["steps"] if s["name"] == "switch")
    paused = switch["result"]["poolers"]["app"]["paused_seconds"]
    p99 = sorted(probe.latencies)[int(len(probe.latencies) * 0.99)]
    print(f"logical window through pgbouncer: paused {paused:.3f}s, probe p99 {p99:.3f}s, max "
          f"{max(probe.latencies):.3f}s, {len(probe.acked)} writes, 0 errors")


def in_sync(pgmove) -> dict:  # type: ignore[no-untyped-def, type-arg]
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new --method logical")["state"] == "ready"
    synced = do_json(pgmove, "U_ALICE", "sync prod-old")
    assert synced["state"] == "in_sync", synced.get("failure")
    return synced  # type: ignore[no-any-return]


def source_read_only(source) -> str:  # type: ignore[no-untyped-def]
    with psycopg.connect(source.admin_dsn()) as conn:
        return str(conn.execute("SHOW default_transaction_read_only").fetchone()[0])  # type: ignore[index]


def test_a_client_holding_a_transaction_past_the_pause_timeout_gives_the_window_up_and_is_named(pgmove_pooled, source, target, pgbouncer, passwords):  # type: ignore[no-untyped-def]
    """Inside the logical window PAUSE waits 5 s for an open transaction through the pooler, then gives up: the
    pooler is resumed on the source, the source is not left frozen, the migration is in sync again, the probe saw
    no error, the held transaction still commits, and the thread names its role, application and address."""
    pgmove_pooled.start_worker()
    synced = in_sync(pgmove_pooled)
    probe = Probe(pgbouncer.dsn("app", "appdb"), passwords.app)
    probe.start()
    holder = psycopg.connect(pgbouncer.dsn("app", "appdb"), password=passwords.app, application_name="nightly-report",
                             prepare_threshold=None)
    try:
        wait_until(lambda: len(probe.acked) >= 20, 20, "the probe's first writes")
        holder.execute("INSERT INTO orders (customer, total) VALUES ('held', 1)")  # open, not committed
        assert do_json(pgmove_pooled, "U_ALICE", "cutover prod-old --window 30s", wait=False)["state"] == \
            "awaiting_cutover_approval"
        back = do_json(pgmove_pooled, "U_BOB", "approve prod-old")
        seen = len(probe.acked)
        wait_until(lambda: len(probe.acked) >= seen + 20, 20, "the probe's writes after the window")
        holder.commit()  # the held client is not ended: its transaction goes on
    finally:
        probe.stop.set()
        probe.join()
        holder.close()
    assert back["state"] == "in_sync", back.get("failure")
    switch = next(s for s in reversed(back["steps"]) if s["name"] == "switch")
    assert switch["status"] == "failed", switch
    events = " ".join(e.message for e in store_of(pgmove_pooled).events(synced["id"]))
    assert "within 5s" in events and "app (application 'nightly-report') from 127.0.0.1:" in events, events[-2000:]
    assert probe.errors == [], probe.errors[:3]
    row = pgbouncer.database("appdb")
    assert row["paused"] == 0 and row["port"] == source.port
    assert {port for _, port in probe.acked} == {source.port}
    assert source_read_only(source) == "off" and back["poolers_paused"] == [] and back["freeze"] is None
    with psycopg.connect(source.admin_dsn("appdb")) as conn:
        assert conn.execute("SELECT count(*) FROM orders WHERE customer = 'held'").fetchone() == (1,)
    assert do_json(pgmove_pooled, "U_ALICE", "abort prod-old")["state"] == "aborted"
    assert zero_leftovers(source, target, passwords) == {}


def test_a_worker_killed_while_the_window_holds_the_pooler_paused_leaves_it_resumed_within_the_lease(pgmove_pooled, source, target, pgbouncer, passwords):  # type: ignore[no-untyped-def]
    """SIGKILL while the logical window drains (subscriptions disabled) behind a paused pooler: it is RESUMEd on the
    source within lease_seconds + 5 s, the source takes writes through it again, and the migration is in sync."""
    doomed = pgmove_pooled.start_worker("doomed")
    synced = in_sync(pgmove_pooled)
    # Requested before the subscriptions go down: a monitor reading of them disabled refuses the request.
    assert do_json(pgmove_pooled, "U_ALICE", "cutover prod-old --window 60s", wait=False)["state"] == \
        "awaiting_cutover_approval"
    for d in synced["sync_setup"]["databases"]:
        with psycopg.connect(target.admin_dsn(d["database"]), autocommit=True) as conn:
            conn.execute("SET default_transaction_read_only = off")  # the archive database is read-only
            conn.execute("SET session_replication_role = replica")  # as replication does: past the target's guards
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(d["subscription"])))
    do_json(pgmove_pooled, "U_BOB", "approve prod-old", wait=False)
    store = store_of(pgmove_pooled)
    wait_until(lambda: any("frozen for the cutover window" in e.message for e in store.events(synced["id"])), 60,
               "the window's freeze, behind the paused pooler")
    assert pgbouncer.database("appdb")["paused"] == 1
    pgmove_pooled.kill_worker(doomed)
    killed = time.monotonic()
    pgmove_pooled.start_worker("next")
    wait_until(lambda: pgbouncer.database("appdb")["paused"] == 0, LEASE_SECONDS + 10, "the pooler resumed")
    took = time.monotonic() - killed
    assert took <= LEASE_SECONDS + 5, took
    assert pgbouncer.database("appdb")["port"] == source.port
    back = do_json(pgmove_pooled, "U_ALICE", "status prod-old")
    assert back["state"] == "in_sync", back.get("failure")
    assert source_read_only(source) == "off"
    with psycopg.connect(pgbouncer.dsn("app", "appdb"), password=passwords.app, autocommit=True,
                         prepare_threshold=None) as app:
        assert app.execute("INSERT INTO orders (customer, total) VALUES ('after', 1) RETURNING inet_server_port()"
                           ).fetchone() == (source.port,)
    wait_until(lambda: not store.get(synced["id"]).poolers_paused, 10, "the pause record cleared")  # type: ignore[union-attr]
    assert do_json(pgmove_pooled, "U_ALICE", "abort prod-old")["state"] == "aborted"
    assert zero_leftovers(source, target, passwords) == {}
    print(f"logical window: pooler resumed {took:.2f}s after the worker was killed (lease {LEASE_SECONDS}s)")
