"""Prepared transactions: two-phase commits waiting for their coordinator, held by no session.

One may hold table locks (the write guards could then never go in) or be committed during the
freeze (its rows, or a table it created, landing unguarded). The freeze treats them like sessions
in a transaction: listed, given the grace period, then rolled back, each in its own database.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgmove.steps.connect import Endpoint, connection

_PENDING = """
    SELECT gid, owner, database, extract(epoch FROM now() - prepared)::int, transaction::text
    FROM pg_prepared_xacts ORDER BY prepared
"""


def pending(conn: psycopg.Connection[Any], database: str | None = None) -> list[dict[str, Any]]:
    """Every prepared transaction on the server (or in one database): gid, owner, database, age."""
    rows = conn.execute(_PENDING).fetchall()
    return [{"gid": gid, "owner": owner, "database": db, "age_s": age, "xid": xid}
            for gid, owner, db, age, xid in rows if database is None or db == database]


def describe(xact: dict[str, Any]) -> str:
    return f"{xact['gid']!r} of {xact['owner']} in {xact['database']}, prepared {xact['age_s']}s ago"


def roll_back(src: Endpoint, xact: dict[str, Any]) -> bool:
    """ROLLBACK PREPARED in its own database (the server demands it); False when its coordinator finished it first."""
    with connection(src, xact["database"]) as conn:
        return _roll_back(conn, xact["gid"])


def roll_back_all(conn: psycopg.Connection[Any], database: str, reason: str) -> list[dict[str, Any]]:
    """Roll back whatever is prepared in `database` now (`conn` is connected to it); returns what was."""
    return [{**xact, "reason": reason} for xact in pending(conn, database) if _roll_back(conn, xact["gid"])]


def _roll_back(conn: psycopg.Connection[Any], gid: str) -> bool:
    try:
        conn.execute(sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal(gid)))
    except psycopg.errors.UndefinedObject:
        return False
    return True
