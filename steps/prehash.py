"""The source's half of the full verification, taken while the copy runs.

The source is frozen for the whole copy, and proven quiet after it and again at verification (transaction
ids, counters, databases and roles: steps/quiet.py), so its rows hashed during the copy are its rows at
verification. The copy hands these hashes to the pool at the lowest priority: they fill the cores the copy
leaves idle (its index builds and post-data tails) and never hold back a table's data. Whatever is not
hashed when the copy's last database is finished is left to the verification, which then reads only the
target's side of every table hashed here: the target is read fresh, as it must be, since nothing froze it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg

from pgmove.steps import checksum
from pgmove.steps.connect import Endpoint, ThreadConnections

log = logging.getLogger("pgmove.steps")


def verification_session(conn: psycopg.Connection[Any]) -> None:
    """Both sides of a comparison hash rows as text under the same settings: read-only, pgmove's own session."""
    conn.execute("SET default_transaction_read_only = on")


class SourceHashes:
    """Whole-table sums of the source, per (database, schema.table), for the verification that follows the copy."""

    def __init__(self, source: Endpoint) -> None:
        self.source = source
        self._sums: dict[tuple[str, str], checksum.TableSums] = {}
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._sessions = ThreadConnections(verification_session)

    def hash_table(self, database: str, schema: str, name: str) -> None:
        """Hash one source table, unless the copy has finished meanwhile. Never fails the copy: a table that
        could not be hashed here is hashed by the verification, like one the copy had no idle core for."""
        try:
            self._hash(database, schema, name)
        except psycopg.Error:
            log.warning("could not hash %s.%s in %s during the copy; the verification will", schema, name, database,
                        exc_info=True)

    def _hash(self, database: str, schema: str, name: str) -> None:
        if self._finished.is_set():
            return
        conn = self._sessions.get(self.source, database)
        plan = checksum.plan_table(conn, schema, name)
        parts = []
        for piece in checksum.segments(conn, plan):
            if self._finished.is_set():
                return
            parts.append(checksum.sums(conn, plan, piece, 1, False))
        with self._lock:
            self._sums[(database, plan.label)] = checksum.merged(parts)

    def finish(self) -> None:
        """The copy's last database is in: hashing stops at the next segment, so it never delays the copy."""
        self._finished.set()

    def close(self) -> None:
        """Once the pool has stopped (no hashing runs): end the sessions."""
        self._finished.set()
        self._sessions.close()

    def get(self, database: str, label: str) -> checksum.TableSums | None:
        with self._lock:
            return self._sums.get((database, label))

    def __len__(self) -> int:
        with self._lock:
            return len(self._sums)
