"""The app pause's one decision: a pause_app_hook that failed before anything was frozen sends the migration back
to where its approval found it (ready or in_sync), not to `failed`: there is nothing on the server to undo."""

from __future__ import annotations

from datetime import datetime

from pgmove.state.machine import Event, State
from pgmove.state.models import Migration, StepName, StepStatus
from pgmove.state.outcome import Outcome, transition
from pgmove.state.work import RUNNING_STATE, fail_step


def pause_failed(m: Migration, step: StepName, reason: str, now: datetime, actor: str, token: str | None = None) -> Outcome:
    """The freeze (or the cutover window) stopped at its app pause: back to the approval's prior state."""
    if m.freeze is not None or m.hook is not None:
        return fail_step(m, step, reason, now, actor, token)  # something did change: the usual failure and its retry
    if (token is not None and (m.lease is None or m.lease.token != token)) or m.state != RUNNING_STATE[step]:
        return fail_step(m, step, reason, now, actor, token)  # refuses, with the reason it is no longer this step's
    prior = m.approval.prior_state if m.approval is not None else State.READY
    out = transition(m, Event.PAUSE_FAILED, actor, now, f"{reason} {m.source} is {prior.value.replace('_', ' ')} "
                      "again; nothing on it was changed.", to=prior)
    new = out.migration
    new.lease, new.failure = None, None
    record = new.last_step(step)
    if record is not None and record.status == StepStatus.RUNNING:
        record.status, record.finished_at, record.message = StepStatus.FAILED, now, reason
    out.events[-1].step = step
    return out
