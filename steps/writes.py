"""Writes seen through transaction ids: a signal no session can turn off, attributed to databases so it does not cry wolf.

Statistics counters stop when a session sets track_counts off; transaction ids do not. Every write
(a row, a large object page, a catalog change) is done by a transaction that takes the server's next
xid. So the freeze's mark records that next xid, and a later check asks:

1. Did the next xid move? If not, nothing wrote anywhere on the server. Done: the common case.
2. Which of the xids since were committed? None: nothing acknowledged. pgmove takes no xid on the source
   between the freeze and the end of verification (dump, copy and checks only read).
3. Look for each committed xid's rows (xmin at or after the mark) in every frozen database: its catalogs,
   pg_largeobject and its tables. A row in a moved database (or a shared catalog) is a write past the
   freeze there, named; rows only in a database that is not moved are a note. Autovacuum's ANALYZE
   commits too, leaving rows only in pg_statistic: such an xid explains itself, but only once no other
   row of it was found (a superuser may write and ANALYZE in one transaction), so the scan always runs
   when something committed. A committed xid with no row anywhere (a DELETE, a sequence advanced) is a
   write we cannot place: it blocks too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pgmove.steps import guards

MAX_LISTED = 200_000  # committed xids looked at one by one; beyond this every xid counts as unexplained

_NEXT_XID = "SELECT txid_snapshot_xmax(txid_current_snapshot())"
_COMMITTED = """
    SELECT x %% 4294967296 FROM generate_series(%(low)s::bigint, %(high)s::bigint - 1) x
    WHERE txid_status(x) = 'committed'
"""
# Relations whose rows carry xmin: every table with storage in this database but pg_statistic (ANALYZE's) and
# pgmove's own schema; the shared catalogs (roles, databases, ...) once, as they are the same from every database.
_RELATIONS = """
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE (c.relkind = 'r' OR c.relkind = 'm' AND c.relispopulated) AND c.relpersistence <> 't'
      AND c.relisshared = %(shared)s
      AND c.oid <> 'pg_catalog.pg_statistic'::regclass AND n.nspname <> %(freeze)s AND n.nspname !~ '^pg_temp'
    ORDER BY n.nspname <> 'pg_catalog', c.relpages, 1, 2
"""


def next_xid(conn: psycopg.Connection[Any]) -> int:
    """The first xid not yet handed out, with its epoch: the mark."""
    return int(conn.execute(_NEXT_XID).fetchone()[0])  # type: ignore[index]


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def since(connect: Callable[[str], Any], mark: int, moved: list[str], frozen: list[str],
          own: frozenset[int] = frozenset()) -> Findings:
    """Writes since `mark` (a next xid): problems name moved databases; `connect(db)` opens a connection.
    `own` are transactions pgmove itself committed since (32-bit xids): not writes past the freeze."""
    found = Findings()
    databases = list(dict.fromkeys([*moved, *frozen]))
    if not databases:
        return found
    with connect(databases[0]) as conn:
        now = next_xid(conn)
        if now == mark:
            return found
        listed = now - mark <= MAX_LISTED
        committed = ({int(r[0]) for r in conn.execute(_COMMITTED, {"low": mark, "high": now}).fetchall()}
                     if listed else set()) - own
    if listed and not committed:
        return found  # aborted or still running: nothing acknowledged
    analyzed: set[int] = set()
    # Autovacuum analyzes template1 and databases nobody moves too: their ANALYZE explains itself as well.
    for db in _connectable(connect, databases[0]) if listed else []:
        with connect(db) as conn:
            analyzed |= _xids(conn, ("pg_catalog", "pg_statistic"), mark)
    placed: set[int] = set()
    for n, db in enumerate(databases):
        with connect(db) as conn:
            for shared, (schema, name), found_xids in _footprints(conn, mark, shared=n == 0):
                xids = found_xids - own
                placed |= xids
                if not xids:
                    continue
                if shared:
                    found.problems.append(f"server-wide catalog {name}: rows written by {len(xids)} transaction(s)")
                elif db in moved:
                    found.problems.append(f"{db}: {schema}.{name}: rows written by {len(xids)} transaction(s)")
                else:
                    found.notes.append(f"{db} (not moved): {schema}.{name}: rows written by {len(xids)} transaction(s)")
    unplaced = committed - placed - analyzed
    if unplaced:
        found.problems.append(f"{len(unplaced)} committed transaction(s) left no row we can place (a DELETE or a "
                              "sequence advanced, say): something wrote past the freeze")
    elif not listed and not found.problems:
        found.problems.append(f"{now - mark} transaction ids were taken on the server since the freeze, too many to "
                              "check one by one, and no row shows where: something wrote past the freeze")
    return found


def _connectable(connect: Callable[[str], Any], any_database: str) -> list[str]:
    with connect(any_database) as conn:
        return [str(r[0]) for r in conn.execute("SELECT datname FROM pg_database WHERE datallowconn ORDER BY 1").fetchall()]


def _footprints(conn: psycopg.Connection[Any], mark: int, shared: bool) -> list[tuple[bool, tuple[str, str], set[int]]]:
    """Relations holding rows written at or after the mark, with those rows' xids."""
    found = []
    for is_shared in ([False, True] if shared else [False]):
        for schema, name in conn.execute(_RELATIONS, {"shared": is_shared, "freeze": guards.SCHEMA}).fetchall():
            xids = _xids(conn, (schema, name), mark)
            if xids:
                found.append((is_shared, (schema, name), xids))
    return found


def _xids(conn: psycopg.Connection[Any], relation: tuple[str, str], mark: int) -> set[int]:
    """The distinct xmins at or after the mark in one relation (age() counts back from the next xid: wrap-safe)."""
    query = sql.SQL("SELECT DISTINCT xmin::text::bigint FROM ONLY {} WHERE age(xmin) <= age(%s::text::xid)").format(
        sql.Identifier(*relation))
    return {int(r[0]) for r in conn.execute(query, (str(mark % 4294967296),)).fetchall()}
