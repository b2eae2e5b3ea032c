"""The step loop: runs the steps a migration is due for, under the server's lock, recording every move in the store."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pgmove.state.apppause import pause_failed
from pgmove.state.errors import LockLost, PauseFailed, PgmoveError, Refused
from pgmove.state.models import AuditEvent, EventKind, Migration, StepName
from pgmove.state.outcome import Outcome, updated
from pgmove.state.work import (
    RUNNING_STATE,
    fail_step,
    finish_step,
    start_step,
    step_due,
    stop_step,
    with_changes,
)
from pgmove.steps.connect import Endpoint, StopToken
from pgmove.worker.adapters import STEPS
from pgmove.worker.hookkill import end_orphans
from pgmove.worker.lease import Heartbeat, acquire
from pgmove.worker.runtime import Runtime

log = logging.getLogger("pgmove.worker")


def now() -> datetime:
    return datetime.now(UTC)


def advance(rt: Runtime, migration_id: str, lock_wait: float | None = None) -> None:
    """Run every step the migration is due for, in order, while holding its source server's lock."""
    m = rt.store.get(migration_id)
    if m is None or step_due(m) is None:
        return
    token, server = uuid.uuid4().hex, m.source
    if not acquire(rt, server, token, lock_wait if lock_wait is not None else rt.config.lease_seconds * 2):
        log.info("%s is busy with another worker; %s goes back in the queue", server, migration_id)
        rt.queue.enqueue_call("pgmove.worker.jobs.advance", args=(migration_id,), timeout=-1)
        return
    try:
        with Heartbeat(rt, server, token) as heartbeat:
            while True:
                m = rt.store.get(migration_id)
                step = step_due(m) if m else None
                if m is None or step is None:
                    return
                if not _run_step(rt, m, step, token, heartbeat) or heartbeat.lost:
                    return
    finally:
        rt.store.release_lock(server, token)


def _run_step(rt: Runtime, m: Migration, step: StepName, token: str, heartbeat: Heartbeat) -> bool:
    """Run one step; True when the migration moved on (by this step, or by someone else meanwhile: an
    unfreeze that stopped it) and the next step may follow under the same lock."""
    try:
        m = rt.store.update(m.id, lambda cur: start_step(_must(cur), step, rt.worker_id, token, now())).migration
    except Refused as exc:
        log.info("%s: %s", m.id, exc.message)
        return False
    log.info("%s: %s started on %s", m.id, step, m.source)
    context = StepContext(rt, m.id, step, token, heartbeat)
    try:
        with StopWatch(context):
            for line in end_orphans(m, quiet=True):  # a hook a dead worker left running ends before anything else
                context.progress(f"before the {step}: {line}")
            done = STEPS[step](rt, m, context)
        updated(m, **done.changes)  # a result the record cannot hold fails the step here, not the record later
    except Exception as exc:
        if context.stop.fired:
            return _record_stopped(rt, m, step, token)
        reason = exc.message if isinstance(exc, PgmoveError) else f"unexpected error, see the worker log ({context.log_ref})"
        log.error("%s: %s failed (%s)", m.id, step, context.log_ref, exc_info=not isinstance(exc, PgmoveError))
        try:
            # A failed app pause froze nothing: the migration goes back to where its approval found it.
            failing = pause_failed if isinstance(exc, PauseFailed) else fail_step
            failed = rt.store.update(m.id, lambda cur: failing(_must(cur), step, reason, now(), f"worker:{rt.worker_id}",
                                                               token))
        except Refused as refusal:
            log.info("%s: %s", m.id, refusal.message)
            # It noticed the move itself (a progress report, not the watch): its record must still say stopped.
            return _record_stopped(rt, m, step, token)
        # A failed cutover window unfreezes at once, under this same lock: no queue, no other worker in between.
        return step_due(failed.migration) is not None

    try:
        rt.store.update(m.id, lambda cur: finish_step(_must(cur), step, token, done.event, done.message, done.result,
                                                      now(), done.changes))
    except Refused as exc:
        log.warning("%s: %s", m.id, exc.message)
        return _record_stopped(rt, m, step, token)  # it ended just as the migration moved on under it
    log.info("%s: %s done: %s", m.id, step, done.message)
    return True


def _record_stopped(rt: Runtime, m: Migration, step: StepName, token: str) -> bool:
    """The migration moved on under a running step: its record says stopped, never running for ever. True when
    recorded, so what is due now may run; False when the lease was lost, which the reaper settles."""
    try:
        rt.store.update(m.id, lambda cur: stop_step(_must(cur), step, token, now()))
    except Refused as refusal:
        log.info("%s: %s", m.id, refusal.message)
        return False
    log.info("%s: %s stopped: the migration moved on", m.id, step)
    return True


class StepContext:
    """What a running step may do besides its own work: report progress, record facts, notice it should stop."""

    def __init__(self, rt: Runtime, migration_id: str, step: StepName, token: str, heartbeat: Heartbeat) -> None:
        self.rt, self.migration_id, self.step, self.token, self.heartbeat = rt, migration_id, step, token, heartbeat
        self.log_ref = uuid.uuid4().hex[:8]
        self.stop = StopToken()
        self._checked_at = 0.0
        self._stop = False

    def endpoint(self, server: str) -> Endpoint:
        """The server as this step reaches it: its sessions end when the step is stopped."""
        return replace(self.rt.endpoint(server), stop=self.stop)

    def progress(self, message: str, **data: Any) -> None:
        event = AuditEvent(kind=EventKind.PROGRESS, at=now(), actor=f"worker:{self.rt.worker_id}", message=message,
                           step=self.step, data=data)
        self.rt.store.append_event(self.migration_id, event)
        log.info("%s: %s", self.migration_id, message)
        if self.should_stop():
            raise LockLost(f"{self.step} stopped: the migration moved on or the worker lost its lock")

    def record(self, message: str, derive: Callable[[Migration], dict[str, Any]] | None = None,
               **changes: Any) -> Migration:
        """Record facts on the migration; `derive` computes changes from the current record, inside the
        compare-and-set, for facts that several threads of one step add to."""
        def change(cur: Migration | None) -> Outcome:
            m = _must(cur)
            if m.lease is None or m.lease.token != self.token:
                raise LockLost(f"{self.step} stopped: the step is no longer this worker's")
            return with_changes(m, now(), message, f"worker:{self.rt.worker_id}", **changes, **(derive(m) if derive else {}))

        return self.rt.store.update(self.migration_id, change).migration

    def should_stop(self) -> bool:
        """True once the lock is lost or someone moved the migration on (unfreeze, abort); checked cheaply."""
        if self.heartbeat.lost or self._stop or self.stop.fired:
            return True
        if time.monotonic() - self._checked_at >= STOP_CHECK_SECONDS:
            self._checked_at = time.monotonic()
            m = self.rt.store.get(self.migration_id)
            self._stop = (m is None or m.lease is None or m.lease.token != self.token
                          or m.state != RUNNING_STATE[self.step])
        return self._stop


STOP_CHECK_SECONDS = 1.0


class StopWatch:
    """Watches, while a step runs, for the migration moving on under it (an unfreeze or abort) and then fires
    the step's stop token: its sessions end on both servers, its client programs are stopped by their
    `should_stop`, and the worker goes on to what is due now instead of finishing hours of copying first."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"stop-{ctx.migration_id}", daemon=True)

    def __enter__(self) -> StopWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(STOP_CHECK_SECONDS / 2):
            try:
                stop = self.ctx.should_stop()
            except Exception:  # a Redis blip: look again next time
                log.warning("could not check whether %s moved on", self.ctx.migration_id, exc_info=True)
                continue
            if stop:
                log.info("%s moved on: stopping its %s step", self.ctx.migration_id, self.ctx.step)
                self.ctx.stop.fire()
                return


def _must(m: Migration | None) -> Migration:
    if m is None:
        raise Refused("the migration record is gone")
    return m

