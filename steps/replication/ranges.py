"""Rows hashed by key range on both sides, the unit the verification while in sync and the window's recheck share.

An integer key is cut in ranges of it, read through its index; any other key in buckets of its hash (each
split sixteen ways by a modulus sixteen times larger); a table without a key is one unit, the whole table.
Rows hash exactly as the offline verification hashes them (checksum.ROW_HASH, under the pinned settings).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.replication import HotRange
from pgmove.steps import checksum
from pgmove.steps.connect import Endpoint, ThreadConnections
from pgmove.steps.prehash import verification_session

SPLIT = 16  # a range that differs is read again in this many parts
_BIGINT_MAX = 2**63 - 1

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


def sums(conn: psycopg.Connection[Any], table: Table, units: list[Unit] | None,
         segment: tuple[int, int] | None = None) -> Sums:
    """Rows and hash sum per unit: by 100,000-row key range (or hash bucket) on a first pass (units None), which
    may read one ctid `segment` of the table only (its sums add up with the other segments')."""
    t, row_hash = table.ident, checksum.ROW_HASH
    part = checksum.within(segment) if units is None else sql.SQL("")
    if not table.key:
        query = sql.SQL("SELECT 0, 0, count(*), coalesce(sum({h}), 0) FROM ONLY {t} AS t{p}").format(
            h=row_hash, t=t, p=part)
    elif table.integer and units is None:
        # Ranges are the multiples of the width: the range's number is the key's floor division by it, which never
        # leaves bigint (key minus a start would, for keys spanning it); the bounds are reckoned here, unbounded.
        key, width = sql.Identifier(table.key[0]), min(table.width, _BIGINT_MAX)
        chunk = sql.SQL("CASE WHEN {k} >= 0 THEN {k}::bigint / {w} ELSE -1 - (-1 - {k}::bigint) / {w} END").format(
            k=key, w=sql.Literal(width))
        query = sql.SQL("SELECT {c} AS c, 0, count(*), coalesce(sum({h}), 0) FROM ONLY {t} AS t{p} GROUP BY 1").format(
            c=chunk, h=row_hash, t=t, p=part)
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
        where = sql.SQL(" WHERE {} = ANY({})").format(bucket, sql.Literal(buckets)) if buckets else part
        query = sql.SQL("SELECT {m}, {b}, count(*), coalesce(sum({h}), 0) FROM ONLY {t} AS t{w} GROUP BY 2").format(
            m=sql.Literal(modulus), b=bucket, h=row_hash, t=t, w=where)
    return {(int(a), int(b)): (int(n), int(h)) for a, b, n, h in conn.execute(query).fetchall()}


def differing(left: Sums, right: Sums, asked: list[Unit] | None = None) -> list[Unit]:
    units = set(left) | set(right) | set(asked or [])
    return sorted(u for u in units if left.get(u, (0, 0)) != right.get(u, (0, 0)))


def split(table: Table, unit: Unit) -> list[Unit]:
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
                for unit in differing(source, target, units):
                    (s_rows, _), (d_rows, _) = source.get(unit, (0, 0)), target.get(unit, (0, 0))
                    what = (f"{s_rows} rows on the source, {d_rows} on the target" if s_rows != d_rows
                            else "same row count, different content")
                    problems.append(f"{table.hot(unit).label if table.key else table.whole().label}: {what}")
    finally:
        pool.close()
    return problems, rows


def _side_sums(pool: ThreadConnections, ep: Endpoint, table: Table, units: list[Unit] | None) -> Sums:
    return sums(pool.get(ep, table.database), table, units if table.key else None)
