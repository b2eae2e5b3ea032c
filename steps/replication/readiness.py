"""Can these two servers move by logical replication, and what will it not carry? Read-only on both sides."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg

from pgmove.state.replication import LogicalReadiness
from pgmove.steps.connect import Endpoint, connection, server_major
from pgmove.steps.replication import published

_SOURCE_SETTINGS = ("wal_level", "max_replication_slots", "max_wal_senders", "max_slot_wal_keep_size",
                    "max_worker_processes")
_TARGET_SETTINGS = ("max_replication_slots", "max_logical_replication_workers", "max_worker_processes",
                    "max_sync_workers_per_subscription", "max_active_replication_origins")


def _settings(conn: psycopg.Connection[Any], names: tuple[str, ...]) -> dict[str, str]:
    rows = conn.execute("SELECT name, setting, coalesce(unit, '') FROM pg_settings WHERE name = ANY(%s)",
                        (list(names),)).fetchall()
    return {name: setting + (unit if unit and unit not in ("8kB",) else "") for name, setting, unit in rows}


@dataclass(frozen=True)
class WalBudget:
    """What the initial copy will make the source's slots hold: the data to copy at the expected rate, and the
    limits that WAL meets (the server's max_slot_wal_keep_size, pgmove's own max_retained_wal_mb)."""
    copy_bytes: int
    copy_bytes_per_second: float
    max_retained_bytes: int


def check(src: Endpoint, dst: Endpoint, databases: list[str], *, replica_identity_full: bool,
          wal: WalBudget | None = None) -> LogicalReadiness:
    ready = LogicalReadiness()
    with connection(src) as conn:
        s = _settings(conn, _SOURCE_SETTINGS)
        wal_rate = _wal_rate(conn)
        used_slots = int(conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0])  # type: ignore[index]
        senders = int(conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone()[0])  # type: ignore[index]
        can_replicate = conn.execute(
            "SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = session_user").fetchone()[0]  # type: ignore[index]
    with connection(dst) as conn:
        d = _settings(conn, _TARGET_SETTINGS)
        target_major = server_major(conn)
        subscriptions = int(conn.execute("SELECT count(*) FROM pg_subscription").fetchone()[0])  # type: ignore[index]
    ready.settings = {**{f"source.{k}": v for k, v in s.items()}, **{f"target.{k}": v for k, v in d.items()}}
    n = len(databases)
    sync_workers = int(d.get("max_sync_workers_per_subscription", "2"))
    if s.get("wal_level") != "logical":
        ready.problems.append(f"{src.name} has wal_level = {s.get('wal_level')}: logical replication needs "
                              f"wal_level = logical, which takes a restart of {src.name} (ALTER SYSTEM SET wal_level = "
                              "logical, then restart it), or use the offline method")
    if not can_replicate:
        ready.problems.append(f"pgmove's role on {src.name} has neither REPLICATION nor SUPERUSER: grant it REPLICATION")
    _capacity(ready, f"{src.name}'s max_replication_slots", int(s.get("max_replication_slots", "0")) - used_slots,
              n, n * (1 + sync_workers), "replication slots")
    _capacity(ready, f"{src.name}'s max_wal_senders", int(s.get("max_wal_senders", "0")) - senders,
              n, n * (1 + sync_workers), "WAL senders")
    workers = int(d.get("max_logical_replication_workers", "0"))
    _capacity(ready, f"{dst.name}'s max_logical_replication_workers", workers, n, n * (1 + sync_workers),
              "logical replication workers")
    origins_setting = "max_active_replication_origins" if target_major >= 18 else "max_replication_slots"
    _capacity(ready, f"{dst.name}'s {origins_setting}", int(d.get(origins_setting, "0")) - subscriptions,
              n, n * (1 + sync_workers), "replication origins")
    if int(d.get("max_worker_processes", "0")) < workers + 1:
        ready.warnings.append(f"{dst.name}'s max_worker_processes ({d.get('max_worker_processes')}) is below "
                              f"max_logical_replication_workers + 1 ({workers + 1}): some workers may not start")
    keep = s.get("max_slot_wal_keep_size", "-1")
    if keep in ("-1", "-1MB"):
        ready.warnings.append(f"{src.name} has max_slot_wal_keep_size = -1: a slot that stops moving keeps WAL "
                              "without limit; pgmove reports retained WAL above its limit, watch the disk")
    if wal is not None:
        _wal_held(ready, src.name, wal, wal_rate, None if keep in ("-1", "-1MB") else _megabytes(keep))
    _tables(ready, src, databases, replica_identity_full)
    return ready


def _capacity(ready: LogicalReadiness, what: str, free: int, needed: int, comfortable: int, things: str) -> None:
    if free < needed:
        ready.problems.append(f"{what} leaves {max(free, 0)} {things} free, {needed} needed (one per database): "
                              "raise it (a restart) or move fewer databases")
    elif free < comfortable:
        ready.warnings.append(f"{what} leaves {free} {things} free: enough for one per database, but the initial "
                              f"copy's table-sync workers would use up to {comfortable}; the copy will be slower")


def _tables(ready: LogicalReadiness, src: Endpoint, databases: list[str], replica_identity_full: bool) -> None:
    unlogged, objects, matviews = [], 0, 0
    for db in databases:
        with connection(src, db) as conn:
            found = published.classify(conn, db)
            ready.keyless += found.keyless
            unlogged += found.unlogged + found.extension_config
            objects += int(conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0])  # type: ignore[index]
            matviews += int(conn.execute("SELECT count(*) FROM pg_matviews").fetchone()[0])  # type: ignore[index]
    if ready.keyless:
        size = sum(t.size_bytes for t in ready.keyless)
        names = ", ".join(f"{t.label} ({t.size_bytes / 1e6:.1f} MB)" for t in ready.keyless)
        if replica_identity_full:
            ready.warnings.append(f"{len(ready.keyless)} table(s) without a key will be set to REPLICA IDENTITY FULL "
                                  f"on the source (a change to it, undone on abort and after cutover): {names}")
        else:
            ready.warnings.append(f"{len(ready.keyless)} table(s) without a key ({size / 1e6:.1f} MB) are left out of "
                                  f"replication and copied inside the freeze window: {names}; "
                                  "--replica-identity-full replicates them instead")
    ready.not_carried += [
        "sequences: every sequence's value and is_called set from the source inside the freeze window",
        f"large objects ({objects}): copied inside the freeze window",
        f"materialized views ({matviews}): refreshed on the target inside the freeze window",
        "roles, database settings and privileges: copied with the schema when sync starts (changes made after "
        "that are not carried)",
        "schema changes (DDL): not replicated; one made on the source during sync is reported and blocks the freeze",
    ]
    if unlogged:
        ready.not_carried.append(f"unlogged and extension configuration tables ({len(unlogged)}: "
                                 f"{', '.join(t.label for t in unlogged)}): copied inside the freeze window")


def _wal_rate(conn: psycopg.Connection[Any]) -> float:
    """Bytes of WAL the source writes per second: the higher of the last second's and the average since the WAL
    statistics were reset (a quiet moment must not hide a busy day)."""
    first = conn.execute("SELECT pg_current_wal_lsn(), clock_timestamp()").fetchone()
    time.sleep(1.0)
    now = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s), extract(epoch FROM clock_timestamp() - %s)",
                       first).fetchone()
    rates = [float(now[0]) / max(float(now[1]), 0.001)]  # type: ignore[index]
    average = conn.execute("SELECT wal_bytes / extract(epoch FROM now() - stats_reset) FROM pg_stat_wal "
                           "WHERE stats_reset < now() - interval '1 minute'").fetchone()
    if average is not None and average[0] is not None:
        rates.append(float(average[0]))
    return max(rates)


def _megabytes(setting: str) -> int:
    """max_slot_wal_keep_size as pg_settings gives it (MB) in bytes."""
    return int(setting.removesuffix("MB")) * 1024 * 1024


def _wal_held(ready: LogicalReadiness, source: str, wal: WalBudget, rate: float, keep: int | None) -> None:
    """The slots hold every byte of WAL written from the slot's creation until the subscriptions confirm it: the
    whole initial copy at least. Too much for max_slot_wal_keep_size and the slot is lost mid-copy: that blocks."""
    seconds = wal.copy_bytes / max(wal.copy_bytes_per_second, 1.0)
    held = int(rate * seconds)
    said = (f"the initial copy ({wal.copy_bytes / 1e9:.2f} GB, about {seconds:.0f} s) will make {source} keep about "
            f"{held / 1e6:.0f} MB of WAL (it writes {rate / 1e6:.2f} MB/s)")
    ready.settings["source.wal_bytes_per_second"] = f"{rate:.0f}"
    ready.settings["source.wal_held_during_copy_bytes"] = str(held)
    if keep is not None and held > keep:
        ready.problems.append(f"{said}, more than its max_slot_wal_keep_size ({keep // (1024 * 1024)} MB): the slot "
                              f"would be invalidated before the copy ends. Raise max_slot_wal_keep_size above "
                              f"{2 * held // (1024 * 1024)} MB (a reload), or sync when it writes less")
    elif held > wal.max_retained_bytes:
        ready.warnings.append(f"{said}, more than pgmove's max_retained_wal_mb ({wal.max_retained_bytes // (1024 * 1024)}"
                              " MB): the freeze stays blocked until the target catches up and the slot lets it go")
    ready.wal_held = f"{said}; pg_wal's disk on {source} needs that much free"
