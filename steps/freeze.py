"""Freeze (new sessions read-only on every database, existing sessions ended gracefully) and exact unfreeze."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from state.models import FreezeSnapshot, SettingRow
from steps.connect import Endpoint, Progress, connection
from steps.settings import read_settings, set_statement

READ_ONLY = "default_transaction_read_only"
_IN_TRANSACTION = ("idle in transaction", "idle in transaction (aborted)", "active", "fastpath function call")


def all_databases(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname")
    return [r[0] for r in rows.fetchall()]


def capture(src: Endpoint) -> FreezeSnapshot:
    """Record what the freeze will change, before changing anything (persisted by the caller first)."""
    with connection(src) as conn:
        databases = all_databases(conn)
        existing = {(s.database, s.role): s.value for s in read_settings(conn) if s.name == READ_ONLY}
    rows = [SettingRow(database=None, role=None, name=READ_ONLY, value=existing.get((None, None)))]
    rows += [SettingRow(database=db, role=None, name=READ_ONLY, value=existing.get((db, None))) for db in databases]
    # A role-level "off" outranks the database default: the freeze must override those too.
    rows += [
        SettingRow(database=db, role=role, name=READ_ONLY, value=value)
        for (db, role), value in sorted(existing.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or ""))
        if role is not None
    ]
    return FreezeSnapshot(taken_at=datetime.now(UTC), databases=databases, settings=rows)


def apply(src: Endpoint, snapshot: FreezeSnapshot, grace_seconds: float, progress: Progress) -> dict[str, Any]:
    """Make new sessions read-only everywhere, then end the sessions that started before (safe to repeat)."""
    with connection(src) as conn:
        for row in snapshot.settings:
            conn.execute(set_statement(row, "on"))
        frozen_at = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        progress(f"new sessions on {len(snapshot.databases)} databases of {src.name} now start read-only",
                 databases=snapshot.databases)
        ended = end_sessions(conn, frozen_at, grace_seconds, progress)
    return {"databases": snapshot.databases, "frozen_at": frozen_at.isoformat(), "sessions_ended": ended}


def end_sessions(
    conn: psycopg.Connection[Any], born_before: datetime, grace_seconds: float, progress: Progress, poll: float = 0.2
) -> list[dict[str, Any]]:
    """Idle sessions go at once; sessions in a transaction get the grace period, then go too.

    Only sessions that started before the freeze matter: later ones already start read-only.
    """
    deadline = time.monotonic() + grace_seconds
    ended: list[dict[str, Any]] = []
    announced_wait = False
    while True:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        sessions = conn.execute(
            """
            SELECT pid, usename, application_name, host(client_addr), state, datname,
                   extract(epoch FROM now() - backend_start)::int, extract(epoch FROM now() - xact_start)::int
            FROM pg_stat_activity
            WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND backend_start < %s
            """,
            (born_before,),
        ).fetchall()
        if not sessions:
            return ended
        overdue = time.monotonic() >= deadline
        waiting = []
        for pid, role, app, addr, state, db, age, xact_age in sessions:
            busy = state in _IN_TRANSACTION
            if busy and not overdue:
                waiting.append(pid)
                continue
            reason = "idle" if not busy else f"still {state} after the {grace_seconds:g}s grace period"
            if conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]:  # type: ignore[index]
                session = {"pid": pid, "role": role, "application": app or "", "client": addr or "local",
                           "database": db, "state": state, "session_age_s": age, "transaction_age_s": xact_age,
                           "reason": reason}
                ended.append(session)
                progress(f"ended session {pid} of {role} ({app or 'no application name'}, {addr or 'local'}, {state}): {reason}",
                         session=session)
        if waiting and not announced_wait:
            progress(f"{len(waiting)} session(s) in a transaction get {grace_seconds:g}s to finish", pids=waiting)
            announced_wait = True
        time.sleep(poll)


def unfreeze(src: Endpoint, snapshot: FreezeSnapshot, progress: Progress) -> dict[str, Any]:
    """Put every setting the freeze touched back to its recorded value (or absence)."""
    with connection(src) as conn:
        for row in snapshot.settings:
            conn.execute(set_statement(row, row.value))
    progress(f"{src.name}: {len(snapshot.settings)} settings restored as recorded at {snapshot.taken_at:%H:%M:%S} UTC")
    return {"restored": len(snapshot.settings), "databases": snapshot.databases}
