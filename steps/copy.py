"""The offline copy of the whole server: roles, then every database at once through one pool of jobs.

Per database: its definition, then pre-data (pg_dump's schema, one transaction); then the data of all
databases' tables streamed by COPY across the pool, largest first, very large tables in ctid ranges;
each table's indexes and keys built as soon as its data is in, then ANALYZE; then the database's other
post-data (foreign keys, triggers, ...), materialized views refreshed, and its ACL, comment and
settings as they were before the freeze (from the snapshot: nothing of the freeze reaches the target).

Resumable: every finished table is checkpointed, so a retried copy keeps what is done and copies the
rest. A database whose schema was not complete, or whose post-data had started, starts over.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import psycopg
from psycopg import sql

from pgmove.state.errors import StepFailed
from pgmove.state.models import FreezeSnapshot
from pgmove.steps import freezeroles, guards, largeobjects, objects, schema, tables
from pgmove.steps.catalog import DatabaseDefinition, database_definition
from pgmove.steps.connect import Endpoint, Progress, ThreadConnections, connection, describe
from pgmove.steps.copyprogress import Ticker
from pgmove.steps.dbprops import apply_database_properties, apply_role_settings, create_database
from pgmove.steps.pool import Pool
from pgmove.steps.prehash import SourceHashes
from pgmove.steps.roles import copy_roles
from pgmove.steps.settings import before_freeze, read_settings
from pgmove.steps.targethash import TargetHashes
from pgmove.steps.tools import ToolSet

# A table bigger than this is copied in ctid ranges (about this size each), at most one per job.
SPLIT_BYTES = 256 * 1024 * 1024
# Pool priorities: schemas, then finishing work first, data next; hashing for the verification only fills cores
# nothing else wants, smallest tables first whichever the side (a big one is the likeliest to be cut short by the
# copy's end), the frozen source's before a landed table's target side at equal size: its sums are reused with
# no proof to read (steps/prehash.py, steps/targethash.py).
HASH, DATA, AFTER_DATA, INDEX, FINISH, PREPARE = 4, 3, 2, 1, 0, -1


class Checkpoints(Protocol):
    def done(self) -> set[str]: ...
    def mark(self, key: str) -> None: ...
    def forget(self, keys: set[str]) -> None: ...


class MemoryCheckpoints:
    """Checkpoints that live as long as the process: for a copy run outside a migration (benchmarks, tests)."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def done(self) -> set[str]:
        return set(self.keys)

    def mark(self, key: str) -> None:
        self.keys.add(key)

    def forget(self, keys: set[str]) -> None:
        self.keys -= keys


def checkpoint(database: str, what: str) -> str:
    return json.dumps([database, what])


@dataclass(frozen=True)
class CopyJob:
    src: Endpoint
    dst: Endpoint
    databases: list[str]
    jobs: int
    toolset: ToolSet
    snapshot: FreezeSnapshot | None
    work_dir: str | None
    created_before: list[str]  # target databases an earlier attempt of this migration created
    split_bytes: int = SPLIT_BYTES
    role_passwords: bool = True
    source_hashes: SourceHashes | None = None  # filled while the copy runs, for the verification after it
    target_hashes: TargetHashes | None = None  # likewise, as each table's data and indexes are in


@dataclass
class _Database:
    definition: DatabaseDefinition
    schema: schema.Schema
    tables: list[tables.Table]
    pending: int = 0
    stats: dict[str, float] = field(default_factory=lambda: {"tables": 0, "rows": 0, "bytes": 0})
    started: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return self.definition.name


def run(job: CopyJob, progress: Progress, will_create: Callable[[str], None], should_stop: Callable[[], bool],
        checkpoints: Checkpoints | None = None) -> dict[str, Any]:
    """Copy everything; `will_create(db)` must persist the name before the database is created on the target."""
    started = time.monotonic()
    staging = tempfile.mkdtemp(prefix="pgmove-", dir=job.work_dir)
    try:
        return _Copy(job, progress, should_stop, checkpoints or MemoryCheckpoints(), staging).run(will_create, started)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class _Copy:
    def __init__(self, job: CopyJob, progress: Progress, should_stop: Callable[[], bool], checkpoints: Checkpoints,
                 staging: str) -> None:
        self.job, self.progress, self.checkpoints, self.staging = job, progress, checkpoints, staging
        self.pool = Pool(job.jobs, should_stop)
        self.lock = threading.Lock()
        self.done = checkpoints.done()
        self.ticker = Ticker(progress, databases=len(job.databases))
        self.same_major = False
        self.finished: list[dict[str, Any]] = []
        self.dropped_options: set[str] = set()
        self.src_sessions = ThreadConnections()
        self.dst_sessions = ThreadConnections(_tune_for_bulk_load)
        self.hashes = [h for h in (job.source_hashes, job.target_hashes) if h is not None]

    def run(self, will_create: Callable[[str], None], started: float) -> dict[str, Any]:
        job = self.job
        with connection(job.src) as src, connection(job.dst) as dst:
            roles = copy_roles(src, dst, freezeroles.before_freeze(job.snapshot), job.role_passwords)
            refused = f"; not reconciled: {'; '.join(roles['not_reconciled'])}" if roles["not_reconciled"] else ""
            self.progress(f"roles: {len(roles['created'])} created, {len(roles['kept'])} already on {job.dst.name} "
                          f"({len(roles['reconciled'])} reconciled), password hashes {roles['passwords'][0]}{refused}",
                          roles=roles)
            self.settings = before_freeze(read_settings(src), job.snapshot)
            self.same_major = src.info.server_version // 10000 == dst.info.server_version // 10000
            definitions = [database_definition(src, name) for name in job.databases]
        for d in definitions:  # schemas first, all of them, so the largest tables of all databases go first
            self.pool.submit((PREPARE, 0), f"{d.name} schema", partial(self._prepare_and_plan, d, will_create))
        with self.ticker:
            try:
                self.pool.run()
            finally:
                self.src_sessions.close()
                self.dst_sessions.close()
                for hashes in self.hashes:
                    hashes.close()
        apply_role_settings(job.dst, self.settings, set(job.databases))
        return {"roles": roles, "databases": self.finished, "seconds": round(time.monotonic() - started, 2),
                "tools": job.toolset.describe(), "column_options_left_out": sorted(self.dropped_options),
                "jobs": self.pool.workers}

    # -- per database, before the pool ----------------------------------------------------------

    def _prepare_and_plan(self, d: DatabaseDefinition, will_create: Callable[[str], None]) -> None:
        with connection(self.job.dst) as dst:
            db = self._prepare(dst, d, will_create)
        self._plan(db)

    def _prepare(self, dst: psycopg.Connection[Any], d: DatabaseDefinition, will_create: Callable[[str], None]) -> _Database:
        job, name = self.job, d.name
        exists = dst.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
        if exists and name not in job.created_before:
            raise StepFailed(f"{job.dst.name} already has a database named {name} that pgmove did not create; "
                             "it is left untouched. Drop or rename it there, then retry.")
        resumable = (checkpoint(name, "schema") in self.done and checkpoint(name, "post-data started") not in self.done)
        if exists and not resumable:
            # Ours from an earlier attempt, but with an incomplete schema or a half-run post-data: start it over.
            self.progress(f"dropping {name} on {job.dst.name}, left incomplete by an earlier attempt")
            dst.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        if not exists or not resumable:
            self._forget(name)
            will_create(name)
            dst.execute(create_database(d, int(dst.info.server_version) // 10000))
        archive = schema.dump(job.src, name, job.toolset, self.staging, self.pool.stopping)
        with connection(job.src, name) as src_db:
            loaded = schema.load(archive, job.toolset, src_db, job.dst.tool_env(dict(os.environ)))
            db = _Database(d, loaded, tables.list_tables(src_db))
        self.ticker.listed(db.tables)
        if exists and resumable:
            kept = sum(1 for t in db.tables if checkpoint(name, f"table {t.oid}") in self.done)
            self.progress(f"{name}: resuming, {kept} of {len(db.tables)} tables already copied", database=name)
            return db
        dropped = schema.restore_pre_data(loaded, job.toolset, job.dst, name, self.staging, self.pool.stopping,
                                          cross_version=not self.same_major)
        if dropped:
            with self.lock:
                self.dropped_options |= dropped
            self.progress(f"{name}: column options the target does not know were left out: {', '.join(sorted(dropped))}",
                          database=name, options=sorted(dropped))
        self._mark(name, "schema")
        self.progress(f"{name}: schema restored; {len(db.tables)} tables to copy", database=name, tables=len(db.tables))
        return db

    def _forget(self, name: str) -> None:
        with self.lock:  # other databases' threads add checkpoints meanwhile
            mine = {key for key in self.done if json.loads(key)[0] == name}
            self.done -= mine
        if mine:
            self.checkpoints.forget(mine)

    def _plan(self, db: _Database) -> None:
        lo_ranges = largeobjects.ranges(self._src(db.name))
        db.pending = len(db.tables) + 1 + len(lo_ranges)  # each table, the sequences, each oid range of large objects
        self.pool.submit((DATA, 0), f"{db.name} sequences", lambda: self._sequences(db))
        for low, high in lo_ranges:  # in parallel across the pool, like a big table's ranges
            self.pool.submit((DATA, 0), f"{db.name} large objects [{low}, {high})",
                             partial(self._large_objects, db, low, high))
        for table in db.tables:
            if self.job.source_hashes is not None:
                self.pool.submit((HASH, table.size_bytes, 0), f"{db.name} hash {table.label}",
                                 partial(self.job.source_hashes.hash_table, db.name, table.schema, table.name))
            if checkpoint(db.name, f"table {table.oid}") in self.done:
                self._table_done(db, table, resumed=True)
                continue
            pieces = min(self.pool.workers, -(-table.size_bytes // self.job.split_bytes))
            slices = tables.split(table, pieces)
            if len(slices) == 1:
                self.pool.submit((DATA, -table.size_bytes), f"{db.name}.{table.label}",
                                 partial(self._copy, db, table, list(slices), slices[0], True))
                continue
            self.pool.submit((DATA, -table.size_bytes), f"{db.name}.{table.label} empty",
                             partial(self._empty_then_split, db, table, slices))

    # -- pool tasks -------------------------------------------------------------------------------

    def _empty_then_split(self, db: _Database, table: tables.Table, slices: list[tables.Slice]) -> None:
        self._dst(db.name).execute(sql.SQL("TRUNCATE ONLY {}").format(table.ident))
        waiting = list(slices)
        for s in slices:
            self.pool.submit((DATA, -s.table.size_bytes // len(slices)), f"{db.name}.{s.label}",
                             partial(self._copy, db, table, waiting, s, False))

    def _copy(self, db: _Database, table: tables.Table, waiting: list[tables.Slice], s: tables.Slice,
              exclusive: bool) -> None:
        moved = tables.Moved()
        binary = self.same_major and table.builtin_types
        with self.ticker.watch(db.name, s, moved):
            tables.copy_slice(self.job.src, self._src(db.name), self._dst(db.name), db.name, s, binary, exclusive,
                              self.job.toolset, moved, self.pool.stopping)
        with self.lock:
            waiting.remove(s)
            db.stats["rows"] += moved.rows
            db.stats["bytes"] += moved.bytes
            if waiting:
                return
        self._mark(db.name, f"table {table.oid}")
        self._table_done(db, table)

    def _table_done(self, db: _Database, table: tables.Table, resumed: bool = False) -> None:
        with self.lock:
            db.stats["tables"] += 1
        self.ticker.table_done(table, resumed)
        items = db.schema.table_items.get(table.oid, [])
        left = [len(items)]

        def analyze() -> None:
            self._dst(db.name).execute(sql.SQL("ANALYZE {}").format(table.ident))
            hashes = self.job.target_hashes
            if hashes is not None:  # data and indexes in: what the verification will read of it is there
                self.pool.submit((HASH, table.size_bytes, 1), f"{db.name} hash {table.label} on the target",
                                 partial(hashes.hash_table, db.name, table.schema, table.name))
            self._database_part_done(db)

        def build(item: schema.TableItem) -> None:
            self._build(db, table, item, resumed)
            with self.lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                self.pool.submit((AFTER_DATA,), f"{db.name} analyze {table.label}", analyze)

        if not items:
            self.pool.submit((AFTER_DATA,), f"{db.name} analyze {table.label}", analyze)
        for item in items:
            self.pool.submit((INDEX, -table.size_bytes), f"{db.name} {item.name}", partial(build, item))

    def _build(self, db: _Database, table: tables.Table, item: schema.TableItem, resumed: bool) -> None:
        conn = self._dst(db.name)
        if resumed and _exists(conn, table, item):
            return  # built by the attempt that copied this table
        try:
            conn.execute(sql.SQL(item.sql))  # pg_dump's own text
        except psycopg.Error as exc:
            raise StepFailed(f"{db.name}: building {item.name} failed: {describe(exc)}") from None

    def _sequences(self, db: _Database) -> None:
        count = objects.copy_sequences(self._src(db.name), self._dst(db.name))
        db.stats["sequences"] = count
        self._database_part_done(db)

    def _large_objects(self, db: _Database, low: int, high: int) -> None:
        count, size = objects.copy_large_objects(self._src(db.name), self._dst(db.name), low, high)
        with self.lock:
            db.stats["large_objects"] = db.stats.get("large_objects", 0) + count
            db.stats["bytes"] += size
        self._database_part_done(db)

    def _database_part_done(self, db: _Database) -> None:
        with self.lock:
            db.pending -= 1
            last = db.pending == 0
        if last:
            self.progress(f"{db.name}: data in ({int(db.stats['tables'])} tables, {int(db.stats['rows'])} rows, "
                          f"{db.stats['bytes'] / 1e6:.1f} MB); finishing post-data", database=db.name)
            self.pool.submit((FINISH,), f"{db.name} post-data", lambda: self._finish(db))

    def _finish(self, db: _Database) -> None:
        job, name = self.job, db.name
        self._mark(name, "post-data started")
        schema.restore_remainder(db.schema, job.toolset, job.dst, name, self.staging, job.jobs, self.pool.stopping)
        with connection(job.src, name) as src:
            matviews = objects.populated_matviews_in_order(src)
        with connection(job.dst) as dst:
            apply_database_properties(job.src, dst, db.definition, self.settings)
        with connection(job.dst, name) as conn:
            if job.snapshot is not None:  # the dump carries the freeze's revoked privileges: put the originals back
                guards.restore_acls(conn, [a for a in job.snapshot.acls if a.database == name])
            conn.execute("SET default_transaction_read_only = off")
            objects.refresh(conn, matviews)
            objects.analyze_parents_and_matviews(conn)
        seconds = round(time.monotonic() - db.started, 2)
        with self.lock:
            self.finished.append({"database": name, "seconds": seconds, **{k: int(v) for k, v in db.stats.items()}})
            all_in = len(self.finished) == len(job.databases)
        for hashes in self.hashes if all_in else []:
            hashes.finish()
        self.progress(f"database {name} copied in {seconds:.1f}s", database=name, seconds=seconds)

    # -- bookkeeping ----------------------------------------------------------------------------

    def _mark(self, database: str, what: str) -> None:
        key = checkpoint(database, what)
        self.checkpoints.mark(key)
        with self.lock:
            self.done.add(key)

    def _src(self, database: str) -> psycopg.Connection[Any]:
        return self.src_sessions.get(self.job.src, database)

    def _dst(self, database: str) -> psycopg.Connection[Any]:
        return self.dst_sessions.get(self.job.dst, database)


def _exists(conn: psycopg.Connection[Any], table: tables.Table, item: schema.TableItem) -> bool:
    if item.key.startswith(f"{schema.PG_CONSTRAINT}:"):
        query = "SELECT 1 FROM pg_constraint WHERE conname = %s AND conrelid = to_regclass(%s)"
    else:
        query = ("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE c.relname = %s AND n.nspname = %s AND c.relkind IN ('i', 'I')")
    args = (item.name, table.ident.as_string(conn)) if "conrelid" in query else (item.name, table.schema)
    return conn.execute(query, args).fetchone() is not None


def _tune_for_bulk_load(conn: psycopg.Connection[Any]) -> None:
    """Session settings only, so they end with the session: nothing to reset on the target."""
    conn.execute("SET synchronous_commit = off")
    conn.execute("SELECT pg_catalog.set_config('search_path', '', false)")
    current = conn.execute("SELECT setting::bigint * 1024 FROM pg_settings WHERE name = 'maintenance_work_mem'").fetchone()
    if current and current[0] < 256 * 1024 * 1024:
        conn.execute("SET maintenance_work_mem = '256MB'")
