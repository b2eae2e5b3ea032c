"""Watches every migration in sync: lag, retained WAL, tables still copying, apply errors, DDL drift.

Why a thread beside the queue and not a job: a job holds the worker that runs it (a single worker would run
nothing else while it waits for the next check), and a check taken under the server's lock would block the
freeze it is meant to allow. So each worker process runs this loop; a reading takes no lock, only reads both
servers, and is written with compare-and-set only while the migration is still in sync. A Redis claim per
migration and period makes one worker of many take each reading. A problem that appears is an event at once
(the bot posts it to the thread); the record keeps it, and freeze and cutover refuse until a reading is clean.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from pgmove.state.errors import PgmoveError, Refused
from pgmove.state.machine import State
from pgmove.state.models import AuditEvent, EventKind, Migration
from pgmove.state.replication import SyncStatus
from pgmove.state.sync import record_sync_status
from pgmove.steps.replication import status
from pgmove.worker.runtime import Runtime
from pgmove.worker.watch import watch_all

log = logging.getLogger("pgmove.monitor")
TICK_SECONDS = 1.0


def monitor_forever(rt: Runtime, stop: threading.Event) -> None:
    while not stop.wait(TICK_SECONDS):
        try:
            check_all(rt)
        except Exception:  # a Redis blip: the next tick tries again
            log.warning("replication check failed", exc_info=True)
        try:
            watch_all(rt)  # after cutover: see worker/watch.py
        except Exception:
            log.warning("watch after cutover failed", exc_info=True)


def check_all(rt: Runtime) -> list[str]:
    """Read every in-sync migration whose period has no reading yet; returns the ids read."""
    period = rt.config.sync_check_seconds
    slot = int(time.time() // period)
    read = []
    for m in rt.store.active():
        if m.state != State.IN_SYNC or m.sync_setup is None or m.target is None:
            continue
        if not rt.store.claim_once(f"monitor:{m.id}:{slot}", ttl_seconds=int(period * 2) + 1):
            continue  # another worker took this period's reading
        check(rt, m)
        read.append(m.id)
    return read


def check(rt: Runtime, m: Migration) -> None:
    assert m.sync_setup is not None and m.target is not None
    now = datetime.now(UTC)
    try:
        found = status.read(rt.endpoint(m.source), rt.endpoint(m.target), m.sync_setup,
                            max_retained_wal_bytes=rt.config.max_retained_wal_mb * 1024 * 1024)
    except PgmoveError as exc:
        found = SyncStatus(at=now, problems=[f"replication status could not be read ({exc.message}); pgmove tries "
                                             f"again every {rt.config.sync_check_seconds:g}s"])
    try:
        rt.store.update(m.id, lambda cur: record_sync_status(_must(cur), found, now, f"worker:{rt.worker_id}"))
    except Refused as exc:
        log.info("%s: %s", m.id, exc.message)
        return
    # A live tick: the status message shows the reading without a line in the thread every period.
    line = "; ".join(found.problems) or "; ".join(
        f"{d.database} {d.lag_bytes} bytes behind, WAL retained {d.retained_wal_bytes / 1e6:.1f} MB" for d in found.databases)
    rt.store.append_event(m.id, AuditEvent(kind=EventKind.PROGRESS, at=now, actor=f"worker:{rt.worker_id}",
                                           message=f"replication: {line}", data={"tick": True}))


def _must(m: Migration | None) -> Migration:
    if m is None:
        raise Refused("the migration record is gone")
    return m
