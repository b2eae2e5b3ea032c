"""Start logical replication: roles and the whole schema to the target, then per database a publication on the
source and a subscription (with its slot, and the initial copy of the data) on the target.

Every object's name is recorded (through `record`) before the object is created, so an abort or a retry
after a dead worker finds it. A retry keeps a database whose subscription exists and redoes one that
has none: the target database (ours: recorded earlier) is dropped and made again, and a slot left by
a CREATE SUBSCRIPTION that died is dropped first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgmove.state.errors import StepFailed
from pgmove.state.replication import KeylessTable, SyncDatabase, SyncSetup, object_name
from pgmove.steps import freezeroles, schema
from pgmove.steps.catalog import DatabaseDefinition, database_definition
from pgmove.steps.connect import Endpoint, Progress, connection, describe, server_major
from pgmove.steps.dbprops import apply_database_properties, apply_role_settings, create_database
from pgmove.steps.replication import cleanup, published, snapshotcopy
from pgmove.steps.roles import copy_roles
from pgmove.steps.settings import read_settings
from pgmove.steps.tools import ToolSet

INITIAL_COPY = "snapshot"  # measured faster: bench/sync.py

# Settings of the session that sends the source's password to the target: keep the statement out of the
# target's log (superuser only; a non-superuser session just goes on without them).
_QUIET = ("SET log_statement = 'none'", "SET log_min_duration_statement = -1", "SET log_min_error_statement = panic",
          "SET track_activities = off")


def start(src: Endpoint, dst: Endpoint, databases: list[str], migration_id: str, *, replica_identity_full: bool,
          toolset: ToolSet, work_dir: str | None, jobs: int, record: Callable[[SyncSetup], None], progress: Progress,
          should_stop: Callable[[], bool], previous: SyncSetup | None = None,
          initial_copy: str = INITIAL_COPY) -> SyncSetup:
    """`previous`: what an earlier attempt recorded (its databases on the target are ours to redo).
    `initial_copy`: "snapshot" (pgmove's parallel copy at the slot's exported snapshot, then a subscription
    with copy_data = false) or "subscription" (the subscription's own table-sync workers copy)."""
    setup = previous.model_copy(deep=True) if previous else SyncSetup(migration_id=migration_id)
    ours = {d.database for d in setup.databases}
    with connection(src) as s, connection(dst) as d:
        roles = copy_roles(s, d, freezeroles.before_freeze(None), True)
        progress(f"roles: {len(roles['created'])} created, {len(roles['kept'])} already on {dst.name}", roles=roles)
        settings = read_settings(s)
        oids = dict(s.execute("SELECT datname, oid::bigint FROM pg_database WHERE datname = ANY(%s)",
                              (databases,)).fetchall())
        definitions = [database_definition(s, name) for name in databases]
        cross_version = server_major(s) != server_major(d)
    staging = tempfile.mkdtemp(prefix="pgmove-sync-", dir=work_dir)
    try:
        for definition in definitions:
            if should_stop():
                raise StepFailed("sync was stopped: the migration moved on")
            name = object_name(migration_id, int(oids[definition.name]))
            entry = setup.database(definition.name)
            if entry is None:
                entry = SyncDatabase(database=definition.name, publication=name, slot=name, subscription=name)
                setup.databases.append(entry)
                record(setup)
            _Database(src, dst, setup, entry, definition, settings, record, progress, should_stop,
                      replica_identity_full=replica_identity_full).run(
                toolset, staging, jobs, ours=definition.name in ours, cross_version=cross_version,
                snapshot=initial_copy == "snapshot")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    apply_role_settings(dst, settings, set(databases))
    return setup


class _Database:
    def __init__(self, src: Endpoint, dst: Endpoint, setup: SyncSetup, entry: SyncDatabase, definition: DatabaseDefinition,
                 settings: list[Any], record: Callable[[SyncSetup], None], progress: Progress,
                 should_stop: Callable[[], bool], *, replica_identity_full: bool) -> None:
        self.src, self.dst, self.setup, self.entry, self.definition = src, dst, setup, entry, definition
        self.settings, self.record, self.progress, self.should_stop = settings, record, progress, should_stop
        self.replica_identity_full = replica_identity_full
        self.name = definition.name

    def run(self, toolset: ToolSet, staging: str, jobs: int, *, ours: bool, cross_version: bool, snapshot: bool) -> None:
        with connection(self.dst) as dst:
            exists = dst.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.name,)).fetchone() is not None
            subscribed = dst.execute("SELECT 1 FROM pg_subscription WHERE subname = %s",
                                     (self.entry.subscription,)).fetchone() is not None
            if subscribed:
                self.progress(f"{self.name}: already subscribed by an earlier attempt", database=self.name)
                return
            if exists and not ours:
                raise StepFailed(f"{self.dst.name} already has a database named {self.name} that pgmove did not create; "
                                 "it is left untouched. Drop or rename it there, then retry.")
            if exists:
                self.progress(f"dropping {self.name} on {self.dst.name}, left incomplete by an earlier attempt")
                dst.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(self.name)))
            dst.execute(create_database(self.definition, server_major(dst)))
        loaded = self._pre_data(toolset, staging, cross_version)
        tables = self._tables()
        self._publish(tables)
        if snapshot:
            session, name = snapshotcopy.create_slot(self.src, self.name, self.entry.slot)
            try:
                moved = snapshotcopy.copy_tables(self.src, self.dst, self.name, tables, name, jobs, toolset,
                                                 not cross_version, self.should_stop)
            finally:
                session.close()  # the snapshot is needed no longer; the slot stays
            self.progress(f"{self.name}: {moved['tables']} tables copied at the slot's snapshot ({moved['rows']} rows)",
                          database=self.name, **moved)
        self._post_data(loaded, toolset, staging, jobs)
        if snapshot:
            with connection(self.dst, self.name) as conn:
                conn.execute("ANALYZE")  # planner statistics before the app arrives, as the offline copy leaves them
        self._subscribe(copy_data=not snapshot)
        self.progress(f"{self.name}: publishing {len(tables)} tables, subscribed"
                      + ("" if snapshot else "; initial copy running"), database=self.name, tables=len(tables))

    def _pre_data(self, toolset: ToolSet, staging: str, cross_version: bool) -> schema.Schema:
        archive = schema.dump(self.src, self.name, toolset, staging, self.should_stop)
        with connection(self.src, self.name) as src_db:
            loaded = schema.load(archive, toolset, src_db, self.dst.tool_env(dict(os.environ)))
        whole = schema.Schema(loaded.archive, loaded.listing, {})
        dropped = schema.restore_pre_data(whole, toolset, self.dst, self.name, staging, self.should_stop,
                                          cross_version=cross_version)
        if dropped:
            self.progress(f"{self.name}: column options the target does not know were left out: "
                          f"{', '.join(sorted(dropped))}", database=self.name, options=sorted(dropped))
        return whole

    def _post_data(self, whole: schema.Schema, toolset: ToolSet, staging: str, jobs: int) -> None:
        """Before the subscription starts: applying an UPDATE or DELETE needs the table's key on the target."""
        schema.restore_remainder(whole, toolset, self.dst, self.name, staging, jobs, self.should_stop)
        with connection(self.dst) as dst:
            apply_database_properties(self.src, dst, self.definition, self.settings)

    def _tables(self) -> list[tuple[str, str]]:
        with connection(self.src, self.name) as conn:
            found = published.classify(conn, self.name)
            tables = list(found.publishable)
            for table in found.keyless:
                if self.replica_identity_full:
                    if not _listed(self.setup.identity_full, table):
                        self.setup.identity_full.append(table)
                        self.record(self.setup)  # before the change: an abort must find it to undo it
                    published.set_identity(conn, table, "f")
                    tables.append((table.schema_name, table.name))
                elif not _listed(self.setup.left_out, table):
                    self.setup.left_out.append(table)
            for table in found.unlogged + found.extension_config:
                if not _listed(self.setup.left_out, table):
                    self.setup.left_out.append(table)
            self.setup.schema_fingerprint[self.name] = published.fingerprint(conn)
        self.record(self.setup)
        return tables

    def _publish(self, tables: list[tuple[str, str]]) -> None:
        with connection(self.src, self.name) as conn:
            ident = sql.Identifier(self.entry.publication)
            conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(ident))  # no subscriber yet: redo it whole
            listed = sql.SQL(", ").join(sql.Identifier(s, t) for s, t in tables)
            conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(ident, listed) if tables
                         else sql.SQL("CREATE PUBLICATION {}").format(ident))
            # A CREATE SUBSCRIPTION that died after making its slot leaves it behind: it would hold WAL forever.
            cleanup.drop_slot(conn, self.entry.slot)

    def _subscribe(self, copy_data: bool) -> None:
        params = self.src.params
        secret = make_conninfo(self.src.dsn, dbname=self.name, password=self.src.password or None,
                               connect_timeout=params.get("connect_timeout") or "10")
        statement = sql.SQL(
            "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (slot_name = {}, create_slot = {}, "
            "copy_data = {}, enabled = true)").format(
            sql.Identifier(self.entry.subscription), sql.Literal(secret), sql.Identifier(self.entry.publication),
            sql.Literal(self.entry.slot), sql.Literal(copy_data), sql.Literal(copy_data))
        with connection(self.dst, self.name) as conn:
            for setting in _QUIET:
                try:
                    conn.execute(setting)
                except psycopg.errors.InsufficientPrivilege:
                    pass
            try:
                conn.execute(statement)
            except psycopg.Error as exc:
                raise StepFailed(f"{self.name}: could not subscribe {self.dst.name} to {self.src.name}: "
                                 f"{describe(exc)}", database=self.name) from None


def _listed(tables: list[KeylessTable], table: KeylessTable) -> bool:
    return any((t.database, t.schema_name, t.name) == (table.database, table.schema_name, table.name) for t in tables)
