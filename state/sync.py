"""Decisions of the logical method: starting replication, the monitor's readings, what blocks a freeze or a
cutover from in_sync, and the one-approval window that gives writes back when it fails.
"""

from __future__ import annotations

from datetime import datetime

from pgmove.state.errors import Refused
from pgmove.state.machine import Event, State
from pgmove.state.models import (
    ApprovalAction,
    AuditEvent,
    Decision,
    EventKind,
    Migration,
    StepName,
    StepStatus,
)
from pgmove.state.outcome import Outcome, Policy, transition
from pgmove.state.replication import SyncStatus

DEFAULT_WINDOW_SECONDS = 60.0


def check_sync(m: Migration, action: ApprovalAction, policy: Policy) -> None:
    """From in_sync, freeze and cutover wait for a monitor reading with no problem and the lag under the threshold:
    a freeze that starts far behind only makes the write downtime longer."""
    status = m.sync_status
    what = f"`/pgmove {action.value} {m.source}`"
    if status is None:
        raise Refused(f"{action.value.capitalize()} refused: no replication status of {m.source} recorded yet; "
                      f"wait for the next check and ask again ({what}).")
    if status.problems:
        raise Refused(f"{action.value.capitalize()} refused: replication of {m.source} has problems to resolve "
                      f"first: " + "; ".join(status.problems))
    behind = [d for d in status.databases if d.tables_ready < d.tables_total or d.lag_bytes > policy.max_lag_bytes]
    if behind:
        lags = ", ".join(f"{d.database} {d.lag_bytes} bytes behind, {d.tables_total - d.tables_ready} tables copying"
                         for d in behind)
        raise Refused(f"{action.value.capitalize()} refused: {m.target} is behind {m.source} ({lags}; the threshold "
                      f"is {policy.max_lag_bytes} bytes). Wait until it catches up, then ask again ({what}).")


def request_sync(m: Migration, actor: str, now: datetime) -> Outcome:
    """Start logical replication of a ready logical plan."""
    if m.plan.method != "logical":
        raise Refused(f"The plan for {m.source} uses --method {m.plan.method}: it is copied during a freeze. For "
                      f"replication, plan again with `/pgmove plan {m.source} {m.target or '<target>'} --method logical`.")
    if m.state in (State.SYNCING, State.IN_SYNC):
        raise Refused(f"{m.source} is already {m.state.value.replace('_', ' ')} with {m.target}; "
                      f"`/pgmove status {m.source}` shows the lag.")
    if m.preflight and m.preflight.problems:
        raise Refused("The plan has problems that block sync: " + "; ".join(m.preflight.problems))
    out = transition(m, Event.SYNC_REQUESTED, actor, now, f"{actor} started replication of {m.source} to {m.target}")
    out.enqueue = True
    return out


def record_sync_status(m: Migration, status: SyncStatus, now: datetime, actor: str) -> Outcome:
    """The monitor's reading, kept on the record; a problem that appears or clears is an event the thread shows."""
    if m.state not in (State.SYNCING, State.IN_SYNC):
        raise Refused(f"replication status not recorded: {m.source} moved on to {m.state.value}")
    before = set(m.sync_status.problems) if m.sync_status else set()
    new = m.model_copy(deep=True, update={"sync_status": status, "updated_at": now})
    events = [AuditEvent(kind=EventKind.PROGRESS, at=now, actor=actor, message=f"replication problem: {p}",
                         data={"problem": p}) for p in status.problems if p not in before]
    events += [AuditEvent(kind=EventKind.PROGRESS, at=now, actor=actor, message=f"replication problem resolved: {p}",
                          data={"resolved": p}) for p in sorted(before - set(status.problems))]
    return Outcome(new, events)


def needs_cleanup(m: Migration) -> bool:
    """Replication objects may exist for this migration on either server."""
    failed_in_sync = m.failure is not None and m.failure.step == StepName.SYNC
    return m.sync_setup is not None or m.state in (State.SYNCING, State.IN_SYNC) or failed_in_sync


def is_window(m: Migration) -> bool:
    """The cutover approved from in_sync: freeze to hook inside the approval's window."""
    a = m.approval
    return a is not None and a.action == ApprovalAction.CUTOVER and a.window_seconds is not None and a.decision == Decision.APPROVED


def window_failed(m: Migration, reason: str, now: datetime, actor: str) -> Outcome:
    """The window's switch failed before its hook ran (or its worker died): the source gets writes back at once,
    replication keeps running, and the migration returns to in_sync. Never after the hook: the app may have moved."""
    if m.hook is not None:
        raise Refused("the cutover hook has run: giving writes back to the source needs a second person")
    undo = "unfreezing it" if m.freeze is not None else "nothing on it was frozen"
    out = transition(m, Event.WINDOW_FAILED, actor, now,
                      f"the cutover window of {m.source} failed ({reason}); {undo}, replication keeps running")
    new = out.migration
    new.window_rollback, new.aborting, new.lease = True, False, None
    record = new.last_step(StepName.SWITCH)
    if record is not None and record.status == StepStatus.RUNNING:
        record.status, record.finished_at, record.message = StepStatus.FAILED, now, reason
    out.events[-1].step = StepName.SWITCH
    out.enqueue = True
    return out
