"""Verification while in sync: the content check that costs (almost) nothing of the write downtime.

Per published table, by key range: the source's rows are hashed inside a REPEATABLE READ snapshot whose WAL
insert position L is read right after the snapshot was taken (every commit it sees lies before L); then, once
the target has applied the source's WAL past L, the target's rows of the same ranges are hashed. The target
may by then have applied later changes too, so a range that differs is read again, cut sixteen ways, until
its parts match or the rounds run out: under a steady load what is left is a handful of small ranges, the
rows being written right now. Those are `hot`: the window compares them again once the source is frozen and
the target drained, when both sides must agree exactly. A range that matched is not read again in the
window: its later changes are the drain's to carry, and the drain proves the target applied every one.

Rows hash exactly as the offline verification hashes them (checksum.ROW_HASH, under the pinned session
settings), so the two checks agree on what "the same row" means.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.replication import HotRange, LiveVerification, SyncSetup
from pgmove.steps import checksum
from pgmove.steps.connect import Endpoint, Progress, ThreadConnections, connection
from pgmove.steps.prehash import verification_session
from pgmove.steps.replication import published
from pgmove.steps.verify import TABLES

SPLIT = 16  # a range that differs is read again in this many parts
MAX_ROUNDS = 6  # 100,000-row ranges reach single rows in five splits
SCAN_ROUNDS = 3  # a key that is not an integer is picked by hash: every round reads the whole table
APPLY_WAIT_SECONDS = 30.0  # the target has not applied past a snapshot in this long: its ranges go to the window
POLL_SECONDS = 0.05
_BIGINT_MAX = 2**63 - 1

_APPLIED_PAST = """
    SELECT pg_replication_origin_progress('pg_' || s.oid, false) >= %(lsn)s::pg_lsn
           OR coalesce(w.latest_end_lsn >= %(lsn)s::pg_lsn, false)
    FROM pg_subscription s LEFT JOIN pg_stat_subscription w ON w.subid = s.oid AND w.relid IS NULL
    WHERE s.subname = %(name)s
"""

Unit = tuple[int, int]  # integer key: [low, high); other keys: (modulus, bucket); keyless: (0, 0), the whole table
Sums = dict[Unit, tuple[int, int]]  # unit -> (rows, hash sum)


@dataclass(frozen=True)
class Table:
    """One table as both sides hash it: the first pass's ranges are the source's, repeated on the target."""

    database: str
    schema: str
    name: str
    key: tuple[str, ...]
    integer: bool  # a single integer column: ranges of it, read through its index
    low: int = 0
    width: int = checksum.CHUNK_ROWS
    subscription: str = ""

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def hot(self, unit: Unit) -> HotRange:
        base = HotRange(database=self.database, schema_name=self.schema, name=self.name, key=list(self.key))
        if self.integer:
            return base.model_copy(update={"low": unit[0], "high": unit[1]})
        if self.key:
            return base.model_copy(update={"modulus": unit[0], "bucket": unit[1]})
        return base

    def whole(self) -> HotRange:
        return HotRange(database=self.database, schema_name=self.schema, name=self.name, key=list(self.key))


def run(src: Endpoint, dst: Endpoint, setup: SyncSetup, progress: Progress, should_stop: Callable[[], bool],
        jobs: int = 2, apply_wait_seconds: float = APPLY_WAIT_SECONDS) -> LiveVerification:
    started = time.monotonic()
    tables = published_tables(src, dst, setup)
    work = _Run(src, dst, should_stop, apply_wait_seconds)
    done: list[tuple[int, int, int, list[HotRange]]] = []  # per table: rows, ranges compared, rounds, hot
    last_report = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as executor:
            futures = [executor.submit(work.verify_table, table) for table in tables]
            for future in futures:
                done.append(future.result())
                if time.monotonic() - last_report >= 5:
                    last_report = time.monotonic()
                    progress(f"verifying while in sync: {len(done)}/{len(tables)} tables, "
                             f"{sum(len(d[3]) for d in done)} range(s) still changing", tick=True)
    finally:
        work.pool.close()
    return LiveVerification(tables=len(tables), verified=[(t.database, t.schema, t.name) for t in tables], rows=sum(d[0] for d in done), ranges=sum(d[1] for d in done),
                            rounds=max((d[2] for d in done), default=0), hot=[h for d in done for h in d[3]],
                            seconds=round(time.monotonic() - started, 2), finished_at=datetime.now(UTC))


def published_tables(src: Endpoint, dst: Endpoint, setup: SyncSetup) -> list[Table]:
    """Largest first, so the long tables start while the small ones fill the gaps; the tables replication does not
    carry exactly are compared inside the window, whole."""
    found: list[tuple[int, Table]] = []
    for entry in setup.databases:
        with connection(src, entry.database) as s, connection(dst, entry.database) as d:
            trusted = published.carried(s, d, entry)
            for schema, name, pages in s.execute(TABLES).fetchall():
                if (schema, name) not in trusted:
                    continue
                plan = checksum.plan_table(s, schema, name)
                integer = len(plan.key) == 1 and plan.key_type in checksum.INTEGER_TYPES
                table = Table(entry.database, schema, name, tuple(plan.key), integer,
                              plan.low if plan.low is not None else 0, plan.width or checksum.CHUNK_ROWS,
                              entry.subscription)
                found.append((int(pages), table))
    return [t for _, t in sorted(found, key=lambda p: -p[0])]


class _Run:
    """One live verification's sessions (one per thread, server and database) and what it learned on the way."""

    def __init__(self, src: Endpoint, dst: Endpoint, should_stop: Callable[[], bool], apply_wait_seconds: float) -> None:
        self.src, self.dst, self.should_stop, self.apply_wait_seconds = src, dst, should_stop, apply_wait_seconds
        self.pool = ThreadConnections(verification_session)
        self.stalled: set[str] = set()  # subscriptions that did not apply past a snapshot in time: not waited on again

    def verify_table(self, table: Table) -> tuple[int, int, int, list[HotRange]]:
        """(source rows at the first pass, ranges compared, rounds, what still differs)."""
        s, d = self.pool.get(self.src, table.database), self.pool.get(self.dst, table.database)
        try:
            left, right = self._compare(s, d, table, None)
            rows, compared, rounds = sum(r for r, _ in left.values()), len(set(left) | set(right)), 1
            differing = _differing(left, right)
            limit = MAX_ROUNDS if table.integer else SCAN_ROUNDS if table.key else 2
            while differing and rounds < limit and not self.should_stop():
                units = [part for unit in differing for part in _split(table, unit)]
                left, right = self._compare(s, d, table, units)
                compared, rounds = compared + len(units), rounds + 1
                differing = _differing(left, right, units)
            return rows, compared, rounds, [table.hot(u) for u in differing]
        except (psycopg.Error, TimeoutError):
            # Not verified here is not a difference: the window compares the whole table once the source is frozen.
            return 0, 0, 0, [table.whole()]

    def _compare(self, s: psycopg.Connection[Any], d: psycopg.Connection[Any], table: Table,
                 units: list[Unit] | None) -> tuple[Sums, Sums]:
        """The source's sums at one snapshot, then the target's once it has applied past that snapshot."""
        with s.transaction():
            s.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            # The snapshot is taken as this statement starts: every commit it sees was inserted before this position.
            position = str(s.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0])  # type: ignore[index]
            left = sums(s, table, units)
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
                self.stalled.add(subscription)
            time.sleep(POLL_SECONDS)
        raise TimeoutError(f"{subscription} has not applied past {position} in {self.apply_wait_seconds:g}s")


def sums(conn: psycopg.Connection[Any], table: Table, units: list[Unit] | None) -> Sums:
    """Rows and hash sum per unit: by 100,000-row key range (or hash bucket) on a first pass (units None)."""
    t, row_hash = table.ident, checksum.ROW_HASH
    if not table.key:
        query = sql.SQL("SELECT 0, 0, count(*), coalesce(sum({h}), 0) FROM ONLY {t} AS t").format(h=row_hash, t=t)
    elif table.integer and units is None:
        # Ranges are the multiples of the width: the range's number is the key's floor division by it, which never
        # leaves bigint (key minus a start would, for keys spanning it); the bounds are reckoned here, unbounded.
        key, width = sql.Identifier(table.key[0]), min(table.width, _BIGINT_MAX)
        chunk = sql.SQL("CASE WHEN {k} >= 0 THEN {k}::bigint / {w} ELSE -1 - (-1 - {k}::bigint) / {w} END").format(
            k=key, w=sql.Literal(width))
        query = sql.SQL("SELECT {c} AS c, 0, count(*), coalesce(sum({h}), 0) FROM ONLY {t} AS t GROUP BY 1").format(
            c=chunk, h=row_hash, t=t)
        return {(c * width, (c + 1) * width): (int(n), int(h)) for c, _, n, h in conn.execute(query).fetchall()}
    elif table.integer:
        assert units is not None
        # Inclusive upper bounds, so a range ending past the largest bigint is still one in bigint (and uses the index).
        bounds = [(n, max(lo, -_BIGINT_MAX - 1), min(hi - 1, _BIGINT_MAX)) for n, (lo, hi) in enumerate(units)]
        ranges = sql.SQL(", ").join(sql.SQL("({}::int, {}::bigint, {}::bigint)").format(*map(sql.Literal, b))
                                    for b in bounds if b[1] <= b[2])
        if not any(b[1] <= b[2] for b in bounds):
            return {}
        query = sql.SQL("SELECT r.n, 0, count(*), coalesce(sum({h}), 0) FROM (VALUES {ranges}) AS r(n, lo, hi) "
                        "JOIN ONLY {t} AS t ON t.{k} >= r.lo AND t.{k} <= r.hi GROUP BY 1").format(
            h=row_hash, ranges=ranges, t=t, k=sql.Identifier(table.key[0]))
        return {units[int(n)]: (int(rows), int(h)) for n, _, rows, h in conn.execute(query).fetchall()}
    else:
        modulus = units[0][0] if units else checksum.BUCKETS
        buckets = [b for _, b in units] if units else None
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.key)
        bucket = sql.SQL("abs(hashtextextended(row({})::text, 0) % {})").format(cols, sql.Literal(modulus))
        where = sql.SQL(" WHERE {} = ANY({})").format(bucket, sql.Literal(buckets)) if buckets else sql.SQL("")
        query = sql.SQL("SELECT {m}, {b}, count(*), coalesce(sum({h}), 0) FROM ONLY {t} AS t{w} GROUP BY 2").format(
            m=sql.Literal(modulus), b=bucket, h=row_hash, t=t, w=where)
    return {(int(a), int(b)): (int(n), int(h)) for a, b, n, h in conn.execute(query).fetchall()}


def _differing(left: Sums, right: Sums, asked: list[Unit] | None = None) -> list[Unit]:
    units = set(left) | set(right) | set(asked or [])
    return sorted(u for u in units if left.get(u, (0, 0)) != right.get(u, (0, 0)))


def _split(table: Table, unit: Unit) -> list[Unit]:
    if table.integer:
        low, high = unit
        step = max(1, -(-(high - low) // SPLIT))
        return [(start, min(high, start + step)) for start in range(low, high, step)]
    if table.key:
        modulus, bucket = unit
        return [(modulus * SPLIT, bucket + modulus * part) for part in range(SPLIT)]
    return [unit]


def recheck(src: Endpoint, dst: Endpoint, hot: list[HotRange], jobs: int = 2) -> tuple[list[str], int]:
    """Inside the window, the source frozen and the target drained: each range still changing at the last pass
    must now match exactly. Returns the differences, each naming its range, and the source rows compared."""
    grouped: dict[tuple[Table, int], list[Unit] | None] = {}
    for h in hot:
        if h.low is not None and h.high is not None:
            table, unit = Table(h.database, h.schema_name, h.name, tuple(h.key), True), (h.low, h.high)
        elif h.modulus is not None and h.bucket is not None:
            table, unit = Table(h.database, h.schema_name, h.name, tuple(h.key), False), (h.modulus, h.bucket)
        else:
            table, unit = Table(h.database, h.schema_name, h.name, (), False), (0, 0)
        units = grouped.setdefault((table, unit[0] if not table.integer else 0), [])
        assert units is not None
        units.append(unit)
    pool = ThreadConnections(verification_session)
    problems, rows = [], 0
    try:
        with ThreadPoolExecutor(max_workers=max(2, jobs)) as executor:
            pending = [(table, units, [executor.submit(_side_sums, pool, ep, table, units) for ep in (src, dst)])
                       for (table, _), units in grouped.items()]
            for table, units, (left, right) in pending:
                source, target = left.result(), right.result()
                rows += sum(n for n, _ in source.values())
                for unit in _differing(source, target, units):
                    (s_rows, _), (d_rows, _) = source.get(unit, (0, 0)), target.get(unit, (0, 0))
                    what = (f"{s_rows} rows on the source, {d_rows} on the target" if s_rows != d_rows
                            else "same row count, different content")
                    problems.append(f"{table.hot(unit).label if table.key else table.whole().label}: {what}")
    finally:
        pool.close()
    return problems, rows


def _side_sums(pool: ThreadConnections, ep: Endpoint, table: Table, units: list[Unit] | None) -> Sums:
    return sums(pool.get(ep, table.database), table, units if table.key else None)
