"""The objects that make a frozen database refuse writes, and their exact removal.

A read-only default is only a default: a session may `BEGIN READ WRITE`. So each database also gets
a statement trigger on every table (DML and TRUNCATE), an event trigger (all DDL, including
`ALTER TABLE ... DISABLE TRIGGER` and GRANT), and loses the privileges that write without a table
(nextval on sequences, the large-object writers). Only pgmove's own session passes. Every name
starts with pgmove_freeze so the copy can leave them all behind (RESTORE_EXCLUDE).
"""

from __future__ import annotations

import re
import time
from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.errors import StepFailed
from pgmove.state.models import AclRow
from pgmove.steps import aclitems

SCHEMA = "_pgmove_freeze"
TABLE_TRIGGER = "pgmove_freeze_guard"
EVENT_TRIGGER = "pgmove_freeze_ddl"
NEW_TABLE_TRIGGER = "pgmove_freeze_new_tables"  # the target's only (replication/targetguard.py): guards tables made in sync
# How long removing the guards keeps retrying a table whose lock a reader holds; the worker's configuration
# (unfreeze_lock_give_up_seconds) sets it, the same 60 s by default.
GIVE_UP_SECONDS = 60.0
READ_ONLY_SQLSTATE = "25006"  # what a read-only transaction raises: clients already handle it
LARGE_OBJECT_WRITERS = ("lo_creat", "lo_create", "lo_from_bytea", "lo_put", "lowrite", "lo_unlink", "lo_truncate",
                        "lo_truncate64", "lo_import")

# pg_restore -l lines of the guards: the schema, its comment (the freeze record), its functions, the
# table triggers, the event trigger.
RESTORE_EXCLUDE = re.compile(
    rf"^\d+; \d+ \d+ (SCHEMA - {SCHEMA} |COMMENT - SCHEMA {SCHEMA} |FUNCTION {SCHEMA} |ACL {SCHEMA} |COMMENT {SCHEMA} "
    rf"|TRIGGER \S+ .* {TABLE_TRIGGER} |EVENT TRIGGER - {EVENT_TRIGGER} )"
)

_TABLES = """
    SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', %s)
      AND n.nspname !~ '^pg_(toast|temp)' AND NOT EXISTS (
        SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = %s)
"""
_SEQUENCES = """
    SELECT c.oid::regclass::text, c.relacl::text, (SELECT json_agg(json_build_array(e.grantee::bigint, e.grantor::bigint,
           e.privilege_type, e.is_grantable)) FROM aclexplode(c.relacl) e) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_temp'
"""
_LO_FUNCTIONS = """
    SELECT p.oid::regprocedure::text, p.proacl::text, (SELECT json_agg(json_build_array(e.grantee::bigint,
           e.grantor::bigint, e.privilege_type, e.is_grantable)) FROM aclexplode(p.proacl) e) FROM pg_proc p
    WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY(%s)
"""


def capture_acls(conn: psycopg.Connection[Any], database: str) -> list[AclRow]:
    """Sequence and large-object-function privileges of one database, as they are now."""
    rows = [AclRow(database=database, kind="sequence", name=n, acl=a, items=aclitems.items(e))
            for n, a, e in conn.execute(_SEQUENCES).fetchall()]
    rows += [AclRow(database=database, kind="function", name=n, acl=a, items=aclitems.items(e))
             for n, a, e in conn.execute(_LO_FUNCTIONS, (list(LARGE_OBJECT_WRITERS),)).fetchall()]
    return rows


def install_ddl_guard(conn: psycopg.Connection[Any], pgmove_role: str, label: str) -> None:
    """The schema, the refusing functions and the DDL event trigger (first: it stops schema changes at once)."""
    message = f"{label}: writes are refused until the maintenance ends (pgmove freeze)"
    allowed, text = _literal(conn, pgmove_role), _literal(conn, message)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
    for name, returns, done in (("refuse", "trigger", "RETURN NULL"), ("refuse_ddl", "event_trigger", "RETURN")):
        body = (f"BEGIN IF session_user <> {allowed} THEN RAISE EXCEPTION USING ERRCODE = '{READ_ONLY_SQLSTATE}', "
                f"MESSAGE = {text}, HINT = 'see the pgmove status in the team channel'; END IF; {done}; END")
        conn.execute(sql.SQL("CREATE OR REPLACE FUNCTION {}.{}() RETURNS {} LANGUAGE plpgsql AS {}").format(
            sql.Identifier(SCHEMA), sql.Identifier(name), sql.SQL(returns), sql.Literal(body)))
    exists = conn.execute("SELECT 1 FROM pg_event_trigger WHERE evtname = %s", (EVENT_TRIGGER,)).fetchone()
    if not exists:
        conn.execute(sql.SQL("CREATE EVENT TRIGGER {} ON ddl_command_start EXECUTE FUNCTION {}.refuse_ddl()").format(
            sql.Identifier(EVENT_TRIGGER), sql.Identifier(SCHEMA)))


class GuardLocked(StepFailed):
    """A table's lock could not be had within the lock timeout: someone holds it, and the guards cannot go in."""


def install_write_guards(conn: psycopg.Connection[Any], acls: list[AclRow], lock_timeout_s: float = 30.0) -> int:
    """A statement trigger on every table that lacks one, and the privileges that write without a table revoked.

    All of one database's guards go in together or not at all; a lock that cannot be had names its holders.
    """
    tables = [r[0] for r in conn.execute(_TABLES, (SCHEMA, TABLE_TRIGGER)).fetchall()]
    current = ""
    try:
        with conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(lock_timeout_s * 1000)}ms",))
            for current in tables:
                conn.execute(sql.SQL(
                    "CREATE TRIGGER {} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION {}.refuse()"
                ).format(sql.Identifier(TABLE_TRIGGER), sql.SQL(current), sql.Identifier(SCHEMA)))
            for row in acls:
                _revoke_writers(conn, row)
    except psycopg.errors.LockNotAvailable:
        rows = conn.execute(_HOLDERS, (current,)).fetchall() if current else []
        holders = [f"{kind} {who} ({mode})" for kind, who, mode in rows]
        raise GuardLocked(f"could not lock {current or 'a sequence or function'} in {conn.info.dbname} within {lock_timeout_s:g}s to guard it"
                          f"{': held by ' + ', '.join(holders) if holders else ''}", table=current) from None
    return len(tables)


_HOLDERS = """
    SELECT CASE WHEN l.pid IS NULL THEN 'prepared transaction' ELSE 'session' END,
           coalesce(a.pid::text || ' of ' || a.usename || coalesce(' (' || nullif(a.application_name, '') || ')', ''),
                    p.gid || ' of ' || p.owner, l.virtualtransaction), l.mode
    FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
    LEFT JOIN pg_prepared_xacts p ON l.pid IS NULL AND p.transaction::text = split_part(l.virtualtransaction, '/', 2)
    WHERE l.granted AND l.pid IS DISTINCT FROM pg_backend_pid()
      AND l.relation = to_regclass(%s)
"""


def _revoke_writers(conn: psycopg.Connection[Any], row: AclRow) -> None:
    # Revoke from the owner too: an owner's privileges are only a default it can lose (and the
    # event trigger stops it from granting them back).
    if row.kind == "sequence":
        grantees = conn.execute(_SEQUENCE_GRANTEES, (row.name,)).fetchall()
        privileges, what = sql.SQL("USAGE, UPDATE"), sql.SQL("SEQUENCE")
    else:
        grantees = conn.execute(_FUNCTION_GRANTEES, (row.name,)).fetchall()
        privileges, what = sql.SQL("EXECUTE"), sql.SQL("FUNCTION")
    targets = [sql.SQL("PUBLIC")] + [sql.Identifier(name) for (name,) in grantees]
    conn.execute(sql.SQL("REVOKE {} ON {} {} FROM {}").format(privileges, what, sql.SQL(row.name), sql.SQL(", ").join(targets)))


_SEQUENCE_GRANTEES = """
    SELECT DISTINCT r.rolname FROM pg_class c
    CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('S', c.relowner))) a JOIN pg_roles r ON r.oid = a.grantee
    WHERE c.oid = to_regclass(%s) ORDER BY 1
"""
_FUNCTION_GRANTEES = """
    SELECT DISTINCT r.rolname FROM pg_proc p
    CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a JOIN pg_roles r ON r.oid = a.grantee
    WHERE p.oid = to_regprocedure(%s) ORDER BY 1
"""


def restore_acls(conn: psycopg.Connection[Any], acls: list[AclRow], roles: dict[int, str] | None = None) -> None:
    """Put each recorded ACL back byte for byte, NULL (the built-in default) included.

    GRANT and REVOKE cannot return an ACL to NULL, so the recorded value is written to the catalog
    (superuser only; the value is one the server itself produced). With `roles` (oid -> today's name,
    on the server the ACL was recorded on) the ACL is rebuilt by oid, so a renamed role still parses.
    """
    for row in acls:
        acl = row.acl
        if roles is not None and row.acl is not None and row.items is not None:
            acl = aclitems.rebuild(conn, row.items, roles)
        if row.kind == "sequence":
            conn.execute("UPDATE pg_catalog.pg_class SET relacl = %s::aclitem[] WHERE oid = to_regclass(%s)",
                         (acl, row.name))
        else:
            conn.execute("UPDATE pg_catalog.pg_proc SET proacl = %s::aclitem[] WHERE oid = to_regprocedure(%s)",
                         (acl, row.name))


def let_writes_through(conn: psycopg.Connection[Any]) -> None:
    """Writes come back without taking a single table lock (safe to repeat): the DDL guard goes, and the function
    every table guard calls is replaced by one that lets each statement pass. The triggers go later."""
    conn.execute(sql.SQL("DROP EVENT TRIGGER IF EXISTS {}").format(sql.Identifier(EVENT_TRIGGER)))
    if conn.execute("SELECT to_regprocedure(%s)", (f"{SCHEMA}.refuse()",)).fetchone() != (None,):
        conn.execute(sql.SQL("CREATE OR REPLACE FUNCTION {}.refuse() RETURNS trigger LANGUAGE plpgsql AS {}").format(
            sql.Identifier(SCHEMA), sql.Literal("BEGIN RETURN NULL; END")))


def remove_guards(conn: psycopg.Connection[Any], lock_timeout_s: float = 1.0,
                  give_up_s: float = GIVE_UP_SECONDS) -> int:
    """Drop every guard object (safe to repeat); returns how many table triggers were removed.

    Writes come back first (let_writes_through). Then each trigger goes in its own short transaction with a
    short lock timeout, retried: a DROP TRIGGER waiting on a reader's lock would queue every query on that table
    behind it.
    """
    let_writes_through(conn)
    tables = [r[0] for r in conn.execute(
        "SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = %s AND NOT tgisinternal", (TABLE_TRIGGER,)).fetchall()]
    pending, deadline = list(tables), time.monotonic() + give_up_s
    while pending:
        table = pending.pop(0)
        try:
            with conn.transaction():
                conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(lock_timeout_s * 1000)}ms",))
                conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(TABLE_TRIGGER), sql.SQL(table)))
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() > deadline:
                holders = [f"{kind} {who} ({mode})" for kind, who, mode in conn.execute(_HOLDERS, (table,)).fetchall()]
                raise GuardLocked(
                    f"could not lock {table} in {conn.info.dbname} within {give_up_s:g}s to remove its guard"
                    f"{': held by ' + ', '.join(holders) if holders else ''}. Writes are allowed already (the guard "
                    "lets everything pass now); retry the unfreeze to remove what is left", table=table) from None
            pending.append(table)
            time.sleep(0.2)
    with conn.transaction():
        conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}.refuse(), {}.refuse_ddl()").format(
            sql.Identifier(SCHEMA), sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {}").format(sql.Identifier(SCHEMA)))
    return len(tables)


def _literal(conn: psycopg.Connection[Any], value: str) -> str:
    return sql.Literal(value).as_string(conn)
