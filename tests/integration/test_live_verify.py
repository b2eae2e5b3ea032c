"""Verification while in sync (steps/replication/liveverify.py) against real replication under real writes: what
keeps changing narrows to a few small ranges, a real difference is pinned to its key and named inside the window,
and a target that stops applying does not hang it."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgmove.sandbox.servers import PgCluster, wait_until
from pgmove.state.replication import LiveVerification
from pgmove.steps import checksum
from pgmove.steps.connect import connection
from pgmove.steps.replication import cleanup, liveverify, ranges
from tests.integration.freezeworld import Events
from tests.integration.test_replication_steps import (
    MIGRATION,
    endpoints,
    execute,
    start,
    toolset_for,
    wait_in_sync,
)

pytestmark = pytest.mark.slow
ACCOUNTS = 200_000  # rows add_tables puts in accounts
HAMMERED = 100_000  # the writer updates accounts up to this id; the tampered row lies beyond


def add_tables(source: PgCluster) -> None:
    """An integer key (ranges), a text key (hash buckets) and a keyless table replicated with REPLICA IDENTITY FULL."""
    execute(source, "appdb",
            "CREATE TABLE accounts (id bigint PRIMARY KEY, balance int NOT NULL, note text)",
            "INSERT INTO accounts SELECT g, 0, 'n' || g FROM generate_series(1, 200000) g",
            "CREATE TABLE labels (code text PRIMARY KEY, v int)",
            "INSERT INTO labels SELECT 'code-' || g, g FROM generate_series(1, 5000) g",
            "CREATE TABLE journal (body text, n int)",
            "INSERT INTO journal SELECT 'event ' || g, g FROM generate_series(1, 2000) g")


class Hammer(threading.Thread):
    """The app: random updates of the first HAMMERED accounts and of labels, as fast as one session commits."""

    def __init__(self, source: PgCluster) -> None:
        super().__init__(daemon=True)
        self.dsn, self.stopping, self.commits = source.admin_dsn("appdb"), threading.Event(), 0

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stopping.is_set():
                conn.execute("UPDATE accounts SET balance = balance + 1 WHERE id = %s", (random.randint(1, HAMMERED),))
                conn.execute("UPDATE labels SET v = v + 1 WHERE code = %s", (f"code-{random.randint(1, 2500)}",))
                self.commits += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


def synced(source: PgCluster, target: PgCluster, passwords: Any, tmp_path: Path) -> tuple[Any, Any, Any]:
    add_tables(source)
    src, dst = endpoints(source, target, passwords)
    done = start(src, dst, toolset_for(source, target), tmp_path, databases=["appdb"], full=True)
    wait_in_sync(src, dst, done)
    return src, dst, done


def caught_up(src: Any, dst: Any, done: Any) -> None:
    """Every database's subscription has applied all the source wrote so far (in sync allows some lag)."""
    wait_in_sync(src, dst, done)
    with connection(src) as s:
        position = str(s.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0])  # type: ignore[index]
    for entry in done.databases:
        with connection(dst, entry.database) as d:
            wait_until(lambda d=d, name=entry.subscription: d.execute(
                liveverify._APPLIED_PAST, {"lsn": position, "name": name}).fetchone()[0], 60,
                f"{entry.subscription} applied past {position}", every=0.1)


def verified(src: Any, dst: Any, done: Any, **options: Any) -> LiveVerification:
    return liveverify.run(src, dst, done, Events(), lambda: False, jobs=2, **options)


def test_ranges_under_steady_writes_narrow_to_the_rows_being_written_and_match_once_drained(source, target, passwords,  # type: ignore[no-untyped-def]
                                                                                          tmp_path):
    """With an app updating rows all the while, every published table is compared; whatever still differs at the
    last pass is a range of at most a few keys (the rows written that instant), and once the writes stop and the
    target caught up, those ranges match: a copy that is right is never reported different."""
    src, dst, done = synced(source, target, passwords, tmp_path)
    hammer = Hammer(source)
    hammer.start()
    try:
        time.sleep(0.5)
        live = verified(src, dst, done)
    finally:
        hammer.stop()
    try:
        assert hammer.commits > 100
        names = {(h.schema_name, h.name) for h in live.hot}
        assert live.tables >= 3 and live.rows >= ACCOUNTS, live
        assert all(h.high - h.low <= 16 for h in live.hot if h.low is not None and h.high is not None), live.hot
        assert ("public", "journal") not in names, live.hot  # nobody writes it: it matched at once
        caught_up(src, dst, done)
        problems, _ = ranges.recheck(src, dst, live.hot)
        assert problems == []
    finally:
        cleanup.run(src, dst, MIGRATION, done, Events())


@pytest.mark.parametrize("segment_pages", [None, 64], ids=["one snapshot per table", "one snapshot per 512 kB"])
def test_a_real_difference_is_pinned_to_its_key_and_named_inside_the_window(source, target, passwords, tmp_path,  # type: ignore[no-untyped-def]
                                                                            monkeypatch, segment_pages):
    """Rows changed on the target behind replication's back differ at every pass: the integer key narrows to the one
    row, the text key to a hash bucket; the window's recheck names each. The keyless table (REPLICA IDENTITY FULL)
    is not trusted from a pass while in sync at all: the window hashes it whole. The same when the first pass reads
    the source in many snapshots (as it does 128 MB at a time): rows the app moves between them are read again."""
    if segment_pages is not None:
        monkeypatch.setattr(checksum, "SEGMENT_PAGES", segment_pages)
    src, dst, done = synced(source, target, passwords, tmp_path)
    execute(target, "appdb", "UPDATE accounts SET note = 'tampered' WHERE id = 150000",
            "DELETE FROM labels WHERE code = 'code-4000'", "UPDATE journal SET body = 'tampered' WHERE n = 5")
    hammer = Hammer(source)
    hammer.start()
    try:
        live = verified(src, dst, done)
    finally:
        hammer.stop()
    try:
        hot = {(h.name, h.low, h.high) for h in live.hot if h.name == "accounts"}
        assert ("accounts", 150000, 150001) in hot, live.hot
        assert live.rows >= ACCOUNTS, live
        labels = [h for h in live.hot if h.name == "labels"]
        assert labels and all(h.modulus is not None and h.modulus > 64 for h in labels), labels
        assert ("appdb", "public", "journal") not in live.verified and ("appdb", "public", "accounts") in live.verified
        caught_up(src, dst, done)
        problems, _ = ranges.recheck(src, dst, live.hot)
        assert "appdb: public.accounts id in [150000, 150001): same row count, different content" in problems, problems
        assert any(p.startswith("appdb: public.labels key bucket") and "1 rows on the source, 0 on the target" in p
                   for p in problems), problems
        assert len(problems) == 2, problems
    finally:
        cleanup.run(src, dst, MIGRATION, done, Events())


def test_a_target_that_stops_applying_sends_every_table_whole_to_the_window_without_hanging(source, target,  # type: ignore[no-untyped-def]
                                                                                          passwords, tmp_path):
    """A disabled subscription never applies past a snapshot taken under writes: after one bounded wait every table
    is left to the window, whole, and the verification returns (it never reports a difference it could not see)."""
    src, dst, done = synced(source, target, passwords, tmp_path)
    execute(target, "appdb", f"ALTER SUBSCRIPTION {done.databases[0].subscription} DISABLE")
    hammer = Hammer(source)
    hammer.start()
    try:
        time.sleep(0.3)
        started = time.monotonic()
        live = verified(src, dst, done, apply_wait_seconds=2.0)
        took = time.monotonic() - started
    finally:
        hammer.stop()
    try:
        assert took < 30, took
        assert {h.name for h in live.hot} >= {"accounts", "labels"}, live.hot
        assert all(h.low is None and h.modulus is None for h in live.hot), live.hot
    finally:
        cleanup.run(src, dst, MIGRATION, done, Events())
