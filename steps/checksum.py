"""Content checksums that do not depend on physical row order, pinned to key ranges.

Each row hashes as hashtextextended(row::text, 0); sums are order-independent and additive, so a
large table can be read in ctid segments (TID range scans, PG 14+) in parallel whose partial sums
simply add up. The first pass sums whole tables (the floor of the work); only a table whose totals
differ gets a second pass grouped by chunk, to pin the difference: ranges of an integer primary key,
hash buckets of any other key, the whole table when there is none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from psycopg import sql

BUCKETS = 64  # for keys that are not a single integer column
CHUNK_ROWS = 100_000  # target rows per integer-key range
SEGMENT_PAGES = 16_384  # 128 MB of heap per ctid segment

INTEGER_TYPES = {"smallint", "integer", "bigint"}
ROW_HASH = sql.SQL("hashtextextended(t::text, 0)")  # a row of the table aliased t, as text under pinned settings


@dataclass(frozen=True)
class TablePlan:
    """How one table is chunked; computed on the source and applied identically on the target."""

    schema: str
    name: str
    key: list[str]  # primary key columns, [] when there is none
    key_type: str | None
    low: int | None = None  # integer keys: the first range starts here
    high: int | None = None
    width: int | None = None  # integer keys: values per range, set by sized()

    def sized(self, rows: int) -> TablePlan:
        """Ranges of about CHUNK_ROWS rows each, from a row count (exact after the first pass)."""
        if self.low is None or self.high is None:
            return self
        chunks = max(1, min(1000, rows // CHUNK_ROWS + 1))
        return replace(self, width=max(1, (self.high - self.low) // chunks + 1))

    @property
    def label(self) -> str:
        """schema.table as people read it; a name that needs quotes gets them, so no two tables read alike."""
        return f"{_shown(self.schema)}.{_shown(self.name)}"

    def chunk_expr(self) -> sql.Composable:
        if self.low is not None and self.width is not None:
            return sql.SQL("(({} - {}) / {})::bigint").format(sql.Identifier(self.key[0]), sql.Literal(self.low),
                                                                sql.Literal(self.width))
        if self.key:
            cols = sql.SQL(", ").join(sql.Identifier(c) for c in self.key)
            return sql.SQL("abs(hashtextextended(row({})::text, 0) % {})").format(cols, sql.Literal(BUCKETS))
        return sql.SQL("0")

    def describe_chunk(self, chunk: int) -> str:
        if self.low is not None and self.width is not None:
            start = self.low + chunk * self.width
            return f"{self.key[0]} in [{start}, {start + self.width})"
        if self.key:
            return f"keys ({', '.join(self.key)}) hashing to bucket {chunk} of {BUCKETS}"
        return "whole table (no primary key)"


def _shown(name: str) -> str:
    return name if _PLAIN_NAME.fullmatch(name) else '"' + name.replace('"', '""') + '"'


_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]*")


@dataclass
class TableSums:
    chunks: dict[int, tuple[int, int]] = field(default_factory=dict)  # chunk -> (rows, hash sum)

    def add(self, other: dict[int, tuple[int, int]]) -> None:
        for chunk, (rows, total) in other.items():
            old = self.chunks.get(chunk, (0, 0))
            self.chunks[chunk] = (old[0] + rows, old[1] + total)

    @property
    def rows(self) -> int:
        return sum(rows for rows, _ in self.chunks.values())


def plan_table(conn: psycopg.Connection[Any], schema: str, name: str) -> TablePlan:
    rel = sql.Identifier(schema, name)
    key = conn.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = %s::regclass AND i.indisprimary ORDER BY array_position(i.indkey, a.attnum)
        """,
        (rel.as_string(conn),),
    ).fetchall()
    columns = [k[0] for k in key]
    if len(key) == 1 and key[0][1] in INTEGER_TYPES:
        # From the key's index: cheap. How many rows, and so how wide a range, is known after the first pass.
        low, high = conn.execute(sql.SQL("SELECT min({c}), max({c}) FROM ONLY {t}").format(
            c=sql.Identifier(columns[0]), t=rel)).fetchone()  # type: ignore[misc]
        if low is not None:
            estimate = conn.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (rel.as_string(conn),)).fetchone()
            return TablePlan(schema, name, columns, key[0][1], int(low), int(high)).sized(int(estimate[0]) if estimate else 0)
    return TablePlan(schema, name, columns, key[0][1] if key else None)


def segments(conn: psycopg.Connection[Any], plan: TablePlan) -> list[tuple[int, int] | None]:
    """ctid page ranges covering the table (None: read it whole, for servers without TID range scans)."""
    if int(conn.info.server_version) < 140000:
        return [None]
    pages = conn.execute("SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int",
                         (sql.Identifier(plan.schema, plan.name).as_string(conn),)).fetchone()[0]  # type: ignore[index]
    if pages <= SEGMENT_PAGES:
        return [None]
    return [(start, start + SEGMENT_PAGES) for start in range(0, int(pages) + 1, SEGMENT_PAGES)]


def sums(conn: psycopg.Connection[Any], plan: TablePlan, segment: tuple[int, int] | None, sample: int = 1,
         by_chunk: bool = True) -> dict[int, tuple[int, int]]:
    """Rows and hash sum per chunk for one segment (or, by_chunk=False, for the whole segment as chunk 0:
    the cheapest pass, the floor of the work). sample > 1 hashes only every sample-th chunk (quick mode)."""
    chunk: sql.Composable = plan.chunk_expr() if by_chunk or sample > 1 else sql.SQL("0")
    row_hash: sql.Composable = ROW_HASH
    if sample > 1:
        row_hash = sql.SQL("CASE WHEN {c} % {s} = 0 THEN {h} ELSE 0 END").format(c=plan.chunk_expr(), s=sql.Literal(sample), h=row_hash)
    query = sql.SQL("SELECT {c} AS chunk, count(*), coalesce(sum({h}), 0) FROM ONLY {t} AS t{w} GROUP BY 1").format(
        c=chunk, h=row_hash, t=sql.Identifier(plan.schema, plan.name), w=within(segment))
    return {int(chunk): (int(rows), int(total)) for chunk, rows, total in conn.execute(query).fetchall()}


def within(segment: tuple[int, int] | None) -> sql.Composable:
    """The WHERE clause that reads one ctid segment of the table aliased t (nothing: the whole table)."""
    if segment is None:
        return sql.SQL("")
    return sql.SQL(" WHERE t.ctid >= {}::tid AND t.ctid < {}::tid").format(
        sql.Literal(f"({segment[0]},0)"), sql.Literal(f"({segment[1]},0)"))


def totals(parts: TableSums) -> tuple[int, int]:
    rows = sum(r for r, _ in parts.chunks.values())
    return rows, sum(h for _, h in parts.chunks.values())


def differences(plan: TablePlan, source: TableSums, target: TableSums) -> list[str]:
    """Each differing chunk, named by its key range and what differs (rows, or content)."""
    found = []
    for chunk in sorted(set(source.chunks) | set(target.chunks)):
        s_rows, s_sum = source.chunks.get(chunk, (0, 0))
        d_rows, d_sum = target.chunks.get(chunk, (0, 0))
        if (s_rows, s_sum) == (d_rows, d_sum):
            continue
        what = f"{s_rows} rows on the source, {d_rows} on the target" if s_rows != d_rows else "same row count, different content"
        found.append(f"{plan.label}: {plan.describe_chunk(chunk)}: {what}")
    return found


def merged(parts: list[dict[int, tuple[int, int]]]) -> TableSums:
    total = TableSums()
    for part in parts:
        total.add(part)
    return total
