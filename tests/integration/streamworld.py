"""A source replicating to a target while decoding with 64 kB of memory (logical_decoding_work_mem), so any
sizeable transaction is streamed to the subscriber while open (spilled to disk when the subscription does not
stream), and a freeze-then-drain that holds the target back and compares both sides afterwards."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgmove.sandbox.servers import PgCluster
from pgmove.state.models import FreezeMode
from pgmove.steps import freeze
from pgmove.steps.replication import drain
from tests.integration.freezeworld import Events, allow_prepared_transactions
from tests.integration.test_replication_steps import endpoints, rows, start, toolset_for, wait_in_sync
from tests.integration.writer import Writer

BATCH = 10000  # rows per statement of the big transaction: each is hundreds of kB of decoded changes
GRACE = 3.0
LAG_SECONDS = 2.0  # how long after the freeze the target's apply worker stays stopped
# pg_subscription.substream as text: a boolean up to PG 15, a "char" from PG 16 on
_STREAMING = {"false": "off", "f": "off", "true": "on", "t": "on", "p": "parallel"}
# (source and target fixtures, streaming set on the subscription by the test or None for pgmove's own, the mode
# expected). pgmove sets no streaming option, so a 15 target spills on the source and an 18 one streams; it applies
# in parallel only from a publisher of 16 or later (from a 15 one it spools to files, as "on" does).
MODES = [pytest.param("source", "target", None, "off", id="15-15-spilled"),
          pytest.param("source", "target", "on", "on", id="15-15-streamed"),
          pytest.param("source", "target18", None, "parallel", id="15-18-streamed"),
          pytest.param("source18", "target18", None, "parallel", id="18-18-parallel-apply")]

_LEADER_SINCE_17 = "SELECT pid FROM pg_stat_subscription WHERE subname = %s AND pid IS NOT NULL AND worker_type = 'apply'"
_LEADER_BEFORE_17 = "SELECT pid FROM pg_stat_subscription WHERE subname = %s AND pid IS NOT NULL AND relid IS NULL"


class World:
    """A source in sync with a target, decoding with 64 kB of memory, and an app committing asynchronously."""

    def __init__(self, request: pytest.FixtureRequest, source_name: str, target_name: str, streaming: str | None,
                 two_phase: bool = False):
        source: PgCluster = request.getfixturevalue(source_name)
        target: PgCluster = request.getfixturevalue(target_name)
        passwords, tmp_path = request.getfixturevalue("passwords"), request.getfixturevalue("tmp_path")
        self.source, self.target = source, target
        with psycopg.connect(source.admin_dsn(), autocommit=True) as conn:
            conn.execute("ALTER ROLE app SET synchronous_commit = off")
            conn.execute("ALTER SYSTEM SET logical_decoding_work_mem = '64kB'")
            conn.execute("SELECT pg_reload_conf()")
        if two_phase:
            allow_prepared_transactions(source)
        self.src, self.dst = endpoints(source, target, passwords)
        self.done = start(self.src, self.dst, toolset_for(source, target), tmp_path)
        self.entry = next(e for e in self.done.databases if e.database == "appdb")
        with psycopg.connect(target.admin_dsn("appdb"), autocommit=True) as conn:
            if streaming is not None:
                before = self.apply_leader()
                conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (streaming = {})").format(
                    sql.Identifier(self.entry.subscription), sql.Literal(streaming)))
                self.apply_leader(other_than=before)  # the worker restarts to take the new setting
            found = conn.execute("SELECT substream::text FROM pg_subscription WHERE subname = %s",
                                 (self.entry.subscription,)).fetchone()
        assert found is not None
        self.streaming = _STREAMING[found[0]]
        self.parallel = self.streaming == "parallel" and source.major >= 16
        wait_in_sync(self.src, self.dst, self.done)
        self.app_dsn, self.app_password = source.tcp_dsn("app", "appdb"), passwords.app

    def decoded(self) -> tuple[int, int]:
        """How many transactions the appdb slot's WAL sender streamed, and how many it spilled to disk."""
        found = rows(self.source, "appdb", "SELECT stream_txns, spill_txns FROM pg_stat_replication_slots "
                     "WHERE slot_name = %s", self.entry.slot)
        return (found[0][0], found[0][1]) if found else (0, 0)

    def wait_decoded(self) -> None:
        """The big transaction has gone past the 64 kB: streamed (or spilled) before the freeze begins, and from a
        16+ publisher taken by a parallel apply worker on the target."""
        deadline = time.monotonic() + 30
        while max(self.decoded()) == 0:
            assert time.monotonic() < deadline, "the WAL sender neither streamed nor spilled the big transaction"
            time.sleep(0.1)
        while self.parallel and not rows(self.target, "appdb", "SELECT 1 FROM pg_stat_subscription WHERE subname = %s "
                                         "AND worker_type = 'parallel apply'", self.entry.subscription):
            assert time.monotonic() < deadline, "no parallel apply worker took the streamed transaction"
            time.sleep(0.1)

    def apply_leader(self, other_than: int | None = None) -> int:
        """The pid of the subscription's apply worker on the target (not a parallel apply worker: those receive
        nothing), once one other than `other_than` runs."""
        query = _LEADER_SINCE_17 if self.target.major >= 17 else _LEADER_BEFORE_17
        deadline = time.monotonic() + 30
        while not (found := [r[0] for r in rows(self.target, "appdb", query, self.entry.subscription)
                             if r[0] != other_than]):
            assert time.monotonic() < deadline, "the subscription's apply worker is not running"
            time.sleep(0.1)
        assert len(found) == 1, found
        return int(found[0])

    def ids(self, cluster: PgCluster) -> set[int]:
        return {r[0] for r in rows(cluster, "appdb", "SELECT id FROM orders")}


def freeze_drain_and_check(world: World, writer: Writer, on_progress: Any) -> None:
    """Freeze with the target lagging, drain to the freeze's durable position while the app keeps trying, compare
    both sides. The lag: the target's apply worker is stopped (SIGSTOP) from just before the freeze until
    LAG_SECONDS after it, so whatever commits at the freeze is on the target only if the drain waited for it."""
    leader = world.apply_leader()
    snap = freeze.capture(world.src, FreezeMode.READ_ONLY, "streamed drain test", "f1")
    resume = threading.Timer(LAG_SECONDS, os.kill, (leader, signal.SIGCONT))
    try:
        os.kill(leader, signal.SIGSTOP)
        frozen = freeze.apply(world.src, snap, GRACE, on_progress)
        resume.start()
        at_freeze = world.ids(world.source)
        refused_before = len(writer.refused)
        drained = drain.run(world.src, world.dst, world.done, time.monotonic() + 60, Events(), lambda: False,
                            frozen["durable_lsn"])
        assert drained["seconds"] >= LAG_SECONDS / 2, drained  # it waited for the stopped apply worker
        on_target = world.ids(world.target)
        deadline = time.monotonic() + 10
        while len(writer.refused) <= refused_before and time.monotonic() < deadline:
            time.sleep(0.05)
        writer.stop()
        assert len(writer.refused) > refused_before, "the app's writes after the freeze were not refused"
        assert world.ids(world.source) == at_freeze, "the source took writes after the freeze"
        acknowledged = {i for i, _ in writer.acknowledged}
        assert acknowledged and acknowledged <= at_freeze
        assert on_target == at_freeze, (f"{len(at_freeze - on_target)} of the source's rows missing on the target, "
                                        f"{len(on_target - at_freeze)} there that the source does not have")
    finally:
        resume.cancel()
        os.kill(leader, signal.SIGCONT)
        freeze.unfreeze(world.src, snap, Events(), grace_seconds=0.5)
