"""The offline cutover through a real PgBouncer, driven by the real CLI and workers: the plan states the pooler, the
app's reads see no error across the switch and its writes then land on the target, and a worker killed while the
pooler is paused leaves it resumed on the source within lease_seconds + 5 s."""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from pgmove.sandbox.servers import wait_until
from pgmove.state.store import Store
from tests.integration.helpers import snapshot
from tests.integration.test_pooler import Probe
from tests.integration.test_source_after_verification import _cut_over, _verified

pytestmark = pytest.mark.slow
LEASE_SECONDS = 3  # tests/fixtures/services.py write_config


class Reader(Probe):
    """The app's reads through the pooler while the source is frozen (its writes fail loudly there, by design)."""

    def run(self) -> None:
        with psycopg.connect(self.dsn, password=self.password, autocommit=True, prepare_threshold=None) as conn:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    row = conn.execute("SELECT count(*), inet_server_port() FROM orders").fetchone()
                    assert row is not None
                    self.acked.append((int(row[0]), int(row[1])))
                except psycopg.Error as exc:
                    self.errors.append(str(exc).strip())
                self.latencies.append(time.monotonic() - started)
                time.sleep(0.01)


def test_the_offline_cutover_switches_the_app_through_pgbouncer_without_a_read_error(pgmove_pooled, source, target, pgbouncer, passwords):  # type: ignore[no-untyped-def]
    """Plan states the pooler's version, pool mode and mapping; across the approved cutover a reader through the
    pooler every 10 ms gets no error; afterwards the pooler sends the app to the target, where its writes land,
    the cutover's result gives the measured pause and the timeline, and no password is anywhere."""
    verified = _verified(pgmove_pooled)
    assert any("pooler app: PgBouncer 1.18" in f and "transaction pooling" in f
               for f in verified["preflight"]["poolers"]), verified["preflight"]
    reader = Reader(pgbouncer.dsn("app", "appdb"), passwords.app)
    reader.start()
    wait_until(lambda: len(reader.acked) >= 20, 20, "the reader's first reads")
    done = _cut_over(pgmove_pooled)
    seen = len(reader.acked)
    wait_until(lambda: len(reader.acked) >= seen + 20, 20, "reads after the cutover")
    reader.stop.set()
    reader.join()
    assert done["state"] == "cut_over", done.get("failure")
    assert reader.errors == [], reader.errors[:3]
    assert {port for _, port in reader.acked[:5]} == {source.port}
    assert {port for _, port in reader.acked[-5:]} == {target.port}
    row = pgbouncer.database("appdb")
    assert row["paused"] == 0 and row["port"] == target.port
    with psycopg.connect(pgbouncer.dsn("app", "appdb"), password=passwords.app, autocommit=True,
                         prepare_threshold=None) as app:
        new_id = app.execute("INSERT INTO orders (customer, total) VALUES ('after', 1) RETURNING id").fetchone()[0]  # type: ignore[index]
    with psycopg.connect(target.admin_dsn("appdb")) as conn:
        assert conn.execute("SELECT customer FROM orders WHERE id = %s", (new_id,)).fetchone() == ("after",)
    cutover = next(s for s in reversed(done["steps"]) if s["name"] == "cutover")
    line = cutover["result"]["poolers"]["app"]
    assert 0 < line["paused_seconds"] < 60 and line["paused_at"] < line["repointed_at"] < line["resumed_at"]
    assert done["poolers_paused"] == []
    events = " ".join(e.message for e in Store.from_url(_redis_url(pgmove_pooled)).events(done["id"]))
    assert "pooler app paused at" in events and "pooler app resumed on the target" in events
    everything = (repr(snapshot(_redis_url(pgmove_pooled))) + pgmove_pooled.worker_logs()
                  + "".join(pgmove_pooled.outputs))
    for secret in (pgbouncer.admin_password, *passwords.all()):
        assert secret not in everything  # not in Redis, the worker's log or the command line's output
    p99 = sorted(reader.latencies)[int(len(reader.latencies) * 0.99)]
    print(f"pooled cutover: paused {line['paused_seconds']:.3f}s, reader p99 {p99:.3f}s, 0 errors")


def test_a_worker_killed_while_the_pooler_is_paused_leaves_it_resumed_on_the_source_within_the_lease(pgmove_pooled, source, pgbouncer, tmp_path):  # type: ignore[no-untyped-def]
    """SIGKILL while the hook runs inside the pause: another worker's reaper RESUMEs the pooler, still pointing at
    the source, within lease_seconds + 5 s, and the migration says the cutover failed."""
    marker = tmp_path / "hook-started"
    (tmp_path / "switch-app").write_text(f"#!/bin/sh\ntouch {marker}\nsleep 60\n")
    _verified(pgmove_pooled)
    doomed = pgmove_pooled.workers[0]
    assert pgmove_pooled.do("U_ALICE", "cutover prod-old").returncode == 0
    assert pgmove_pooled.do("U_BOB", "approve prod-old").returncode == 0
    wait_until(marker.exists, 60, "the hook, inside the pause")
    assert pgbouncer.database("appdb")["paused"] == 1
    pgmove_pooled.kill_worker(doomed)
    killed = time.monotonic()
    pgmove_pooled.start_worker("next")
    wait_until(lambda: pgbouncer.database("appdb")["paused"] == 0, LEASE_SECONDS + 10, "the pooler resumed")
    took = time.monotonic() - killed
    assert took <= LEASE_SECONDS + 5, took
    assert pgbouncer.database("appdb")["port"] == source.port
    failed = json.loads(pgmove_pooled.do("U_ALICE", "status prod-old", "--wait", "--json").stdout)
    assert failed["state"] == "failed" and failed["failure"]["step"] == "cutover", failed.get("failure")
    wait_until(lambda: not _migration(pgmove_pooled, failed["id"])["poolers_paused"], 10, "the record cleared")
    print(f"pooler resumed {took:.2f}s after the worker was killed (lease {LEASE_SECONDS}s)")


def _redis_url(pgmove) -> str:  # type: ignore[no-untyped-def]
    from tests.integration.test_worker import _url

    return _url(pgmove)  # type: ignore[no-any-return]


def _migration(pgmove, migration_id: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    m = Store.from_url(_redis_url(pgmove)).get(migration_id)
    assert m is not None
    return m.model_dump(mode="json")


def test_a_client_holding_a_transaction_makes_the_cutover_give_up_and_the_thread_names_it(pgmove_pooled, source, pgbouncer, passwords):  # type: ignore[no-untyped-def]
    """An open transaction through the pooler outlasts the PAUSE timeout: the cutover fails before anything of the
    switch happened (no cut-over mark, no hook), the pooler is resumed on the source, and the failure the channel
    reads names the client's role, application and address."""
    _verified(pgmove_pooled)
    holder = psycopg.connect(pgbouncer.dsn("app", "appdb"), password=passwords.app, application_name="nightly-report")
    holder.execute("SELECT count(*) FROM orders")  # an open transaction, never committed
    failed = _cut_over(pgmove_pooled)
    holder.rollback()
    holder.close()
    assert failed["state"] == "failed" and failed["failure"]["step"] == "cutover", failed.get("failure")
    reason = failed["failure"]["reason"]
    assert "within 5s" in reason and "app (application 'nightly-report') from 127.0.0.1:" in reason, reason
    assert not pgmove_pooled.hook_output.exists(), "the cutover hook ran"
    assert failed["hook"] is None and failed["poolers_paused"] == []
    row = pgbouncer.database("appdb")
    assert row["paused"] == 0 and row["port"] == source.port
    with psycopg.connect(source.admin_dsn("appdb")) as conn:
        record = conn.execute("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace "
                              "WHERE nspname = '_pgmove_freeze'").fetchone()
    assert record is not None and json.loads(record[0]).get("cut_over") is None  # the retry may still unfreeze
