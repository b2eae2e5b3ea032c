"""The quiet check: proof that nothing wrote to a frozen source between two moments.

Three signals, taken when the freeze holds and compared later:
- per database, what a write would move: the write counters of every user table, every sequence's
  position, and every large object's pages (their xmin: a write through any function, a SECURITY
  DEFINER one included, makes new page versions);
- the server's next transaction id (steps/writes.py): no session can turn it off, unlike track_counts,
  and it is attributed to databases so autovacuum or an unmoved database's activity does not block;
- the server's databases and roles (steps/shared.py): created, dropped or changed during the freeze.
Equal signals mean the copy holds every write the source acknowledged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgmove.state.models import QuietMark
from pgmove.steps import shared, writes
from pgmove.steps.connect import Endpoint, connection, each_in_parallel

_TABLE_COUNTERS = """
    SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0), coalesce(sum(n_tup_del), 0), count(*)
    FROM pg_stat_user_tables
"""
_SEQUENCES = "SELECT schemaname, sequencename, last_value FROM pg_sequences ORDER BY 1, 2"
_LARGE_OBJECTS = """
    SELECT (SELECT count(*) FROM pg_largeobject_metadata),
           (SELECT coalesce(sum(hashtextextended(oid::text || ':' || xmin::text, 0)), 0) FROM pg_largeobject_metadata),
           (SELECT count(*) FROM pg_largeobject),
           (SELECT coalesce(sum(hashtextextended(loid::text || ':' || pageno || ':' || xmin::text, 0)), 0)
            FROM pg_largeobject)
"""


def fingerprint(ep: Endpoint, databases: list[str]) -> dict[str, str]:
    def one(name: str) -> str:
        with connection(ep, name) as conn:
            return _one(conn)

    return dict(zip(databases, each_in_parallel(one, databases), strict=True))


def _one(conn: psycopg.Connection[Any]) -> str:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    parts = [repr(conn.execute(_TABLE_COUNTERS).fetchone()), repr(conn.execute(_SEQUENCES).fetchall()),
             repr(conn.execute(_LARGE_OBJECTS).fetchone())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Databases whose fingerprint moved (a database that appeared or vanished counts as moved)."""
    return sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))


def mark(ep: Endpoint, with_passwords: bool) -> QuietMark:
    """The server-wide signals, taken once the freeze holds."""
    with connection(ep) as conn:
        return QuietMark(next_xid=writes.next_xid(conn), shared=shared.record(conn, with_passwords),
                         with_passwords=with_passwords)


def server_changes(ep: Endpoint, since: QuietMark, moved: list[str], frozen: list[str],
                   own: frozenset[int] = frozenset()) -> writes.Findings:
    """Databases and roles changed, and writes seen through transaction ids, since the mark (`own`: pgmove's)."""
    with connection(ep) as conn:
        now = shared.record(conn, since.with_passwords)
    found = writes.since(lambda db: connection(ep, db), since.next_xid, moved, frozen, own)
    found.problems = [f"during the freeze, {c}" for c in shared.changes(since.shared, now)] + found.problems
    return found


@dataclass
class Check:
    """What the quiet check saw: what moved since the freeze (empty: quiet), notes, and the fingerprints now."""

    problems: list[str]
    notes: list[str] = field(default_factory=list)
    now_seen: dict[str, str] = field(default_factory=dict)


def check(ep: Endpoint, baseline: dict[str, str], since: QuietMark | None, moving: list[str],
          own: frozenset[int] = frozenset()) -> Check:
    """Every signal against the freeze's baseline; a database dropped meanwhile is a finding, not a crash."""
    with connection(ep) as conn:
        present = {str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
    now_seen = fingerprint(ep, [db for db in baseline if db in present])
    problems = [f"{db}: its tables' write counters, sequences or large objects changed" if db in now_seen
                else f"database {db} is gone" for db in changed(baseline, now_seen)]
    notes: list[str] = []
    if since is not None:
        found = server_changes(ep, since, [db for db in moving if db in present], list(now_seen), own)
        problems += found.problems
        notes = found.notes
    return Check(problems, notes, now_seen)
