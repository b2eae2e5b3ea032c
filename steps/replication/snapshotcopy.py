"""The initial copy done by pgmove instead of the subscription: every published table copied at the snapshot the
slot exported when it was created, so the subscription (copy_data = false) starts exactly where the copy ends.

The slot's replication session must stay open until every copy has taken the snapshot; tables go largest
first across `jobs` threads, each in one target transaction (empty, then COPY ... FREEZE). The target's
indexes and keys are built after the data, as the offline copy does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.errors import ConnectionFailed, StepFailed
from pgmove.steps import tables
from pgmove.steps.connect import APPLICATION_NAME, OWN_SESSION_OPTIONS, Endpoint, connect, describe
from pgmove.steps.tools import ToolSet


def create_slot(src: Endpoint, database: str, slot: str) -> tuple[psycopg.Connection[Any], str]:
    """A pgoutput slot and the name of its exported snapshot, valid while the returned session stays open."""
    try:
        conn = psycopg.connect(src.dsn, dbname=database, password=src.password, replication="database",
                               application_name=APPLICATION_NAME, options=OWN_SESSION_OPTIONS, autocommit=True,
                               connect_timeout=10)
    except psycopg.Error as exc:
        raise ConnectionFailed(f"Cannot open a replication session on {src.name} database {database}: {describe(exc)}",
                               server=src.name) from None
    row = conn.execute(sql.SQL("CREATE_REPLICATION_SLOT {} LOGICAL pgoutput EXPORT_SNAPSHOT").format(
        sql.Identifier(slot))).fetchone()
    assert row is not None
    return conn, str(row[2])


def copy_tables(src: Endpoint, dst: Endpoint, database: str, wanted: list[tuple[str, str]], snapshot: str, jobs: int,
                toolset: ToolSet, same_major: bool, should_stop: Callable[[], bool]) -> dict[str, int]:
    with connect(src, database) as conn:
        listed = {(t.schema, t.name): t for t in tables.list_tables(conn)}
    todo = sorted((listed[w] for w in wanted if w in listed), key=lambda t: -t.size_bytes)
    moved = {"tables": 0, "rows": 0, "bytes": 0}
    lock = threading.Lock()

    def one(table: tables.Table) -> None:
        if should_stop():
            raise StepFailed("the initial copy was stopped: the migration moved on")
        binary = same_major and table.builtin_types
        with connect(src, database) as s, connect(dst, database) as d:
            s.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            s.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            chunks = (_psql_chunks(src, database, snapshot, tables.copy_out_sql(tables.Slice(table), binary), toolset)
                      if table.size_bytes >= tables.IN_PROCESS_BYTES else _chunks(s, table, binary))
            try:
                with d.transaction(), d.cursor() as cur:
                    cur.execute(sql.SQL("TRUNCATE ONLY {}").format(table.ident))
                    with cur.copy(tables.copy_in_sql(table, binary, freeze=True)) as into:
                        size = 0
                        for chunk in chunks:
                            into.write(chunk)
                            size += len(chunk)
                    rows = max(cur.rowcount, 0)
            except psycopg.Error as exc:
                raise StepFailed(f"copying {database}.{table.label} failed: {describe(exc)}") from None
        with lock:
            moved["tables"] += 1
            moved["rows"] += rows
            moved["bytes"] += size

    pool = ThreadPoolExecutor(max(1, jobs))
    try:
        for future in [pool.submit(one, t) for t in todo]:
            future.result()
    finally:
        pool.shutdown(cancel_futures=True)  # one table failed: the others not yet started never start
    return moved


def _chunks(conn: psycopg.Connection[Any], table: tables.Table, binary: bool) -> Iterator[bytes]:
    with conn.cursor() as cur, cur.copy(tables.copy_out_sql(tables.Slice(table), binary)) as out:
        yield from (bytes(chunk) for chunk in out)


def _psql_chunks(src: Endpoint, database: str, snapshot: str, statement: sql.Composed,
                 toolset: ToolSet) -> Iterator[bytes]:
    """The table as it was at the slot's exported snapshot, read by psql."""
    at_snapshot = ["BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                   sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)).as_string(None)]
    return tables.psql_chunks(src, database, statement, toolset, lambda: False, at_snapshot)
