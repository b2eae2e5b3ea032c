"""Table data, streamed from source to target with COPY: no file in between, memory bounded by one buffer.

Each table lands in one target transaction (TRUNCATE, then COPY ... FREEZE, then COMMIT), so a table
is either wholly there or not at all, and its rows arrive already frozen: no hint-bit rewrite, no
anti-wraparound vacuum of the whole copy later. A very large table is split into ctid ranges copied
concurrently; it then counts as done only when every range is.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.errors import StepFailed
from pgmove.steps import guards
from pgmove.steps.connect import Endpoint, describe
from pgmove.steps.tools import ToolSet, psql_path, spawn_tool

# Tables smaller than this stream through pgmove's own connections; bigger ones through psql, whose
# C loop reads COPY rows several times faster than a Python loop can.
IN_PROCESS_BYTES = 8 * 1024 * 1024
CHUNK = 1 << 20
BLOCK_SIZE = 8192  # PostgreSQL's default page size: ctid ranges are counted in pages
F_SETPIPE_SZ = 1031  # Linux: a 1 MB pipe lets the source run ahead while a chunk goes to the target

# Plain tables (partitions included: data goes to the leaves) and the data pg_dump would dump of
# tables that belong to an extension: only its configuration tables, filtered by their condition.
_TABLES = """
    SELECT c.oid, n.nspname, c.relname, pg_relation_size(c.oid), greatest(c.reltuples, 0)::bigint,
           array_agg(a.attname ORDER BY a.attnum) FILTER (WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''),
           coalesce(bool_and(
               (CASE WHEN et.typcategory = 'A' THEN ee.oid ELSE et.oid END) < 16384
               OR (CASE WHEN et.typcategory = 'A' THEN ee.typtype ELSE et.typtype END) = 'e'
           ) FILTER (WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''), true),
           (SELECT coalesce(e.extcondition[array_position(e.extconfig, c.oid)], '') FROM pg_extension e
             WHERE c.oid = ANY(e.extconfig)),
           EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                   AND d.deptype = 'e')
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid
    LEFT JOIN pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_type et ON et.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
    LEFT JOIN pg_type ee ON ee.oid = et.typelem
    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', %s)
      AND n.nspname !~ '^pg_(toast|temp)'
    GROUP BY c.oid, n.nspname, c.relname
"""


@dataclass(frozen=True)
class Table:
    oid: int
    schema: str
    name: str
    columns: tuple[str, ...]
    size_bytes: int
    rows_estimate: int
    builtin_types: bool  # every column's type is built in or an enum: safe in COPY's binary format
    condition: str | None  # an extension configuration table's filter ('' for all rows), as pg_dump applies it

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


@dataclass(frozen=True)
class Slice:
    """All of a table, or the pages [first_page, end_page) of it (end None: to the end)."""

    table: Table
    first_page: int | None = None
    end_page: int | None = None

    @property
    def whole(self) -> bool:
        return self.first_page is None

    @property
    def share(self) -> float:
        """The part of the table this slice covers, by pages (for estimates of rows and time)."""
        if self.whole:
            return 1.0
        pages = max(1, self.table.size_bytes // BLOCK_SIZE)
        end = self.end_page if self.end_page is not None else pages
        return max(0.0, (end - (self.first_page or 0)) / pages)

    @property
    def label(self) -> str:
        if self.whole:
            return self.table.label
        return f"{self.table.label} pages {self.first_page}-{'end' if self.end_page is None else self.end_page}"


def list_tables(conn: psycopg.Connection[Any]) -> list[Table]:
    tables = []
    for oid, schema, name, size, rows, columns, builtin, condition, in_extension in conn.execute(
            _TABLES, (guards.SCHEMA,)).fetchall():
        if in_extension and condition is None:
            continue  # an extension's own table, not one of its configuration tables: CREATE EXTENSION makes it
        filter_text = condition if in_extension else None
        tables.append(Table(oid, schema, name, tuple(columns or ()), int(size), int(rows), bool(builtin), filter_text))
    return tables


def split(table: Table, pieces: int) -> list[Slice]:
    """ctid ranges of about equal size; the last one open-ended so nothing past the estimate is missed."""
    pages = max(1, table.size_bytes // BLOCK_SIZE)
    if pieces <= 1 or table.condition is not None or pages < pieces:
        return [Slice(table)]
    bounds = [pages * i // pieces for i in range(pieces + 1)]
    return [Slice(table, bounds[i], bounds[i + 1] if i + 1 < pieces else None) for i in range(pieces)]


def _column_list(table: Table) -> sql.Composable:
    """Named columns (generated ones are computed by the target); nothing at all for a table without columns."""
    if not table.columns:
        return sql.SQL("")
    return sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, table.columns)))


def copy_out_sql(s: Slice, binary: bool) -> sql.Composed:
    columns = sql.SQL(", ").join(map(sql.Identifier, s.table.columns))
    fmt = sql.SQL(" (FORMAT binary)" if binary else "")
    if s.whole and s.table.condition is None:
        return sql.SQL("COPY {}{} TO STDOUT{}").format(s.table.ident, _column_list(s.table), fmt)
    if s.whole:
        source: sql.Composable = sql.SQL("SELECT {} FROM ONLY {} {}").format(columns, s.table.ident,
                                                                             sql.SQL(str(s.table.condition)))
    else:
        ranges = [sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({s.first_page},0)"))]
        if s.end_page is not None:
            ranges.append(sql.SQL("ctid < {}::tid").format(sql.Literal(f"({s.end_page},0)")))
        source = sql.SQL("SELECT {} FROM ONLY {} WHERE {}").format(columns, s.table.ident, sql.SQL(" AND ").join(ranges))
    return sql.SQL("COPY ({}) TO STDOUT{}").format(source, fmt)


def copy_in_sql(table: Table, binary: bool, freeze: bool) -> sql.Composed:
    options = [opt for opt, on in (("FORMAT binary", binary), ("FREEZE", freeze)) if on]
    suffix = sql.SQL(f" ({', '.join(options)})" if options else "")
    return sql.SQL("COPY {}{} FROM STDIN{}").format(table.ident, _column_list(table), suffix)


@dataclass
class Moved:
    rows: int = 0
    bytes: int = 0


def copy_slice(
    src: Endpoint, src_conn: psycopg.Connection[Any], dst_conn: psycopg.Connection[Any], database: str,
    s: Slice, binary: bool, exclusive: bool, toolset: ToolSet, moved: Moved, should_stop: Callable[[], bool],
) -> None:
    """Stream one slice into the target in one transaction, committed only if the source sent all of it.

    `exclusive`: this slice is the whole table, so the transaction empties it first and loads frozen rows.
    """
    out = copy_out_sql(s, binary)
    into = copy_in_sql(s.table, binary, freeze=exclusive)
    try:
        with dst_conn.transaction():
            if exclusive:
                dst_conn.execute(sql.SQL("TRUNCATE ONLY {}").format(s.table.ident))
            with dst_conn.cursor() as cur:
                with cur.copy(into) as target:
                    chunks = (psql_chunks(src, database, out, toolset, should_stop)
                              if s.table.size_bytes >= IN_PROCESS_BYTES else _connection_chunks(src_conn, out))
                    for chunk in chunks:
                        target.write(chunk)
                        moved.bytes += len(chunk)
                moved.rows = max(cur.rowcount, 0)
    except psycopg.Error as exc:
        raise StepFailed(f"copying {database}.{s.label} failed: {describe(exc)}") from None


def _connection_chunks(conn: psycopg.Connection[Any], statement: sql.Composed) -> Iterator[bytes]:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in copy:
            yield bytes(row)


def psql_chunks(src: Endpoint, database: str, statement: sql.Composed, toolset: ToolSet,
                should_stop: Callable[[], bool], before: Sequence[str] = ()) -> Iterator[bytes]:
    """COPY ... TO STDOUT read by psql (several times faster than through Python); `before` are commands run
    first in the same session (a transaction at an exported snapshot, say)."""
    text = statement.as_string(None)
    errors = tempfile.TemporaryFile()  # a file, not a pipe: psql can never block on its own messages
    first = [arg for command in before for arg in ("-c", command)]
    proc = spawn_tool([psql_path(toolset), "-X", "-q", "-v", "ON_ERROR_STOP=1", f"--dbname={src.conninfo(database)}",
                       *first, "-c", text], src.tool_env(dict(os.environ)), stdout=subprocess.PIPE, stderr=errors)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, CHUNK)
    except OSError:
        pass  # older kernels: the default pipe size only costs some speed
    try:
        while chunk := os.read(fd, CHUNK):
            yield chunk
            if should_stop():
                raise StepFailed("the copy was stopped because the migration moved on")
        code = proc.wait()
        if code != 0:
            errors.seek(0)
            error = errors.read().decode(errors="replace").strip()[-300:]
            raise StepFailed(f"reading {database} on {src.name} failed: {error}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        errors.close()
