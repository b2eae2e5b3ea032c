"""Inside the write downtime: wait until the target has applied everything the frozen source committed, then
carry what replication does not (sequences, large objects, the tables left out of the publications, matviews).

The wait checks the servers, not a status: the source's WAL insert position after the freeze (L: not
pg_current_wal_lsn, which with asynchronous commit can lie before the last commit's record), the slot's
confirmed_flush_lsn, which the subscriber only moves past a commit once that commit is applied and flushed
on the target, and the target's replication origin, whose last applied source commit must not lie beyond L
(one that does means a write got past the freeze).

The confirmation comes late: the apply worker commits asynchronously and reports a flushed position about
once a second. So the target's own view counts too: its apply worker has taken a keepalive from the WAL
sender at or past L (pg_stat_subscription.latest_end_lsn), which the sender only sends once everything
before it was sent, and the worker applies messages in order. What it applied is then made durable on the
target by one synchronously committed transaction, which flushes the target's WAL up to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.errors import StepFailed
from pgmove.state.replication import SyncSetup
from pgmove.steps import objects, tables
from pgmove.steps.connect import Endpoint, Progress, connection, describe, each_in_parallel

POLL_SECONDS = 0.05

_CONFIRMED = """
    SELECT slot_name, confirmed_flush_lsn >= %s::pg_lsn, pg_wal_lsn_diff(%s::pg_lsn, confirmed_flush_lsn)::bigint
    FROM pg_replication_slots WHERE slot_name = ANY(%s)
"""
_KEEPALIVE_PAST = """
    SELECT s.subname FROM pg_subscription s JOIN pg_stat_subscription w ON w.subid = s.oid AND w.relid IS NULL
    WHERE s.subname = ANY(%s) AND s.subenabled AND w.pid IS NOT NULL AND w.latest_end_lsn >= %s::pg_lsn
"""
_ORIGINS = """
    SELECT s.subname, pg_replication_origin_progress('pg_' || s.oid, true)::text,
           pg_replication_origin_progress('pg_' || s.oid, true) > %s::pg_lsn
    FROM pg_subscription s WHERE s.subname = ANY(%s)
"""


def run(src: Endpoint, dst: Endpoint, setup: SyncSetup, deadline: float, progress: Progress,
        should_stop: Callable[[], bool], durable_lsn: str | None = None) -> dict[str, Any]:
    """`durable_lsn`: the freeze's last durable position (steps/freeze.py), when known. Every commit the freeze let
    through lies before it and it is flushed, so the WAL sender can send up to it at once; the insert position
    read here can hold WAL that no commit flushes on a frozen server for a while."""
    started = time.monotonic()
    slots = {d.slot: d.database for d in setup.databases}
    by_database = {d.database: d.subscription for d in setup.databases}
    subscriptions = set(by_database.values())
    with connection(src) as s, connection(dst) as d:
        position = durable_lsn or str(s.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0])  # type: ignore[index]
        progress(f"draining: waiting until {dst.name} has applied {src.name}'s WAL up to {position}", lsn=position)
        behind: dict[str, int] = {}
        polls = 0
        while True:
            polls += 1
            rows = s.execute(_CONFIRMED, (position, position, list(slots))).fetchall()
            missing = set(slots) - {r[0] for r in rows}
            if missing:
                raise StepFailed(f"the replication slot of {', '.join(slots[m] for m in sorted(missing))} is gone from "
                                 f"{src.name}: the target cannot catch up; unfreeze, abort and sync again")
            behind = {slots[name]: int(gap) for name, done, gap in rows if not done}
            if behind:
                past = {r[0] for r in d.execute(_KEEPALIVE_PAST, (list(subscriptions), position)).fetchall()}
                behind = {db: gap for db, gap in behind.items() if by_database[db] not in past}
                if not behind:
                    _flush(d)
            if not behind:
                break
            if should_stop():
                raise StepFailed("the drain was stopped: the migration moved on")
            if time.monotonic() >= deadline:
                lagging = ", ".join(f"{db} ({gap} bytes behind)" for db, gap in sorted(behind.items()))
                raise StepFailed(f"the drain ran out of time: {dst.name} has not confirmed {src.name}'s WAL up to "
                                 f"{position} for {lagging}; check the subscriptions on {dst.name} (status shows "
                                 "errors), then freeze again", lagging=behind)
            time.sleep(POLL_SECONDS)
        origins = {name: (lsn, beyond) for name, lsn, beyond in
                   d.execute(_ORIGINS, (position, [e.subscription for e in setup.databases])).fetchall()}
    late = [e.database for e in setup.databases if origins.get(e.subscription, (None, False))[1]]
    if late:
        raise StepFailed(f"{dst.name} applied transactions that {src.name} committed after the freeze (in "
                         f"{', '.join(late)}): writes got past the freeze; unfreeze and find out how before retrying")
    seconds = round(time.monotonic() - started, 3)
    progress(f"drained: {dst.name} applied everything up to {position} in {seconds:.2f}s", lsn=position, seconds=seconds)
    return {"lsn": position, "seconds": seconds, "polls": polls,
            "origins": {e.database: origins.get(e.subscription, (None, False))[0] for e in setup.databases}}


def _flush(conn: psycopg.Connection[Any]) -> None:
    """Every applied transaction on disk: a commit that waits for its WAL flush waits for all WAL before it."""
    with conn.transaction():
        conn.execute("SET LOCAL synchronous_commit = on")
        conn.execute("SELECT txid_current()")


def finish(src: Endpoint, dst: Endpoint, setup: SyncSetup, progress: Progress) -> dict[str, Any]:
    """Sequences, large objects, left-out tables and materialized views; returns counts per database."""
    started = time.monotonic()

    def finish_one(db: str) -> dict[str, int]:
        with connection(src, db) as s, connection(dst, db) as d:
            try:
                return _finish_database(s, d, setup, db)
            except psycopg.Error as exc:
                raise StepFailed(f"{db}: finishing on {dst.name} failed: {describe(exc)}", database=db) from None

    names = [entry.database for entry in setup.databases]
    done: list[dict[str, Any]] = []
    for db, counts in zip(names, each_in_parallel(finish_one, names), strict=True):
        done.append({"database": db, **counts})
        progress(f"{db}: {counts['sequences']} sequences set, {counts['large_objects']} large objects and "
                 f"{counts['left_out_tables']} left-out tables copied, {counts['matviews']} materialized views refreshed",
                 database=db, **counts)
    return {"databases": done, "seconds": round(time.monotonic() - started, 3)}


def _finish_database(s: psycopg.Connection[Any], d: psycopg.Connection[Any], setup: SyncSetup, db: str) -> dict[str, int]:
    sequences = objects.copy_sequences(s, d)
    large_objects, lo_bytes = objects.copy_large_objects(s, d)
    kept = [r[0] for r in s.execute("SELECT oid FROM pg_largeobject_metadata").fetchall()]
    for (oid,) in d.execute("SELECT oid FROM pg_largeobject_metadata WHERE NOT oid = ANY(%s)", (kept,)).fetchall():
        d.execute("SELECT pg_catalog.lo_unlink(%s)", (oid,))  # unlinked on the source after sync started
    wanted = {(t.schema_name, t.name) for t in setup.left_out if t.database == db}
    rows = 0
    same_major = s.info.server_version // 10000 == d.info.server_version // 10000
    for table in [t for t in tables.list_tables(s) if (t.schema, t.name) in wanted]:
        rows += _replace_rows(s, d, table, same_major and table.builtin_types)
    matviews = objects.populated_matviews_in_order(s)
    objects.refresh(d, matviews)
    return {"sequences": sequences, "large_objects": large_objects, "large_object_bytes": lo_bytes,
            "left_out_tables": len(wanted), "left_out_rows": rows, "matviews": len(matviews)}


def _replace_rows(s: psycopg.Connection[Any], d: psycopg.Connection[Any], table: tables.Table, binary: bool) -> int:
    """The target's rows replaced by the source's in one transaction. DELETE, not TRUNCATE: a foreign key may
    point at the table, and in replica mode (as the apply worker runs) its checks and user triggers stay quiet."""
    with d.transaction(), d.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")
        cur.execute(sql.SQL("DELETE FROM ONLY {}").format(table.ident))
        with cur.copy(tables.copy_in_sql(table, binary, freeze=False)) as into, s.cursor() as reader, \
                reader.copy(tables.copy_out_sql(tables.Slice(table), binary)) as out:
            for chunk in out:
                into.write(chunk)
        return max(cur.rowcount, 0)
