"""Reads both servers after a cutover: the target's activity, and who is still arriving at the old server.

The target: pg_stat_database's commits, rollbacks, deadlocks and temporary files per database, and the app roles'
sessions in pg_stat_activity. The old server (still frozen, read-only by default): every session that is not
pgmove's, by role, application and address; a client the read-only freeze refuses still logs in, so it shows
there while it is connected, and pg_stat_database's `sessions` (PostgreSQL 14+) counts the ones too brief to see.
pgmove's sessions are told apart by the application name pgmove gives every one of its sessions (and this
reading's by its pid), never by role: an app that logs in with pgmove's role is still a client not switched.
At the end, the fullest sequences of every target database. Each reading is one short session and transaction
per server, in the endpoint's database: the reading says where, so the watch takes those out of the counts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from pgmove.state.errors import PgmoveError
from pgmove.state.watch import DbCounters, OldClient, Reading, SequenceRoom
from pgmove.steps.connect import APPLICATION_NAME, Endpoint, connection, describe
from pgmove.steps.freeze import all_databases

# `sessions` is read through to_jsonb so one query serves servers before 14 (the column is missing: NULL).
_COUNTERS = """
    SELECT d.datname, d.xact_commit, d.xact_rollback, d.deadlocks, d.temp_files, d.temp_bytes,
           (to_jsonb(d) ->> 'sessions')::bigint
    FROM pg_stat_database d JOIN pg_database db ON db.oid = d.datid
    WHERE NOT db.datistemplate
"""
_APP_CONNECTIONS = """
    SELECT usename, count(*) FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND usename = ANY(%(roles)s) AND pid <> pg_backend_pid()
      AND application_name IS DISTINCT FROM %(pgmove)s GROUP BY 1
"""
_CLIENTS = """
    SELECT usename, coalesce(application_name, ''), coalesce(host(client_addr), 'the local socket'),
           coalesce(datname, ''), count(*)
    FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name IS DISTINCT FROM %s
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
"""
_SEQUENCES = """
    SELECT schemaname || '.' || sequencename,
           CASE WHEN increment_by > 0 THEN (last_value - min_value)::numeric / nullif(max_value - min_value, 0)
                ELSE (max_value - last_value)::numeric / nullif(max_value - min_value, 0) END AS used
    FROM pg_sequences WHERE last_value IS NOT NULL AND NOT cycle ORDER BY used DESC NULLS LAST LIMIT %s
"""


def read(target: Endpoint, source: Endpoint, app_roles: list[str], at: datetime | None = None) -> Reading:
    """One reading of both servers, dated `at` (the scheduler's clock); a server that cannot be read is a problem
    on the reading, not a failure."""
    reading = Reading(at=at or datetime.now(UTC))
    # A side's counters go on the reading only once all of its reading succeeded: the watch takes a side with
    # counters as read (a baseline, say), and half a reading is not one.
    try:
        with connection(target) as conn, conn.transaction():
            counters = _counters(conn)
            apps = {role: 0 for role in app_roles} | {str(r): int(n) for r, n in conn.execute(
                _APP_CONNECTIONS, {"roles": app_roles, "pgmove": APPLICATION_NAME}).fetchall()}
            db = str(conn.info.dbname)
        reading.target, reading.app_connections = counters, apps
        reading.own["target"] = db  # committed: counted in that database from the next reading on
    except (PgmoveError, psycopg.Error) as exc:
        reading.problems.append(f"{target.name}: {_why(exc)}")
    try:
        with connection(source) as conn, conn.transaction():
            counters = _counters(conn)
            clients = [OldClient(role=str(role), application=str(app), address=str(addr), database=str(db),
                                 seen=int(n), first_seen=reading.at, last_seen=reading.at)
                       for role, app, addr, db, n in conn.execute(_CLIENTS, (APPLICATION_NAME,)).fetchall()]
            db = str(conn.info.dbname)
        reading.source, reading.clients = counters, clients
        reading.own["source"] = db
    except (PgmoveError, psycopg.Error) as exc:
        reading.problems.append(f"{source.name}: {_why(exc)}")
    return reading


def fullest_sequences(target: Endpoint, limit: int = 3) -> tuple[list[SequenceRoom], list[str]]:
    """The `limit` sequences closest to the end of their range, over every database of the target."""
    found: list[SequenceRoom] = []
    problems: list[str] = []
    try:
        with connection(target) as conn:
            databases = all_databases(conn)
        for db in databases:
            with connection(target, db) as conn:
                found += [SequenceRoom(database=db, name=str(name), used=float(used or 0))
                          for name, used in conn.execute(_SEQUENCES, (limit,)).fetchall()]
    except (PgmoveError, psycopg.Error) as exc:
        problems.append(f"{target.name} sequences: {_why(exc)}")
    return sorted(found, key=lambda s: -s.used)[:limit], problems


def _counters(conn: psycopg.Connection[Any]) -> dict[str, DbCounters]:
    return {str(db): DbCounters(commits=c, rollbacks=r, deadlocks=d, temp_files=f, temp_bytes=b, sessions=s)
            for db, c, r, d, f, b, s in conn.execute(_COUNTERS).fetchall()}


def _why(exc: BaseException) -> str:
    return exc.message if isinstance(exc, PgmoveError) else describe(exc)
