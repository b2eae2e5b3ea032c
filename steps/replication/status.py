"""How far each subscription is behind, read from both servers, and what blocks the freeze (each says what to do).

Lag in bytes is the source's WAL position minus what the subscriber has applied: the slot's confirmed_flush_lsn,
or, when further, the last keepalive its apply worker took from the WAL sender (sent once everything before it
was; a database with nothing to apply confirms only about once a second, and would look behind by other
databases' WAL meanwhile). Retained WAL is what the slot still holds (from restart_lsn). DDL drift compares the source's table shapes with
the target's, so it clears once the same change is made on the target.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.replication import DatabaseLag, SyncDatabase, SyncSetup, SyncStatus
from pgmove.steps.connect import Endpoint, connection
from pgmove.steps.replication import published

_SLOTS = """
    SELECT s.slot_name, pg_current_wal_insert_lsn()::text, s.confirmed_flush_lsn::text,
           pg_wal_lsn_diff(pg_current_wal_insert_lsn(), s.restart_lsn)::bigint,
           (SELECT extract(epoch FROM r.replay_lag)::float8 FROM pg_stat_replication r WHERE r.pid = s.active_pid)
    FROM pg_replication_slots s WHERE s.slot_name = ANY(%s)
"""
_SUBSCRIPTIONS = """
    SELECT s.subname, s.oid::bigint, s.subenabled,
           EXISTS (SELECT 1 FROM pg_stat_subscription w WHERE w.subid = s.oid AND w.relid IS NULL AND w.pid IS NOT NULL),
           (SELECT max(w.latest_end_lsn)::text FROM pg_stat_subscription w
            WHERE w.subid = s.oid AND w.relid IS NULL AND w.pid IS NOT NULL)
    FROM pg_subscription s WHERE s.subname = ANY(%s)
"""
_CONFLICTS = ("confl_insert_exists", "confl_update_origin_differs", "confl_update_exists", "confl_update_missing",
              "confl_delete_origin_differs", "confl_delete_missing", "confl_multiple_unique_conflicts")


# Until the cutover the target refuses every session's writes and DDL but pgmove's (steps/replication/targetguard.py):
# what the advice asks of a person on the target takes the override the apply workers run with.
_OVERRIDE = " (as a superuser, after SET session_replication_role = replica: {} refuses other writes until the cutover)"

def read(src: Endpoint, dst: Endpoint, setup: SyncSetup, *, max_retained_wal_bytes: int) -> SyncStatus:
    status = SyncStatus(at=datetime.now(UTC))
    names = [d.slot for d in setup.databases]
    with connection(src) as conn:
        slots = {r[0]: r[1:] for r in conn.execute(_SLOTS, (names,)).fetchall()}
    with connection(dst) as conn:
        subs = {r[0]: r[1:] for r in conn.execute(_SUBSCRIPTIONS, ([d.subscription for d in setup.databases],)).fetchall()}
        errors = _errors(conn)
    for entry in setup.databases:
        status.databases.append(_database(src, dst, entry, slots, subs, errors, max_retained_wal_bytes, status.problems))
    return status


def _errors(conn: psycopg.Connection[Any]) -> dict[int, dict[str, int]]:
    """subscription oid -> apply/sync error counts, and conflict counts where the server keeps them (18+)."""
    have = {r[0] for r in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = "
                                        "'pg_catalog.pg_stat_subscription_stats'::regclass AND attnum > 0").fetchall()}
    columns = ["apply_error_count", "sync_error_count", *[c for c in _CONFLICTS if c in have]]
    rows = conn.execute(sql.SQL("SELECT subid::bigint, {} FROM pg_catalog.pg_stat_subscription_stats").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)))).fetchall()
    return {int(r[0]): dict(zip(columns, map(int, r[1:]), strict=True)) for r in rows}


def _database(src: Endpoint, dst: Endpoint, entry: SyncDatabase, slots: dict[str, Any], subs: dict[str, Any],
              errors: dict[int, dict[str, int]], max_retained: int, problems: list[str]) -> DatabaseLag:
    db = entry.database
    position, confirmed, retained, replay = slots.get(entry.slot, (None, None, 0, None))
    oid, enabled, worker, keepalive = subs.get(entry.subscription, (None, False, False, None))
    applied = max((_lsn(x) for x in (confirmed, keepalive) if x), default=None)
    lag = _lsn(position) - applied if position and applied is not None else 0
    total = ready = 0
    drift: list[str] = []
    if oid is not None:
        with connection(dst, db) as conn:
            total, ready = conn.execute("SELECT count(*), count(*) FILTER (WHERE srsubstate = 'r') "
                                        "FROM pg_subscription_rel WHERE srsubid = %s", (oid,)).fetchone()  # type: ignore[misc]
            target_shape = published.shape(conn)
        with connection(src, db) as conn:
            source_shape = published.shape(conn)
        drift = [f"{t}: {_describe(source_shape.get(t), target_shape.get(t))}"
                 for t in sorted(set(source_shape) | set(target_shape)) if source_shape.get(t) != target_shape.get(t)]
    counts = errors.get(oid or -1, {})
    failed = counts.get("apply_error_count", 0) + counts.get("sync_error_count", 0)
    conflicts = ", ".join(f"{k.removeprefix('confl_')} {v}" for k, v in counts.items() if k.startswith("confl_") and v)
    last_error = (f"{failed} apply/sync error(s)" + (f" (conflicts: {conflicts})" if conflicts else "")) if failed else None
    if entry.slot not in slots:
        problems.append(f"{db}: replication slot {entry.slot} is missing on {src.name}, so nothing more can be replicated: "
                        "abort and sync again")
    if oid is None:
        problems.append(f"{db}: subscription {entry.subscription} is missing on {dst.name}: abort and sync again")
    elif not enabled:
        problems.append(f"{db}: subscription {entry.subscription} on {dst.name} is disabled, nothing is applied: find why "
                        f"in {dst.name}'s server log, fix it, then ALTER SUBSCRIPTION {entry.subscription} ENABLE in "
                        f"database {db} on {dst.name}{_OVERRIDE.format(dst.name)}")
    elif failed and (lag > 0 or ready < total or not worker):
        problems.append(f"{db}: the apply worker on {dst.name} keeps failing ({last_error}); its error is in {dst.name}'s "
                        f"server log. Usually a row on {dst.name} has the key of a row arriving from {src.name}: remove "
                        f"or fix that row on the target{_OVERRIDE.format(dst.name)} and replication resumes by itself "
                        f"(then clear the count with SELECT pg_stat_reset_subscription_stats({oid}) in database {db} "
                        f"on {dst.name})")
    if drift:
        problems.append(f"{db}: the schema changed on {src.name} since sync started and replication does not carry schema "
                        f"changes ({'; '.join(drift[:3])}{'; ...' if len(drift) > 3 else ''}): make the same change on "
                        f"{dst.name} in database {db}{_OVERRIDE.format(dst.name)}, and replication carries on")
    if retained > max_retained:
        problems.append(f"{db}: slot {entry.slot} holds {retained / 1e6:.0f} MB of WAL on {src.name} (limit "
                        f"{max_retained / 1e6:.0f} MB): the target is not keeping up or replication is stuck; fix that "
                        "or abort (which drops the slot and frees the WAL)")
    seconds = 0.0 if lag <= 0 else (float(replay) if replay is not None else None)
    return DatabaseLag(database=db, lag_bytes=max(int(lag), 0), lag_seconds=seconds, retained_wal_bytes=int(retained),
                       tables_total=int(total), tables_ready=int(ready), apply_errors=failed, last_error=last_error)


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def _describe(source: str | None, target: str | None) -> str:
    if target is None:
        return f"only on the source ({source})"
    if source is None:
        return "gone from the source"
    return f"source has ({source}), target has ({target})"

