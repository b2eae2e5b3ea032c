"""Schedules the watch after cutover on the monitor thread: start, a reading every sample period, the summary.

Not a job: a job would hold a worker for the whole watch (a quarter of an hour by default) and a single worker
would run nothing else meanwhile. Each pass of the monitor looks at the cut-over migrations, and a Redis claim per
migration and moment (start, each sample period, end) makes exactly one worker of many act on it; the record is
written with compare-and-set, and the summary goes to the audit stream, which the bot posts to the thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

from pgmove.state import watching
from pgmove.state.errors import PgmoveError, Refused
from pgmove.state.models import Migration
from pgmove.state.outcome import Outcome
from pgmove.state.watch import Reading
from pgmove.steps import watch as readings
from pgmove.steps.connect import Endpoint
from pgmove.worker.runtime import Runtime

log = logging.getLogger("pgmove.watch")


def watch_all(rt: Runtime, now: datetime | None = None) -> list[str]:
    """One pass over the cut-over migrations; returns the ids this worker read. `now` is injected by tests."""
    now = now or datetime.now(UTC)
    duration = timedelta(minutes=rt.config.watch_minutes)
    period = timedelta(seconds=rt.config.watch_sample_seconds)
    if duration <= timedelta(0):
        return []
    read = []
    for m in rt.store.active():
        try:
            if watching.wants_start(m, now, duration) and _claim(rt, m, "start", period):
                _apply(rt, m, partial(_begin, duration=duration, actor=_actor(rt)), now)
            elif watching.end_due(m, now) and _claim(rt, m, "end", period):
                _finish(rt, m, now)
            elif watching.sample_due(m, now, period) and _claim(rt, m, f"sample:{_slot(m, now, period)}", period):
                _apply(rt, m, lambda cur, r: watching.record(cur, r), now)
            else:
                continue
            read.append(m.id)
        except PgmoveError as exc:  # a worker without the server's password, say: the next pass tries again
            log.warning("watch of %s: %s", m.id, exc.message)
    return read


def _begin(m: Migration, reading: Reading, duration: timedelta, actor: str) -> Outcome:
    return watching.begin(m, reading, duration, actor)


def _slot(m: Migration, now: datetime, period: timedelta) -> int:
    """Which sample period `now` is in, counted from the cutover: the same number on every worker."""
    assert m.watch is not None
    return int((now - m.watch.started_at) / period)


def _claim(rt: Runtime, m: Migration, what: str, period: timedelta) -> bool:
    # Held long enough to cover the reading; a worker that dies holding it leaves it to another after that.
    return rt.store.claim_once(f"watch:{m.id}:{what}", ttl_seconds=int(max(60.0, 3 * period.total_seconds())))


def _ends(rt: Runtime, m: Migration) -> tuple[Endpoint, Endpoint, list[str]]:
    assert m.target is not None
    target, source = rt.endpoint(m.target), rt.endpoint(m.source)
    return target, source, sorted(set(source.app_roles) | set(target.app_roles))


def _apply(rt: Runtime, m: Migration, decide: Callable[[Migration, Reading], Outcome], now: datetime) -> None:
    target, source, roles = _ends(rt, m)
    reading = readings.read(target, source, roles, at=now)
    try:
        rt.store.update(m.id, lambda cur: decide(_must(cur), reading))
    except Refused as exc:
        log.info("%s: %s", m.id, exc.message)


def _finish(rt: Runtime, m: Migration, now: datetime) -> None:
    target, source, roles = _ends(rt, m)
    reading: Reading = readings.read(target, source, roles, at=now)
    sequences, problems = readings.fullest_sequences(target)
    reading.problems += problems
    try:
        rt.store.update(m.id, lambda cur: watching.finish(_must(cur), reading, sequences, _actor(rt)))
    except Refused as exc:
        log.info("%s: %s", m.id, exc.message)


def _actor(rt: Runtime) -> str:
    return f"worker:{rt.worker_id}"


def _must(m: Migration | None) -> Migration:
    if m is None:
        raise Refused("the migration record is gone")
    return m
