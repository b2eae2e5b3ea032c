"""The source's half of the full verification, taken while the copy runs.

The source is frozen for the whole copy, and proven quiet after it and again at verification (transaction
ids, counters, databases and roles: steps/quiet.py), so its rows hashed during the copy are its rows at
verification. The copy hands these hashes to the pool at the lowest priority: they fill the cores the copy
leaves idle (its index builds and post-data tails) and never hold back a table's data. Whatever is not
hashed when the copy's last database is finished is left to the verification, which then reads only the
target's side of every table hashed here. The target is not frozen: its side, hashed as each table lands, is
reused only with a proof that the table has not changed since (steps/targethash.py).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Generic, TypeVar

import psycopg
from psycopg import sql

from pgmove.steps import checksum
from pgmove.steps.connect import Endpoint, ThreadConnections

log = logging.getLogger("pgmove.steps")
T = TypeVar("T")

# Rows are hashed as text, and the text of a date, an interval, a float, a timestamptz, a bytea, money or a reg*
# value depends on these: each server, role and database may set them otherwise, and sums taken in the copy's
# idle time are compared with sums taken later in other sessions. So every verification session pins them.
PINNED = {"DateStyle": "ISO, MDY", "IntervalStyle": "postgres", "extra_float_digits": "1", "TimeZone": "UTC",
          "bytea_output": "hex", "lc_monetary": "C", "search_path": ""}


def verification_session(conn: psycopg.Connection[Any]) -> None:
    """Both sides of a comparison hash rows as text under the same settings: read-only, pgmove's own session."""
    settings = {"default_transaction_read_only": "on", **PINNED}
    # One round trip: a verification opens (or takes) a session per thread and database, often inside a window.
    calls = sql.SQL(", ").join([sql.SQL("pg_catalog.set_config(%s, %s, false)")] * len(settings))
    conn.execute(sql.SQL("SELECT {}").format(calls), [part for pair in settings.items() for part in pair])


class TableHashes(Generic[T]):
    """What the copy's idle cores hashed of one side, per (database, schema, table), for the verification after it."""

    side = "source"

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._sums: dict[tuple[str, str, str], T] = {}  # (database, schema, table)
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._sessions = ThreadConnections(verification_session)

    def hash_table(self, database: str, schema: str, name: str) -> None:
        """Hash one table, unless the copy has finished meanwhile. Never fails the copy: a table that could not
        be hashed here is hashed by the verification, like one the copy had no idle core for."""
        if self._finished.is_set():
            return
        try:
            found = self._read(self._sessions.get(self.endpoint, database), schema, name)
        except psycopg.Error:
            log.warning("could not hash %s.%s in %s on the %s during the copy; the verification will", schema, name,
                        database, self.side, exc_info=True)
            return
        if found is not None:
            with self._lock:
                self._sums[(database, schema, name)] = found

    def _read(self, conn: psycopg.Connection[Any], schema: str, name: str) -> T | None:
        raise NotImplementedError

    def finish(self) -> None:
        """The copy's last database is in: hashing stops at the next segment, so it never delays the copy."""
        self._finished.set()

    def close(self) -> None:
        """Once the pool has stopped (no hashing runs): end the sessions."""
        self._finished.set()
        self._sessions.close()

    def get(self, database: str, schema: str, name: str) -> T | None:
        with self._lock:
            return self._sums.get((database, schema, name))

    def __len__(self) -> int:
        with self._lock:
            return len(self._sums)


class SourceHashes(TableHashes[checksum.TableSums]):
    """Whole-table sums of the frozen source."""

    def __init__(self, source: Endpoint) -> None:
        super().__init__(source)
        self.source = source

    def _read(self, conn: psycopg.Connection[Any], schema: str, name: str) -> checksum.TableSums | None:
        plan = checksum.plan_table(conn, schema, name)
        parts = []
        for piece in checksum.segments(conn, plan):
            if self._finished.is_set():
                return None
            parts.append(checksum.sums(conn, plan, piece, 1, False))
        return checksum.merged(parts)
