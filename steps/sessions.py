"""Ending sessions around a freeze: idle ones at once, busy ones (and prepared transactions) after a grace period.

Before the freeze, those that predate it (they are not read-only); after it, those it made read-only for good."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import psycopg

from pgmove.steps import prepared
from pgmove.steps.connect import Endpoint, Progress, end_backends, idle_pids

_IN_TRANSACTION = ("idle in transaction", "idle in transaction (aborted)", "active", "fastpath function call")


_SESSIONS = """
    SELECT pid, usename, application_name, host(client_addr), state, datname,
           extract(epoch FROM now() - backend_start)::int, extract(epoch FROM now() - xact_start)::int
    FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND """


def end_sessions(
    src: Endpoint, conn: psycopg.Connection[Any], born_before: datetime, grace_seconds: float, progress: Progress,
    poll: float = 0.2,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Only sessions that started before the freeze matter: later ones start read-only and guarded.
    Every prepared transaction matters: it has no session to end, and may be committed at any time.
    Returns the sessions ended and the prepared transactions rolled back.

    The report says who, from where, in which state and for how long; never what they were running
    (query text can hold personal data and literals).
    """
    # The step's own idle sessions (kept for reuse) predate the freeze too; they are pgmove's, not the app's.
    return _end(src, conn, _SESSIONS + "backend_start < %s AND NOT pid = ANY(%s)", (born_before, idle_pids(src)), True,
                grace_seconds, progress, poll)


def end_sessions_born_read_only(
    src: Endpoint, conn: psycopg.Connection[Any], born_since: datetime, born_before: datetime, databases: list[str],
    spare_application: str, grace_seconds: float, progress: Progress, poll: float = 0.2,
) -> list[dict[str, Any]]:
    """After a read-only freeze: a session keeps the defaults it started with, so one opened during the freeze
    refuses every write for good (a pooler's server connection, say). Idle ones end at once; one in a transaction
    gets the grace period to finish (it is read-only: it has nothing to lose but its session), then ends too.
    A client or pooler reconnects writable. Born between the freeze's record and the lifting of the read-only
    default (`born_before`, the server's clock); pgmove's own sessions are spared.
    """
    # A session holding a transaction id has written: it was never read-only (a freeze undone before its guards).
    where = ("backend_start >= %s AND backend_start < %s AND backend_xid IS NULL AND datname = ANY(%s) "
             "AND application_name <> %s AND usename <> current_user")
    ended, _ = _end(src, conn, _SESSIONS + where, (born_since, born_before, databases, spare_application), False,
                    grace_seconds,
                    progress, poll)
    return ended


def _end(
    src: Endpoint, conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...], prepared_too: bool,
    grace_seconds: float, progress: Progress, poll: float,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    deadline = time.monotonic() + grace_seconds
    ended: list[dict[str, Any]] = []
    rolled_back: list[dict[str, Any]] = []
    announced_wait = announced_prepared = False
    while True:
        conn.execute("SELECT pg_stat_clear_snapshot()")  # each poll must see fresh activity, not a cached view
        sessions = conn.execute(query, params).fetchall()
        xacts = prepared.pending(conn) if prepared_too else []
        if not sessions and not xacts:
            return ended, rolled_back
        overdue = time.monotonic() >= deadline
        if xacts and not overdue and not announced_prepared:
            progress(f"{len(xacts)} prepared transaction(s) get {grace_seconds:g}s to be committed or rolled back by "
                     f"their coordinator: " + "; ".join(prepared.describe(x) for x in xacts), prepared=xacts)
            announced_prepared = True
        for xact in xacts if overdue else []:
            if prepared.roll_back(src, xact):
                xact = {**xact, "reason": f"still prepared after the {grace_seconds:g}s grace period"}
                rolled_back.append(xact)
                progress(f"rolled back prepared transaction {prepared.describe(xact)}: {xact['reason']}",
                         prepared_transaction=xact)
        waiting, ending = [], []
        for pid, role, app, addr, state, db, age, xact_age in sessions:
            busy = state in _IN_TRANSACTION
            if busy and not overdue:
                waiting.append(pid)
                continue
            reason = "idle" if not busy else f"still {state} after the {grace_seconds:g}s grace period"
            ending.append({"pid": pid, "role": role, "application": app or "", "client": addr or "local",
                           "database": db, "state": state, "session_age_s": age, "transaction_age_s": xact_age,
                           "reason": reason})
        gone = end_backends(conn, [s["pid"] for s in ending])
        for session in (s for s in ending if s["pid"] in gone):
            ended.append(session)
            who = session["application"] or "no application name"
            progress(f"ended session {session['pid']} of {session['role']} ({who}, {session['client']}, "
                     f"{session['database']}, {session['state']}): {session['reason']}", session=session)
        if waiting and not announced_wait:
            progress(f"{len(waiting)} session(s) in a transaction get {grace_seconds:g}s to finish", pids=waiting)
            announced_wait = True
        time.sleep(poll)
