"""Pure decisions on a migration: each takes a record and returns the next record and its events.

The two-person rule lives here, so the CLI, Slack and any future edge enforce the same thing.
Nothing here does I/O; the store applies an Outcome atomically or not at all.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pgmove.state.errors import Refused
from pgmove.state.machine import RESTING, WORKING, Event, State, next_state
from pgmove.state.models import (
    Approval,
    ApprovalAction,
    AuditEvent,
    Decision,
    EventKind,
    Failure,
    FreezeOptions,
    Lease,
    Migration,
    Plan,
    StepName,
    StepRecord,
    StepStatus,
)
from pgmove.state.replication import SyncStatus
from pgmove.state.report import VerifyMode


@dataclass
class Outcome:
    migration: Migration
    events: list[AuditEvent] = field(default_factory=list)
    enqueue: bool = False  # the worker has something to do now


@dataclass(frozen=True)
class Policy:
    approvers: frozenset[str]
    approval_ttl: timedelta = timedelta(minutes=30)
    max_lag_bytes: int = 16 * 1024 * 1024  # logical: above this, freeze and cutover from in_sync are refused


def new_migration(migration_id: str, plan: Plan, actor: str, now: datetime) -> Outcome:
    migration = Migration(
        id=migration_id, source=plan.source, target=plan.target, state=State.PLANNED, plan=plan,
        plan_digest=plan.digest(), created_by=actor, created_at=now, updated_at=now,
    )
    what = f"{plan.source} -> {plan.target}" if plan.target else plan.source
    event = _event(EventKind.TRANSITION, now, actor, f"{actor} planned {what}", Event.REPLANNED, None, State.PLANNED)
    return Outcome(migration, [event], enqueue=plan.target is not None)


def standalone_freeze_record(migration_id: str, source: str, actor: str, now: datetime) -> Migration:
    """A freeze with no migration planned (a volume snapshot, say): the same record, no target."""
    plan = Plan(source=source)
    return Migration(
        id=migration_id, source=source, target=None, state=State.READY, plan=plan,
        plan_digest=plan.digest(), created_by=actor, created_at=now, updated_at=now,
    )


def replan(m: Migration, plan: Plan, actor: str, now: datetime) -> Outcome:
    if m.source_frozen:
        raise Refused(f"{m.source} is frozen; a new plan needs it unfrozen first (`/pgmove unfreeze {m.source}`).")
    out = _transition(m, Event.REPLANNED, actor, now, f"{actor} re-planned {plan.source} -> {plan.target}")
    new = out.migration
    if new.approval and new.approval.decision == Decision.PENDING:
        new.approval.decision = Decision.VOIDED
        new.approval.decided_at = now
        new.approval.reason = "the plan changed"
        out.events.append(_decision(now, actor, f"pending {new.approval.action} request voided: the plan changed", new.approval))
    new.plan, new.plan_digest, new.target = plan, plan.digest(), plan.target
    new.preflight, new.failure, new.verification = None, None, None
    out.enqueue = True
    return out


def request_approval(
    m: Migration, action: ApprovalAction, actor: str, now: datetime, policy: Policy,
    freeze_options: FreezeOptions | None = None, window_seconds: float | None = None,
) -> Outcome:
    """Ask a second person for the freeze or the cutover. A freeze's options (None: the defaults) go on the
    record with the request: they are part of what the approver sees and approves."""
    if freeze_options is not None and action != ApprovalAction.FREEZE:
        raise ValueError(f"freeze options belong to a freeze request, not a {action.value} request")
    if freeze_options is not None and freeze_options.archive and m.target is None:
        raise Refused("--archive is taken during a move's copy; plan one first "
                      f"(`/pgmove plan {m.source} <target>`), or freeze without --archive.")
    event = Event.FREEZE_REQUESTED if action == ApprovalAction.FREEZE else Event.CUTOVER_REQUESTED
    if action == ApprovalAction.CUTOVER and m.state == State.VERIFIED and m.verification and m.verification.mode == VerifyMode.QUICK:
        raise Refused(f"The last verification was a quick one; cutover needs a full one: `/pgmove verify {m.source}`.")
    if action == ApprovalAction.CUTOVER and m.state == State.VERIFY_FAILED:
        reasons = "; ".join(m.verification.problems[:5] if m.verification else []) or "see the verification report"
        raise Refused(f"Cutover refused: the last verification failed ({reasons}). Fix, re-copy or `/pgmove verify {m.source}`.")
    if next_state(m.state, event) is None:
        raise Refused(_not_now(m, event))
    if m.state == State.IN_SYNC:
        _check_sync(m, action, policy)
    pending = m.approval if m.approval and m.approval.decision == Decision.PENDING else None
    if pending and pending.expires_at > now:
        raise Refused(
            f"{m.source} already has a {pending.action} request from <@{pending.requester}> waiting for approval "
            f"(expires {pending.expires_at:%H:%M} UTC)."
        )
    if action == ApprovalAction.FREEZE and m.preflight and m.preflight.problems:
        raise Refused("The plan has problems that block the freeze: " + "; ".join(m.preflight.problems))
    prior = pending.prior_state if pending else m.state
    out = _transition(m, event, actor, now, f"{actor} requested {action.value} of {m.source}")
    out.migration.approval = Approval(
        id=secrets.token_hex(4), action=action, requester=actor, plan_digest=m.plan_digest,
        requested_at=now, expires_at=now + policy.approval_ttl, prior_state=prior,
    )
    if action == ApprovalAction.CUTOVER and prior == State.IN_SYNC:
        out.migration.approval.window_seconds = window_seconds or DEFAULT_WINDOW_SECONDS
    if action == ApprovalAction.FREEZE:
        out.migration.freeze_options = freeze_options or FreezeOptions()
    return out


DEFAULT_WINDOW_SECONDS = 60.0


def _check_sync(m: Migration, action: ApprovalAction, policy: Policy) -> None:
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
    out = _transition(m, Event.SYNC_REQUESTED, actor, now, f"{actor} started replication of {m.source} to {m.target}")
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


def decide(
    m: Migration, actor: str, approve: bool, now: datetime, policy: Policy,
    approval_id: str | None = None, reason: str | None = None,
) -> Outcome:
    """Approve or reject the pending request. Every rule of the two-person rule is checked here."""
    a = m.approval
    if a is None or a.decision != Decision.PENDING or (approval_id and a.id != approval_id):
        if a is not None and approval_id in (None, a.id) and a.decision != Decision.PENDING:
            who = f" by <@{a.approver}>" if a.approver else ""
            raise Refused(f"That {a.action} request was already {a.decision.value}{who}; nothing to decide.")
        if a is not None and a.decision == Decision.PENDING:
            raise Refused(f"Request {approval_id} is not the one waiting on {m.source}: that is the {a.action} request "
                          f"{a.id} from <@{a.requester}>.")
        raise Refused(f"There is no pending request for {m.source} to decide.")
    if approve and actor == a.requester:
        raise Refused(f"You requested this {a.action}; a second person must approve it (two-person rule).")
    withdrawing = not approve and actor == a.requester  # taking back your own request only makes things safer
    if actor not in policy.approvers and not withdrawing:
        raise Refused(f"<@{actor}> is not a configured approver; ask one of: " + ", ".join(f"<@{u}>" for u in sorted(policy.approvers)))
    if now >= a.expires_at:
        raise Refused(f"The {a.action} request expired at {a.expires_at:%H:%M} UTC; request it again.")
    if a.plan_digest != m.plan_digest:
        raise Refused(f"The plan changed after the {a.action} was requested; request it again.")
    verb = "approved" if approve else "rejected"
    if approve:
        out = _transition(m, Event.APPROVED, actor, now, f"{actor} approved the {a.action} requested by {a.requester}")
        out.enqueue = True
    else:
        out = _transition(m, Event.REJECTED, actor, now, f"{actor} rejected the {a.action}", to=a.prior_state)
        out.migration.aborting = False
    approval = out.migration.approval
    assert approval is not None
    approval.decision = Decision.APPROVED if approve else Decision.REJECTED
    approval.approver, approval.decided_at, approval.reason = actor, now, reason
    because = f": {reason}" if reason else ""  # kept with the decision: the reply, the thread and the history say it
    out.events.insert(0, _decision(now, actor, f"{actor} {verb} {a.action} request {a.id}{because}", approval))
    return out


def request_verify(m: Migration, actor: str, now: datetime, quick: bool = False) -> Outcome:
    kind = "quick" if quick else "full"
    out = _transition(m, Event.VERIFY_REQUESTED, actor, now, f"{actor} asked for a new {kind} verification")
    out.migration.verify_quick = quick
    out.enqueue = True
    return out


def cutover_started(m: Migration) -> bool:
    """From here on the hook may have switched the app: writes back to the source risk two writable servers."""
    # A cutover refused because the source moved (it resumes with a new copy) changed nothing on either side.
    failed_in_cutover = (m.state == State.FAILED and m.failure is not None and m.failure.step == StepName.CUTOVER
                         and m.failure.resume_state == State.CUTTING_OVER)
    # A hook that ever started may have switched the app, whatever failed after it.
    hook_ran = m.state == State.FAILED and m.hook is not None
    return m.state in (State.CUTTING_OVER, State.AWAITING_UNFREEZE_APPROVAL) or failed_in_cutover or hook_ran


def request_unfreeze(m: Migration, actor: str, now: datetime, abort: bool = False, policy: Policy | None = None,
                     drop_created: bool = False) -> Outcome:
    if drop_created:
        _check_drop_created(m)
    if m.state == State.CUT_OVER:
        raise Refused(f"{m.source} was cut over to {m.target}; it stays frozen so nothing writes to the old server.")
    if m.state == State.CUTTING_OVER:
        raise Refused(f"The cutover of {m.source} to {m.target} is running; wait for it to end. If it fails, giving "
                      "writes back to the source needs a second person's approval, as the cutover did.")
    if cutover_started(m):
        return _request_writes_back(m, actor, now, abort, policy or Policy(approvers=frozenset()))
    if abort and not m.source_frozen and needs_cleanup(m):
        out = _transition(m, Event.UNFREEZE_REQUESTED, actor, now,
                          f"{actor} aborted the migration; removing its replication from both servers")
        out.migration.aborting, out.migration.window_rollback = True, False
        _void_pending(out.migration, "the migration was aborted", now)
        out.enqueue = True
        return out
    if abort and not m.source_frozen:
        return _transition(m, Event.ABORTED, actor, now, f"{actor} aborted the migration")
    if not m.source_frozen:
        raise Refused(f"{m.source} is not frozen; nothing to unfreeze.")
    verb = "aborted the migration; unfreezing" if abort else "asked to unfreeze"
    out = _transition(m, Event.UNFREEZE_REQUESTED, actor, now, f"{actor} {verb} {m.source}")
    out.migration.aborting, out.migration.source_moved, out.migration.window_rollback = abort, None, False
    out.migration.drop_created = drop_created
    _void_pending(out.migration, "unfreeze requested", now)
    out.enqueue = True
    return out


def _check_drop_created(m: Migration) -> None:
    """Dropping the target's databases is for an abort before the cutover, with the worker unfreezing the source."""
    where = m.target or "the target"
    if not m.created_target_databases:
        raise Refused(f"pgmove created no database on {where} for this migration; abort without --drop-created.")
    if m.state in (State.CUT_OVER, State.CUTTING_OVER) or cutover_started(m):
        raise Refused(f"The cutover of {m.source} started: the app may already use {where}, so pgmove drops nothing "
                      "there. Abort without --drop-created.")
    if not m.source_frozen:
        raise Refused(f"{m.source} is not frozen, so no worker step runs for this abort and pgmove cannot drop "
                      f"{', '.join(m.created_target_databases)} on {where}: abort, then drop them there by hand.")


def _void_pending(m: Migration, reason: str, now: datetime) -> None:
    if m.approval and m.approval.decision == Decision.PENDING:
        m.approval.decision, m.approval.reason, m.approval.decided_at = Decision.VOIDED, reason, now


def _request_writes_back(m: Migration, actor: str, now: datetime, abort: bool, policy: Policy) -> Outcome:
    """After a cutover started, unfreeze and abort are a request a second person approves, like the cutover."""
    pending = m.approval if m.approval and m.approval.decision == Decision.PENDING else None
    if pending and pending.expires_at > now:
        raise Refused(
            f"{m.source} already has a {pending.action} request from <@{pending.requester}> waiting for approval "
            f"(expires {pending.expires_at:%H:%M} UTC)."
        )
    verb = "abort of the migration, unfreezing" if abort else "unfreeze of"
    out = _transition(m, Event.UNFREEZE_APPROVAL_REQUESTED, actor, now,
                      f"{actor} requested the {verb} {m.source} after its cutover started (needs a second person)")
    out.migration.aborting = abort
    out.migration.approval = Approval(
        id=secrets.token_hex(4), action=ApprovalAction.UNFREEZE, requester=actor, plan_digest=m.plan_digest,
        requested_at=now, expires_at=now + policy.approval_ttl, prior_state=pending.prior_state if pending else m.state,
    )
    return out


def retry(m: Migration, actor: str, now: datetime) -> Outcome:
    if m.state == State.VERIFY_FAILED:  # the worker dropped the copy's checkpoints: everything is copied anew
        out = _transition(m, Event.RETRY, actor, now, f"{actor} asked for a new copy of {m.source} after the failed "
                          "verification (the source stays frozen)")
        out.enqueue = True
        return out
    if m.state != State.FAILED or m.failure is None:
        raise Refused(f"Only a failed migration can be retried; {m.source} is {m.state.value}.")
    moved = m.source_moved if m.failure.step == StepName.CUTOVER and m.failure.resume_state == State.FROZEN else None
    what = f"the copy of {m.source}, whose source moved after verification" if moved else f"the {m.failure.step} step"
    out = _transition(m, Event.RETRY, actor, now, f"{actor} retried {what}", to=m.failure.resume_state)
    out.migration.failure = None
    if moved is not None:
        # Retrying is the decision to take the source as the cutover found it: the new copy's quiet checks and
        # verification compare against that, so a write since is still caught. Nothing else resets this baseline.
        out.migration.quiet_baseline, out.migration.quiet_mark = moved.baseline, moved.mark
        out.migration.source_moved = None
    out.enqueue = True
    return out


def step_transition(m: Migration, event: Event, now: datetime, message: str, worker: str) -> Outcome:
    """A worker reports that its step moved the migration on."""
    return _transition(m, event, f"worker:{worker}", now, message)


def fail(m: Migration, step: StepName, reason: str, now: datetime, actor: str, resume_state: State) -> Outcome:
    out = _transition(m, Event.STEP_FAILED, actor, now, f"{step} failed: {reason}")
    out.migration.failure = Failure(step=step, reason=reason, resume_state=resume_state, at=now)
    out.migration.lease = None
    out.events[-1].step = step
    return out


def _transition(
    m: Migration, event: Event, actor: str, now: datetime, message: str, to: State | None = None
) -> Outcome:
    target = next_state(m.state, event)
    if target is None:
        raise Refused(_not_now(m, event))
    if to is not None:
        target = to
    new = m.model_copy(deep=True)
    new.state, new.updated_at = target, now
    return Outcome(new, [_event(EventKind.TRANSITION, now, actor, message, event, m.state, target)])


def _not_now(m: Migration, event: Event) -> str:
    where = f"{m.source} is {m.state.value.replace('_', ' ')}"
    hints = {
        Event.CUTOVER_REQUESTED: "cutover needs a verified copy",
        Event.FREEZE_REQUESTED: "freeze needs a ready plan (or no migration at all)",
        Event.VERIFY_REQUESTED: "verify needs a finished copy",
        Event.UNFREEZE_REQUESTED: "nothing is frozen",
        Event.REPLANNED: "a new plan needs the source unfrozen and no step running",
        Event.SYNC_REQUESTED: "sync needs a ready plan made with --method logical",
    }
    hint = hints.get(event)
    if m.state in WORKING:
        hint = "a step is running; wait for it" + (f" ({hint})" if hint else "")
    elif m.state not in RESTING and hint is None:
        hint = "not allowed in this state"
    return f"Not now: {where}" + (f"; {hint}." if hint else ".")


def _event(
    kind: EventKind, at: datetime, actor: str, message: str, event: Event | None,
    from_state: State | None, to_state: State | None,
) -> AuditEvent:
    return AuditEvent(kind=kind, at=at, actor=actor, message=message, event=event, from_state=from_state, to_state=to_state)


def _decision(at: datetime, actor: str, message: str, approval: Approval) -> AuditEvent:
    return AuditEvent(
        kind=EventKind.DECISION, at=at, actor=actor, message=message,
        data=approval.model_dump(mode="json", include={"id", "action", "requester", "plan_digest", "decision", "approver", "reason"}),
    )


# -- the worker's side: which step a state calls for, and its bookkeeping --------------------------

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


def is_window(m: Migration) -> bool:
    """The cutover approved from in_sync: freeze to hook inside the approval's window."""
    a = m.approval
    return a is not None and a.action == ApprovalAction.CUTOVER and a.window_seconds is not None and a.decision == Decision.APPROVED


def start_step(m: Migration, step: StepName, worker: str, token: str, now: datetime) -> Outcome:
    if step_due(m) != step:
        raise Refused(f"{step} is not due: {m.source} is {m.state.value}")
    if m.state == State.FROZEN:
        what = "drain" if step == StepName.DRAIN else "copy"
        out = _transition(m, Event.COPY_STARTED, f"worker:{worker}", now, f"{what} of {m.source} to {m.target} started")
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
    out = _transition(m, event, f"worker:{m.lease.worker}", now, message)
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
    out = fail(m, step, reason, now, actor, _resume_state(m, step))
    record = out.migration.last_step(step)
    if record is not None and record.status == StepStatus.RUNNING:
        record.status, record.finished_at, record.message = StepStatus.FAILED, now, reason
    return out


def window_failed(m: Migration, reason: str, now: datetime, actor: str) -> Outcome:
    """The window's switch failed before its hook ran (or its worker died): the source gets writes back at once,
    replication keeps running, and the migration returns to in_sync. Never after the hook: the app may have moved."""
    if m.hook is not None:
        raise Refused("the cutover hook has run: giving writes back to the source needs a second person")
    out = _transition(m, Event.WINDOW_FAILED, actor, now,
                      f"the cutover window of {m.source} failed ({reason}); unfreezing it, replication keeps running")
    new = out.migration
    new.window_rollback, new.aborting, new.lease = True, False, None
    record = new.last_step(StepName.SWITCH)
    if record is not None and record.status == StepStatus.RUNNING:
        record.status, record.finished_at, record.message = StepStatus.FAILED, now, reason
    out.events[-1].step = StepName.SWITCH
    out.enqueue = True
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


def updated(m: Migration, **changes: object) -> Migration:
    """A new record with `changes`, validated as a whole: a value of the wrong shape or a name that is no field
    raises here, before anything is written, instead of storing a record nobody can read back."""
    unknown = sorted(set(changes) - set(Migration.model_fields))
    if unknown:
        raise ValueError(f"not fields of a migration: {', '.join(unknown)}")
    return Migration.model_validate({**m.model_dump(), **changes})
