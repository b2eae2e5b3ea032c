"""Ending the sessions that predate a freeze: idle ones at once, busy ones after a grace period."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import psycopg

from steps.connect import Progress

_IN_TRANSACTION = ("idle in transaction", "idle in transaction (aborted)", "active", "fastpath function call")


def end_sessions(
    conn: psycopg.Connection[Any], born_before: datetime, grace_seconds: float, progress: Progress, poll: float = 0.2
) -> list[dict[str, Any]]:
    """Only sessions that started before the freeze matter: later ones start read-only and guarded.

    The report says who, from where, in which state and for how long; never what they were running
    (query text can hold personal data and literals).
    """
    deadline = time.monotonic() + grace_seconds
    ended: list[dict[str, Any]] = []
    announced_wait = False
    while True:
        conn.execute("SELECT pg_stat_clear_snapshot()")  # each poll must see fresh activity, not a cached view
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
                progress(f"ended session {pid} of {role} ({app or 'no application name'}, {addr or 'local'}, "
                         f"{db}, {state}): {reason}", session=session)
        if waiting and not announced_wait:
            progress(f"{len(waiting)} session(s) in a transaction get {grace_seconds:g}s to finish", pids=waiting)
            announced_wait = True
        time.sleep(poll)
