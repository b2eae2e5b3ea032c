"""The worker's side of a migration: which step a state calls for, and the bookkeeping of starting,
finishing, failing and stopping it (leases and step records).
"""

from __future__ import annotations

from datetime import datetime

from pgmove.state.errors import Refused
from pgmove.state.machine import Event, State
from pgmove.state.models import (
    AuditEvent,
    EventKind,
    Failure,
    Lease,
    Migration,
    StepName,
    StepRecord,
    StepStatus,
)
from pgmove.state.outcome import Outcome, transition, updated
from pgmove.state.sync import is_window, window_failed


def step_transition(m: Migration, event: Event, now: datetime, message: str, worker: str) -> Outcome:
    """A worker reports that its step moved the migration on."""
    return transition(m, event, f"worker:{worker}", now, message)


def fail(m: Migration, step: StepName, reason: str, now: datetime, actor: str, resume_state: State) -> Outcome:
    out = transition(m, Event.STEP_FAILED, actor, now, f"{step} failed: {reason}")
    out.migration.failure = Failure(step=step, reason=reason, resume_state=resume_state, at=now)
    out.migration.lease = None
    out.events[-1].step = step
    return out


STEP_FOR_STATE: dict[State, StepName] = {
    State.PLANNED: StepName.PREFLIGHT,
    State.SYNCING: StepName.SYNC,
    State.FREEZING: StepName.FREEZE,
    State.FROZEN: StepName.COPY,
    State.COPYING: StepName.COPY,
    State.VERIFYING: StepName.VERIFY,
    State.CUTTING_OVER: StepName.CUTOVER,
    State.UNFREEZING: StepName.UNFREEZE,
}
# Where `retry` goes back to after a step failed: a copy restarts from a clean target.


RESUME_STATE: dict[StepName, State] = {
    StepName.PREFLIGHT: State.PLANNED,
    StepName.SYNC: State.SYNCING,
    StepName.DRAIN: State.FROZEN,
    StepName.SWITCH: State.CUTTING_OVER,
    StepName.FREEZE: State.FREEZING,
    StepName.COPY: State.FROZEN,
    StepName.VERIFY: State.VERIFYING,
    StepName.CUTOVER: State.CUTTING_OVER,
    StepName.UNFREEZE: State.UNFREEZING,
}
# The state a step runs in (the copy moves frozen -> copying as it starts).
# A drain is a logical migration's copy, and a switch its cutover: they run in the same states.


RUNNING_STATE: dict[StepName, State] = {**{step: state for state, step in STEP_FOR_STATE.items()}, StepName.COPY: State.COPYING,
                                        StepName.DRAIN: State.COPYING, StepName.SWITCH: State.CUTTING_OVER}


def step_due(m: Migration) -> StepName | None:
    """The step the worker should run now, if any (a standalone freeze has nothing to copy)."""
    step = STEP_FOR_STATE.get(m.state)
    if step == StepName.COPY and m.target is None:
        return None
    if step == StepName.COPY and m.sync_setup is not None:
        return StepName.DRAIN
    if step == StepName.CUTOVER and is_window(m):
        return StepName.SWITCH
    return step


def start_step(m: Migration, step: StepName, worker: str, token: str, now: datetime) -> Outcome:
    if step_due(m) != step:
        raise Refused(f"{step} is not due: {m.source} is {m.state.value}")
    if m.state == State.FROZEN:
        what = "drain" if step == StepName.DRAIN else "copy"
        out = transition(m, Event.COPY_STARTED, f"worker:{worker}", now, f"{what} of {m.source} to {m.target} started")
    else:
        out = Outcome(m.model_copy(deep=True))
    new = out.migration
    new.lease = Lease(step=step, worker=worker, token=token, started_at=now)
    new.steps.append(StepRecord(name=step, status=StepStatus.RUNNING, started_at=now, worker=worker))
    new.updated_at = now
    out.events.append(AuditEvent(kind=EventKind.STEP, at=now, actor=f"worker:{worker}", message=f"{step} started", step=step))
    return out


def finish_step(
    m: Migration, step: StepName, token: str, event: Event, message: str, result: dict[str, object], now: datetime,
    changes: dict[str, object] | None = None,
) -> Outcome:
    """The step's transition, with the facts it established (`changes`) written through the model."""
    if m.lease is None or m.lease.token != token or m.state != RUNNING_STATE[step]:
        raise Refused(f"{step} result dropped: {m.source} moved on to {m.state.value} meanwhile")
    out = transition(m, event, f"worker:{m.lease.worker}", now, message)
    new = out.migration = updated(out.migration, **(changes or {}))
    record = new.last_step(step)
    if record is not None:
        record.status, record.finished_at, record.message, record.result = StepStatus.DONE, now, message, result
    new.lease = None
    out.events[-1].step = step
    return out


def fail_step(m: Migration, step: StepName, reason: str, now: datetime, actor: str, token: str | None = None) -> Outcome:
    """A step failed (or its worker died): the migration waits in `failed` for retry or unfreeze."""
    if token is not None and (m.lease is None or m.lease.token != token):
        raise Refused(f"{step} failure not recorded: the step is no longer this worker's")
    if m.state != RUNNING_STATE[step]:
        raise Refused(f"{step} failure not recorded: {m.source} moved on to {m.state.value}")
    if step == StepName.SWITCH and m.hook is None:
        return window_failed(m, reason, now, actor)
    if step == StepName.FREEZE and m.snapshot_unfreezing:
        # `freeze --snapshot` failed in its own unfreeze: what is left is that unfreeze, never a new freeze.
        out = fail(m, StepName.UNFREEZE, reason, now, actor, State.UNFREEZING)
    else:
        out = fail(m, step, reason, now, actor, _resume_state(m, step))
    record = out.migration.last_step(step)
    if record is not None and record.status == StepStatus.RUNNING:
        record.status, record.finished_at, record.message = StepStatus.FAILED, now, reason
    return out


def _resume_state(m: Migration, step: StepName) -> State:
    """Where a retry goes: a cutover that found the source moved during this very run resumes with a new copy,
    as retrying the cutover would only refuse again."""
    moved = m.source_moved
    # Once a hook has run the app may write to the target: a new copy would overwrite it, so never that.
    if (step == StepName.CUTOVER and moved is not None and m.hook is None and m.lease is not None
            and moved.at >= m.lease.started_at):
        return State.FROZEN
    return RESUME_STATE[step]


def stop_step(m: Migration, step: StepName, token: str, now: datetime) -> Outcome:
    """A running step was stopped because the migration moved on under it (unfreeze, abort): say so in its
    record and the trail, and let go of its lease so what is due now can start."""
    if m.lease is None or m.lease.token != token or m.state == RUNNING_STATE[step]:
        raise Refused(f"{step} is not stopped: it is no longer this worker's, or the migration did not move on")
    new = m.model_copy(deep=True, update={"lease": None, "updated_at": now})
    message = f"{step} stopped: {m.source} moved on to {m.state.value.replace('_', ' ')}"
    record = new.last_step(step)
    if record is not None and record.status == StepStatus.RUNNING:
        record.status, record.finished_at, record.message = StepStatus.FAILED, now, message
    return Outcome(new, [AuditEvent(kind=EventKind.STEP, at=now, actor=f"worker:{m.lease.worker}", message=message, step=step)])


def with_changes(m: Migration, now: datetime, message: str, actor: str, **changes: object) -> Outcome:
    """A change of the record that is not a transition (a recorded snapshot, a created database)."""
    new = updated(m, **changes, updated_at=now)
    return Outcome(new, [AuditEvent(kind=EventKind.STEP, at=now, actor=actor, message=message, step=m.lease.step if m.lease else None)])
