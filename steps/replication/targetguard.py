"""While it follows the source, the target takes writes from replication and pgmove only.

An app (or a person) writing to the new server before the cutover is the early split brain: its rows are on
neither side's books, a replicated change may later collide with them, and a range the verification while in
sync found equal would no longer be. So once the target's databases are set up, they carry the freeze's own
guards (steps/guards.py): a statement trigger on every table and the DDL event trigger, which refuse every
session but pgmove's with the read-only error clients already handle. Replication's apply workers run with
session_replication_role = replica, in which such triggers do not fire. A superuser who must write on purpose
does what the apply worker does: SET session_replication_role = replica.

The cutover lets writes through right before the hook switches the app (no lock: the guard function is
replaced), and the guards are removed after it with short lock waits, as after an unfreeze. A window given
back guards the target again; abort and unfreeze remove the guards with the replication.

A table made on the target meanwhile (the monitor's advice for a schema change on the source, through that
override) is guarded as it is made: an event trigger at the end of CREATE TABLE adds the statement trigger. It
fires in replica mode too (ENABLE ALWAYS), since that is the only way anyone but pgmove makes a table there.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.errors import ConnectionFailed
from pgmove.state.models import AclRow
from pgmove.steps import guards
from pgmove.steps.connect import Endpoint, connection, describe, each_in_parallel

REMOVE_LOCK_SECONDS = 0.05  # the target is the app's primary by then: a DROP TRIGGER waiting longer queues its queries
REMOVE_GIVE_UP_SECONDS = 15.0  # a table locked longer than this keeps its (by then harmless) guard: said, not waited on
_GUARD_NEW = """
DECLARE made record;
BEGIN
  FOR made IN SELECT DISTINCT d.objid FROM pg_event_trigger_ddl_commands() d JOIN pg_class c ON c.oid = d.objid
              WHERE d.object_type = 'table' AND c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
                AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = d.objid AND t.tgname = {guard}) LOOP
    EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s FOR EACH STATEMENT '
                   'EXECUTE FUNCTION %I.refuse()', {guard}, made.objid::regclass, {schema});
  END LOOP;
END"""


def guard(dst: Endpoint, databases: list[str], source: str, recorded: list[AclRow] | None,
          record: Callable[[list[AclRow]], object]) -> int:
    """Every table of the moved databases guarded on the target, and the large-object writers revoked there (a large
    object is in no table a trigger sees; one written early would be unlinked by the drain without a word); safe to
    repeat. Their privileges are captured once and `record`ed before any is revoked: `recorded` is that record, so a
    retry never takes revoked privileges for the originals. Returns the tables newly guarded."""
    acls = recorded
    if acls is None:
        acls = [row for rows in each_in_parallel(partial(_large_object_writers, dst), databases) for row in rows]
        record(acls)

    def one(db: str) -> int:
        with connection(dst, db) as conn:
            role = str(conn.execute("SELECT session_user").fetchone()[0])  # type: ignore[index]
            guards.install_ddl_guard(conn, role, f"{dst.name} is the target of the move from {source}")
            _guard_new_tables(conn)
            return guards.install_write_guards(conn, [a for a in acls if a.database == db])

    return sum(each_in_parallel(one, databases))


def _large_object_writers(dst: Endpoint, db: str) -> list[AclRow]:
    with connection(dst, db) as conn:
        return [a for a in guards.capture_acls(conn, db) if a.kind == "function"]


def open_for_writes(dst: Endpoint, databases: list[str], acls: list[AclRow] | None) -> None:
    """The app may write: without a lock, so inside a cutover window it costs a few catalog writes per database."""
    def one(db: str) -> None:
        with connection(dst, db) as conn:
            _stop_guarding_new_tables(conn)
            guards.restore_acls(conn, [a for a in acls or [] if a.database == db])
            guards.let_writes_through(conn)

    each_in_parallel(one, databases)


def remove(dst: Endpoint, databases: list[str], acls: list[AclRow] | None) -> dict[str, Any]:
    """Every guard object off the target's databases; what could not go is said with how to remove it by hand."""
    removed, left = 0, []
    try:
        with connection(dst) as conn:
            present = {str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
    except (ConnectionFailed, psycopg.Error) as exc:
        why = exc.message if isinstance(exc, ConnectionFailed) else describe(exc)
        return {"guards_removed": 0, "left": [f"{dst.name}: the write guards of {', '.join(databases)} ({why}); in each, "
                                              f"DROP TRIGGER {guards.TABLE_TRIGGER} ON each table that has it, then "
                                              f"DROP EVENT TRIGGER {guards.EVENT_TRIGGER}; DROP SCHEMA {guards.SCHEMA} CASCADE"]}
    for db in (d for d in databases if d in present):
        try:
            with connection(dst, db) as conn:
                if not _present(conn):
                    continue
                _stop_guarding_new_tables(conn)
                guards.restore_acls(conn, [a for a in acls or [] if a.database == db])
                removed += guards.remove_guards(conn, lock_timeout_s=REMOVE_LOCK_SECONDS, give_up_s=REMOVE_GIVE_UP_SECONDS)
        except (ConnectionFailed, psycopg.Error, guards.GuardLocked) as exc:
            why = exc.message if isinstance(exc, (ConnectionFailed, guards.GuardLocked)) else describe(exc)
            left.append(f"{dst.name}: the write guards of {db} ({why}); writes pass them already: in {db}, DROP "
                        f"TRIGGER {guards.TABLE_TRIGGER} ON each table that has it, then DROP EVENT "
                        f"TRIGGER {guards.EVENT_TRIGGER}; DROP SCHEMA {guards.SCHEMA} CASCADE")
    return {"guards_removed": removed, "left": left}


def _present(conn: psycopg.Connection[Any]) -> bool:
    return conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (guards.SCHEMA,)).fetchone() == (True,)


def _guard_new_tables(conn: psycopg.Connection[Any]) -> None:
    body = sql.SQL(_GUARD_NEW).format(guard=sql.Literal(guards.TABLE_TRIGGER), schema=sql.Literal(guards.SCHEMA))
    conn.execute(sql.SQL("CREATE OR REPLACE FUNCTION {}.guard_new() RETURNS event_trigger LANGUAGE plpgsql AS {}").format(
        sql.Identifier(guards.SCHEMA), sql.Literal(body.as_string(conn))))
    if conn.execute("SELECT 1 FROM pg_event_trigger WHERE evtname = %s", (guards.NEW_TABLE_TRIGGER,)).fetchone() is None:
        conn.execute(sql.SQL("CREATE EVENT TRIGGER {} ON ddl_command_end WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', "
                             "'SELECT INTO') EXECUTE FUNCTION {}.guard_new()").format(
            sql.Identifier(guards.NEW_TABLE_TRIGGER), sql.Identifier(guards.SCHEMA)))
    conn.execute(sql.SQL("ALTER EVENT TRIGGER {} ENABLE ALWAYS").format(sql.Identifier(guards.NEW_TABLE_TRIGGER)))


def _stop_guarding_new_tables(conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("DROP EVENT TRIGGER IF EXISTS {}").format(sql.Identifier(guards.NEW_TABLE_TRIGGER)))
    if conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (guards.SCHEMA,)).fetchone() == (True,):
        conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}.guard_new()").format(sql.Identifier(guards.SCHEMA)))
