"""The target's half of the full verification, taken as each table lands while other tables still copy.

Once a table's data and indexes are in, the copy hashes its target side in the cores the copy leaves idle,
smallest tables first (they are done soonest, and cheapest to lose if the copy ends first), beside the
source's sums (steps/prehash.py). Unlike the
source, the target is not frozen: nothing stops a write to it between this hash and the verification. So
the sums are kept with a proof of exactly which row versions they read, and the verification reuses them
only when the proof still holds; otherwise it hashes the table afresh.

The proof: the table's relfilenode, and the count and sum of hashes of (ctid, xmin) over every row version
the hash saw, taken in the same statement (so the same snapshot) as each segment's sums. A row version's
content never changes in place: a committed INSERT, UPDATE or DELETE adds or removes a visible version (a
new version has a new xmin, and takes a free ctid), and whatever rewrites the table (TRUNCATE, a column type
change, VACUUM FULL, TRUNCATE then COPY FREEZE) gives it a new relfilenode. Checking it is one scan of system
columns, no row turned into text. The statistics counters (pg_stat_user_tables) would be cheaper and are no
proof: a backend reports them seconds after its commit, later still while it stays busy, and not at all
with track_counts off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgmove.steps import checksum
from pgmove.steps.connect import Endpoint, ThreadConnections
from pgmove.steps.prehash import TableHashes

_VERSION_HASH = sql.SQL("hashtextextended(t.ctid::text || ':' || t.xmin::text, 0)")


@dataclass(frozen=True)
class Proof:
    filenode: int | None
    versions: int  # row versions visible
    version_sum: int  # sum of their (ctid, xmin) hashes


@dataclass(frozen=True)
class Hashed:
    sums: checksum.TableSums
    proof: Proof


class TargetHashes(TableHashes[Hashed]):
    """Whole-table sums of the target, each with the proof of what it read."""

    side = "target"

    def _read(self, conn: psycopg.Connection[Any], schema: str, name: str) -> Hashed | None:
        plan = checksum.plan_table(conn, schema, name)
        filenode = _filenode(conn, plan)
        rows = total = versions = version_sum = 0
        for piece in checksum.segments(conn, plan):
            if self._finished.is_set():
                return None
            query = sql.SQL("SELECT count(*), coalesce(sum({h}), 0), coalesce(sum({v}), 0) FROM ONLY {t} AS t{w}").format(
                h=checksum.ROW_HASH, v=_VERSION_HASH, t=sql.Identifier(plan.schema, plan.name), w=checksum.within(piece))
            n, h, v = conn.execute(query).fetchone()  # type: ignore[misc]
            rows, total, versions, version_sum = rows + int(n), total + int(h), versions + int(n), version_sum + int(v)
        return Hashed(checksum.TableSums({0: (rows, total)}), Proof(filenode, versions, version_sum))


def proof(conn: psycopg.Connection[Any], plan: checksum.TablePlan) -> Proof:
    """The table's proof now, in one statement."""
    query = sql.SQL("SELECT pg_relation_filenode({r}::regclass), count(*), coalesce(sum({v}), 0) FROM ONLY {t} AS t").format(
        r=sql.Literal(sql.Identifier(plan.schema, plan.name).as_string(conn)), v=_VERSION_HASH,
        t=sql.Identifier(plan.schema, plan.name))
    filenode, versions, version_sum = conn.execute(query).fetchone()  # type: ignore[misc]
    return Proof(None if filenode is None else int(filenode), int(versions), int(version_sum))


def _filenode(conn: psycopg.Connection[Any], plan: checksum.TablePlan) -> int | None:
    row = conn.execute("SELECT pg_relation_filenode(%s::regclass)",
                       (sql.Identifier(plan.schema, plan.name).as_string(conn),)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def target_side(pool: ThreadConnections, ep: Endpoint, database: str, plan: checksum.TablePlan, kept: Hashed,
                outcomes: list[bool]) -> dict[int, tuple[int, int]]:
    """For the verification: the target's sums of this table, reused if the table is provably unchanged since the
    copy hashed it, else read again (appends True to `outcomes` when reused, False when read again)."""
    conn = pool.get(ep, database)
    if proof(conn, plan) == kept.proof:
        outcomes.append(True)
        return dict(kept.sums.chunks)
    outcomes.append(False)
    return checksum.merged([checksum.sums(conn, plan, piece, 1, False) for piece in checksum.segments(conn, plan)]).chunks
