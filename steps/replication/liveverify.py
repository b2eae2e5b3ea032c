"""Verification while in sync: the content check that costs (almost) nothing of the write downtime.

Per published table, by key range: the source's rows are hashed inside a REPEATABLE READ snapshot whose WAL
insert position L is read right after the snapshot was taken (every commit it sees lies before L); then, once
the target has applied the source's WAL past L, the target's rows of the same ranges are hashed. The target
may by then have applied later changes too, so a range that differs is read again, cut sixteen ways, until
its parts match or the rounds run out: under a steady load what is left is a handful of small ranges, the
rows being written right now. Those are `hot`: the window compares them again once the source is frozen and
the target drained, when both sides must agree exactly. A range that matched is not read again in the
window: its later changes are the drain's to carry, and the drain proves the target applied every one (the
target takes no other writes meanwhile: steps/replication/targetguard.py). That holds only for a table
replication carries exactly (published.carried): only those are verified here, and the window hashes every
other table whole.

Ranges, their sums and the window's recheck of them: ranges.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.replication import HotRange, LiveVerification, SyncSetup
from pgmove.steps import checksum
from pgmove.steps.connect import Endpoint, Progress, ThreadConnections, connection
from pgmove.steps.prehash import verification_session
from pgmove.steps.replication import published, ranges
from pgmove.steps.replication.ranges import Sums, Table, Unit, sums
from pgmove.steps.verify import TABLES

_SIZES = sql.SQL("SELECT nspname, relname, pg_relation_size((quote_ident(nspname) || '.' || quote_ident(relname))::regclass) "
                 "FROM ({}) t").format(TABLES)

MAX_HOT_RANGES = 1000  # per table
MAX_ROUNDS = 6  # 100,000-row ranges reach single rows in five splits
SCAN_ROUNDS = 3  # a key that is not an integer is picked by hash: every round reads the whole table
APPLY_WAIT_SECONDS = 30.0  # the target has not applied past a snapshot in this long: its ranges go to the window
POLL_SECONDS = 0.05

# PG 16+ lists a subscription's parallel apply workers too (relid NULL, latest_end_lsn NULL): the furthest counts.
_APPLIED_PAST = """
    SELECT pg_replication_origin_progress('pg_' || s.oid, false) >= %(lsn)s::pg_lsn
           OR coalesce(max(w.latest_end_lsn) >= %(lsn)s::pg_lsn, false)
    FROM pg_subscription s LEFT JOIN pg_stat_subscription w ON w.subid = s.oid AND w.relid IS NULL
    WHERE s.subname = %(name)s GROUP BY s.oid
"""


def run(src: Endpoint, dst: Endpoint, setup: SyncSetup, progress: Progress, should_stop: Callable[[], bool],
        jobs: int = 2, apply_wait_seconds: float = APPLY_WAIT_SECONDS) -> LiveVerification:
    started = time.monotonic()
    tables, size, size_whole = published_tables(src, dst, setup)
    work = _Run(src, dst, should_stop, apply_wait_seconds)
    done: dict[Table, tuple[int, int, int, list[HotRange]]] = {}  # per table: rows, ranges compared, rounds, hot
    last_report = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as executor:
            todo = tables
            while todo:
                for table, future in [(t, executor.submit(work.verify_table, t)) for t in todo]:
                    done[table] = future.result()
                    if time.monotonic() - last_report >= 5:
                        last_report = time.monotonic()
                        progress(f"verifying while in sync: {len(done)}/{len(tables)} tables, "
                                 f"{sum(len(d[3]) for d in done.values())} range(s) still changing", tick=True)
                todo = work.caught_up()  # a target held up for a while: what it held up is verified once more
    finally:
        work.pool.close()
    return LiveVerification(tables=len(tables), verified=[(t.database, t.schema, t.name) for t in tables],
                            rows=sum(d[0] for d in done.values()), ranges=sum(d[1] for d in done.values()),
                            rounds=max((d[2] for d in done.values()), default=0), hot=[h for d in done.values() for h in d[3]],
                            seconds=round(time.monotonic() - started, 2), finished_at=datetime.now(UTC),
                            bytes=size, bytes_whole=size_whole)


def published_tables(src: Endpoint, dst: Endpoint, setup: SyncSetup) -> tuple[list[Table], int, int]:
    """Largest first, so the long tables start while the small ones fill the gaps; the tables replication does not
    carry exactly are compared inside the window, whole. With the bytes of heap of each kind (read from the files:
    relpages is only as fresh as the last VACUUM, and 0 on a table never vacuumed)."""
    found: list[tuple[int, Table]] = []
    whole = 0
    for entry in setup.databases:
        with connection(src, entry.database) as s, connection(dst, entry.database) as d:
            trusted = published.carried(s, d, entry)
            for schema, name, size in s.execute(_SIZES).fetchall():
                if (schema, name) not in trusted:
                    whole += int(size)
                    continue
                plan = checksum.plan_table(s, schema, name)
                integer = len(plan.key) == 1 and plan.key_type in checksum.INTEGER_TYPES
                table = Table(entry.database, schema, name, tuple(plan.key), integer,
                              plan.low if plan.low is not None else 0, plan.width or checksum.CHUNK_ROWS,
                              entry.subscription)
                found.append((int(size), table))
    return [t for _, t in sorted(found, key=lambda p: -p[0])], sum(size for size, _ in found), whole


class _Run:
    """One live verification's sessions (one per thread, server and database) and what it learned on the way."""

    def __init__(self, src: Endpoint, dst: Endpoint, should_stop: Callable[[], bool], apply_wait_seconds: float) -> None:
        self.src, self.dst, self.should_stop, self.apply_wait_seconds = src, dst, should_stop, apply_wait_seconds
        self.pool = ThreadConnections(verification_session)
        # subscription -> the position it did not apply past in time: not waited on again until it has
        self.stalled: dict[str, str] = {}
        self.held_up: list[Table] = []  # tables left whole because their subscription stalled: verified again
        self.retried = False

    def verify_table(self, table: Table) -> tuple[int, int, int, list[HotRange]]:
        """(source rows at the first pass, ranges compared, rounds, what still differs)."""
        s, d = self.pool.get(self.src, table.database), self.pool.get(self.dst, table.database)
        try:
            left, right = self._compare(s, d, table, None)
            rows, compared, rounds = sum(r for r, _ in left.values()), len(set(left) | set(right)), 1
            differing = ranges.differing(left, right)
            limit = MAX_ROUNDS if table.integer else SCAN_ROUNDS if table.key else 2
            while differing and rounds < limit and not self.should_stop():
                units = [part for unit in differing for part in ranges.split(table, unit)]
                left, right = self._compare(s, d, table, units)
                compared, rounds = compared + len(units), rounds + 1
                differing = ranges.differing(left, right, units)
            if len(differing) > MAX_HOT_RANGES:  # recorded with the migration and sent as one list: the table instead
                return rows, compared, rounds, [table.whole()]
            return rows, compared, rounds, [table.hot(u) for u in differing]
        except (psycopg.Error, TimeoutError) as exc:
            # Not verified here is not a difference: the window compares the whole table once the source is frozen.
            if isinstance(exc, TimeoutError):
                self.held_up.append(table)
            return 0, 0, 0, [table.whole()]

    def caught_up(self) -> list[Table]:
        """Once, after the first pass: the tables a stalled subscription held up, if it has applied past where it
        stalled within one more wait (a lock, a burst of writes), so they are verified again; a disabled one costs
        that one wait. Nothing (the verification is over) otherwise."""
        if self.retried or not self.held_up or self.should_stop():
            return []
        self.retried, again = True, []
        for subscription, position in list(self.stalled.items()):
            tables = [t for t in self.held_up if t.subscription == subscription]
            del self.stalled[subscription]
            if not tables:
                continue
            try:
                self._wait_applied(self.pool.get(self.dst, tables[0].database), subscription, position)
            except (psycopg.Error, TimeoutError):
                continue
            again += tables
        return again

    def _compare(self, s: psycopg.Connection[Any], d: psycopg.Connection[Any], table: Table,
                 units: list[Unit] | None) -> tuple[Sums, Sums]:
        """The source's sums at one snapshot, then the target's once it has applied past that snapshot. A first
        pass reads the source 128 MB of heap per snapshot: one snapshot held for a whole large table would hold back
        vacuum on the live source for as long. A row an update moved between two of them is read twice or not at
        all: a difference, so its range is read again, in one snapshot."""
        pieces = checksum.segments(s, checksum.TablePlan(table.schema, table.name, list(table.key), None)) \
            if units is None else [None]
        left: Sums = {}
        for piece in pieces:
            with s.transaction():
                s.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                # The snapshot is taken as this statement starts: every commit it sees was inserted before this position.
                position = str(s.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0])  # type: ignore[index]
                for unit, (rows, total) in sums(s, table, units, piece).items():
                    before = left.get(unit, (0, 0))
                    left[unit] = (before[0] + rows, before[1] + total)
        self._wait_applied(d, table.subscription, position)
        return left, sums(d, table, units)

    def _wait_applied(self, d: psycopg.Connection[Any], subscription: str, position: str) -> None:
        """Transactions are applied in commit order: once the origin has passed the position (or, on a quiet
        database, the WAL sender's keepalive has), every commit before it is visible on the target."""
        deadline = time.monotonic() + self.apply_wait_seconds
        while subscription not in self.stalled:
            row = d.execute(_APPLIED_PAST, {"lsn": position, "name": subscription}).fetchone()
            if row is not None and row[0]:
                return
            if time.monotonic() >= deadline or self.should_stop():
                self.stalled.setdefault(subscription, position)
            time.sleep(POLL_SECONDS)
        raise TimeoutError(f"{subscription} has not applied past {position} in {self.apply_wait_seconds:g}s")
