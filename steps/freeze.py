"""Freeze a whole server (every database, every session but pgmove's own) and unfreeze it exactly.

Order matters: record everything first (the caller persists the snapshot before apply), then
read-only defaults and logins, then the DDL guard, then end old sessions, then the write guards.
Every part is safe to run twice, so a retried freeze completes whatever a dead worker started.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from state.models import FreezeMode, FreezeSnapshot, SettingRow
from steps import guards
from steps.connect import Endpoint, Progress, connection
from steps.sessions import end_sessions
from steps.settings import read_settings, set_statement

READ_ONLY = "default_transaction_read_only"


def all_databases(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname")
    return [r[0] for r in rows.fetchall()]


def capture(src: Endpoint, mode: FreezeMode, label: str) -> FreezeSnapshot:
    """Record what the freeze will change, before changing anything."""
    with connection(src) as conn:
        databases = all_databases(conn)
        existing = {(s.database, s.role): s.value for s in read_settings(conn) if s.name == READ_ONLY}
        pgmove_role = str(conn.execute("SELECT session_user").fetchone()[0])  # type: ignore[index]
        logins = [r[0] for r in conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolcanlogin AND NOT rolsuper AND rolname <> session_user ORDER BY 1"
        ).fetchall()]
    rows = [SettingRow(database=None, role=None, name=READ_ONLY, value=existing.get((None, None)))]
    rows += [SettingRow(database=db, role=None, name=READ_ONLY, value=existing.get((db, None))) for db in databases]
    # A role-level "off" outranks the database default: the freeze must override those too.
    rows += [
        SettingRow(database=db, role=role, name=READ_ONLY, value=value)
        for (db, role), value in sorted(existing.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or ""))
        if role is not None
    ]
    acls = []
    for db in databases:
        with connection(src, db) as conn:
            acls += guards.capture_acls(conn, db)
    return FreezeSnapshot(taken_at=datetime.now(UTC), databases=databases, settings=rows, mode=mode,
                          pgmove_role=pgmove_role, logins=logins if mode == FreezeMode.NO_CONNECT else [],
                          acls=acls, label=label)


def apply(src: Endpoint, snapshot: FreezeSnapshot, grace_seconds: float, progress: Progress) -> dict[str, Any]:
    with connection(src) as conn:
        for row in snapshot.settings:
            conn.execute(set_statement(row, "on"))
        for role in snapshot.logins:
            conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)))
        frozen_at = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    what = "cannot log in" if snapshot.logins else "start read-only"
    progress(f"new sessions on {len(snapshot.databases)} databases of {src.name} now {what}", databases=snapshot.databases,
             no_login=snapshot.logins)
    for db in snapshot.databases:
        with connection(src, db) as conn:
            guards.install_ddl_guard(conn, snapshot.pgmove_role, snapshot.label)
    with connection(src) as conn:
        ended = end_sessions(conn, frozen_at, grace_seconds, progress)
    guarded = 0
    for db in snapshot.databases:
        with connection(src, db) as conn:
            guarded += guards.install_write_guards(conn, [a for a in snapshot.acls if a.database == db])
    progress(f"write guards on {guarded} tables, {len(snapshot.acls)} sequence/large-object privileges revoked")
    progress("a superuser can still override the freeze on purpose (SET session_replication_role, ALTER EVENT TRIGGER)")
    return {"databases": snapshot.databases, "frozen_at": frozen_at.isoformat(), "sessions_ended": ended,
            "mode": snapshot.mode.value, "guarded_tables": guarded, "no_login": snapshot.logins}


def unfreeze(src: Endpoint, snapshot: FreezeSnapshot, progress: Progress) -> dict[str, Any]:
    """Remove the guards and put every recorded setting, login and privilege back exactly."""
    with connection(src) as conn:
        present = set(all_databases(conn))
    removed = 0
    for db in snapshot.databases:
        if db not in present:
            continue  # dropped meanwhile by a superuser: nothing of ours is left in it
        with connection(src, db) as conn:
            removed += guards.remove_guards(conn)
            guards.restore_acls(conn, [a for a in snapshot.acls if a.database == db])
    with connection(src) as conn:
        for row in snapshot.settings:
            if row.database is None or row.database in present:
                conn.execute(set_statement(row, row.value))
        for role in snapshot.logins:
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(role)))
    progress(f"{src.name}: guards removed from {removed} tables; {len(snapshot.settings)} settings, "
             f"{len(snapshot.logins)} logins and {len(snapshot.acls)} privileges restored as recorded at "
             f"{snapshot.taken_at:%H:%M:%S} UTC")
    return {"restored_settings": len(snapshot.settings), "restored_logins": snapshot.logins, "databases": snapshot.databases}
