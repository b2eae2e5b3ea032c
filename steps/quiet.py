"""The quiet check: proof that nothing wrote to a frozen source between two moments.

A fingerprint per database of what a write would move: the write counters of every user table
(inserted, updated, deleted rows) and every sequence's position. Equal fingerprints before and after
the dump mean the copy holds every write the source acknowledged.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg

from steps.connect import Endpoint, connection

_TABLE_COUNTERS = """
    SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0), coalesce(sum(n_tup_del), 0), count(*)
    FROM pg_stat_user_tables
"""
_SEQUENCES = "SELECT schemaname, sequencename, last_value FROM pg_sequences ORDER BY 1, 2"
_LARGE_OBJECTS = "SELECT count(*) FROM pg_largeobject_metadata"


def fingerprint(ep: Endpoint, databases: list[str]) -> dict[str, str]:
    found = {}
    for name in databases:
        with connection(ep, name) as conn:
            found[name] = _one(conn)
    return found


def _one(conn: psycopg.Connection[Any]) -> str:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    parts = [repr(conn.execute(_TABLE_COUNTERS).fetchone()), repr(conn.execute(_SEQUENCES).fetchall()),
             repr(conn.execute(_LARGE_OBJECTS).fetchone())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Databases whose fingerprint moved (a database that appeared or vanished counts as moved)."""
    return sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))
