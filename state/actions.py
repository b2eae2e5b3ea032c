"""Pure decisions on a migration: each takes a record and returns the next record and its events.

The two-person rule lives here, so the CLI, Slack and any future edge enforce the same thing.
Nothing here does I/O; the store applies an Outcome atomically or not at all.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from pgmove.state.announce import WindowCheck
from pgmove.state.errors import Refused
from pgmove.state.machine import Event, State, next_state
from pgmove.state.models import (
    Approval,
    ApprovalAction,
    Decision,
    EventKind,
    FreezeOptions,
    Migration,
    Plan,
    StepName,
)
from pgmove.state.outcome import Outcome, Policy, audit_event, decision_event, not_now, transition
from pgmove.state.report import VerifyMode
from pgmove.state.rollback import rollback_plan
from pgmove.state.sync import DEFAULT_WINDOW_SECONDS, check_sync, needs_cleanup


def new_migration(migration_id: str, plan: Plan, actor: str, now: datetime) -> Outcome:
    migration = Migration(
        id=migration_id, source=plan.source, target=plan.target, state=State.PLANNED, plan=plan,
        plan_digest=plan.digest(), created_by=actor, created_at=now, updated_at=now,
    )
    what = f"{plan.source} -> {plan.target}" if plan.target else plan.source
    event = audit_event(EventKind.TRANSITION, now, actor, f"{actor} planned {what}", Event.REPLANNED, None, State.PLANNED)
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
    out = transition(m, Event.REPLANNED, actor, now, f"{actor} re-planned {plan.source} -> {plan.target}")
    new = out.migration
    if new.approval and new.approval.decision == Decision.PENDING:
        new.approval.decision = Decision.VOIDED
        new.approval.decided_at = now
        new.approval.reason = "the plan changed"
        out.events.append(decision_event(now, actor, f"pending {new.approval.action} request voided: the plan changed", new.approval))
    new.plan, new.plan_digest, new.target = plan, plan.digest(), plan.target
    new.preflight, new.failure, new.verification = None, None, None
    out.enqueue = True
    return out


def request_approval(
    m: Migration, action: ApprovalAction, actor: str, now: datetime, policy: Policy,
    freeze_options: FreezeOptions | None = None, window_seconds: float | None = None,
    window: WindowCheck | None = None,
) -> Outcome:
    """Ask a second person for the freeze or the cutover. A freeze's options (None: the defaults) go on the
    record with the request: they are part of what the approver sees and approves."""
    if freeze_options is not None and action != ApprovalAction.FREEZE:
        raise ValueError(f"freeze options belong to a freeze request, not a {action.value} request")
    if freeze_options is not None and freeze_options.archive and m.target is None:
        raise Refused("--archive is taken during a move's copy; plan one first "
                      f"(`/pgmove plan {m.source} <target>`), or freeze without --archive.")
    if freeze_options is not None and freeze_options.snapshot and m.target is not None:
        raise Refused(f"--snapshot is for a freeze with no migration, and {m.source} has one planned to {m.target}: "
                      f"freeze without --snapshot, or `/pgmove abort {m.source}` first.")
    event = Event.FREEZE_REQUESTED if action == ApprovalAction.FREEZE else Event.CUTOVER_REQUESTED
    if action == ApprovalAction.CUTOVER and m.state == State.VERIFIED and m.verification and m.verification.mode == VerifyMode.QUICK:
        raise Refused(f"The last verification was a quick one; cutover needs a full one: `/pgmove verify {m.source}`.")
    if action == ApprovalAction.CUTOVER and m.state == State.VERIFY_FAILED:
        reasons = "; ".join(m.verification.problems[:5] if m.verification else []) or "see the verification report"
        raise Refused(f"Cutover refused: the last verification failed ({reasons}). Fix, re-copy or `/pgmove verify {m.source}`.")
    if next_state(m.state, event) is None:
        raise Refused(not_now(m, event))
    if m.state == State.IN_SYNC:
        check_sync(m, action, policy)
    pending = m.approval if m.approval and m.approval.decision == Decision.PENDING else None
    if pending and pending.expires_at > now:
        raise Refused(
            f"{m.source} already has a {pending.action} request from <@{pending.requester}> waiting for approval "
            f"(expires {pending.expires_at:%H:%M} UTC)."
        )
    if action == ApprovalAction.FREEZE and m.preflight and m.preflight.problems:
        raise Refused("The plan has problems that block the freeze: " + "; ".join(m.preflight.problems))
    prior = pending.prior_state if pending else m.state
    out = transition(m, event, actor, now, f"{actor} requested {action.value} of {m.source}")
    out.migration.approval = Approval(
        id=secrets.token_hex(4), action=action, requester=actor, plan_digest=m.plan_digest,
        requested_at=now, expires_at=now + policy.approval_ttl, prior_state=prior, window=window,
    )
    if action == ApprovalAction.CUTOVER and prior == State.IN_SYNC:
        out.migration.approval.window_seconds = window_seconds or DEFAULT_WINDOW_SECONDS
    if action == ApprovalAction.CUTOVER:  # what the approver approves, kept with the request and in the trail
        out.migration.approval.rollback = out.events[-1].data["rollback"] = rollback_plan(m, prior == State.IN_SYNC)
    if action == ApprovalAction.FREEZE:
        out.migration.freeze_options = freeze_options or FreezeOptions()
    return out


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
        out = transition(m, Event.APPROVED, actor, now, f"{actor} approved the {a.action} requested by {a.requester}")
        out.enqueue = True
    else:
        out = transition(m, Event.REJECTED, actor, now, f"{actor} rejected the {a.action}", to=a.prior_state)
        out.migration.aborting = False
    approval = out.migration.approval
    assert approval is not None
    approval.decision = Decision.APPROVED if approve else Decision.REJECTED
    approval.approver, approval.decided_at, approval.reason = actor, now, reason
    because = f": {reason}" if reason else ""  # kept with the decision: the reply, the thread and the history say it
    out.events.insert(0, decision_event(now, actor, f"{actor} {verb} {a.action} request {a.id}{because}", approval))
    return out


def request_verify(m: Migration, actor: str, now: datetime, quick: bool = False) -> Outcome:
    kind = "quick" if quick else "full"
    out = transition(m, Event.VERIFY_REQUESTED, actor, now, f"{actor} asked for a new {kind} verification")
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
    # The app's writers a pause_app_hook may have paused (it started, whatever became of it) are resumed by the
    # unfreeze step's resume_app_hook, so this abort goes through it too.
    if abort and not m.source_frozen and (needs_cleanup(m) or m.app_pause is not None):
        undo = "removing its replication from both servers" if needs_cleanup(m) else "resuming the app it paused"
        out = transition(m, Event.UNFREEZE_REQUESTED, actor, now, f"{actor} aborted the migration; {undo}")
        out.migration.aborting, out.migration.window_rollback = True, False
        _void_pending(out.migration, "the migration was aborted", now)
        out.enqueue = True
        return out
    if abort and not m.source_frozen:
        return transition(m, Event.ABORTED, actor, now, f"{actor} aborted the migration")
    if not m.source_frozen and m.app_pause is not None:
        raise Refused(f"{m.source} is not frozen, but its pause_app_hook ran, so the app's writers may be paused: "
                      f"`/pgmove abort {m.source}` runs its resume_app_hook.")
    if not m.source_frozen:
        raise Refused(f"{m.source} is not frozen; nothing to unfreeze.")
    verb = "aborted the migration; unfreezing" if abort else "asked to unfreeze"
    out = transition(m, Event.UNFREEZE_REQUESTED, actor, now, f"{actor} {verb} {m.source}")
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
    out = transition(m, Event.UNFREEZE_APPROVAL_REQUESTED, actor, now,
                      f"{actor} requested the {verb} {m.source} after its cutover started (needs a second person)")
    out.migration.aborting = abort
    out.migration.approval = Approval(
        id=secrets.token_hex(4), action=ApprovalAction.UNFREEZE, requester=actor, plan_digest=m.plan_digest,
        requested_at=now, expires_at=now + policy.approval_ttl, prior_state=pending.prior_state if pending else m.state,
    )
    return out


def retry(m: Migration, actor: str, now: datetime) -> Outcome:
    if m.state == State.VERIFY_FAILED:  # the worker dropped the copy's checkpoints: everything is copied anew
        out = transition(m, Event.RETRY, actor, now, f"{actor} asked for a new copy of {m.source} after the failed "
                          "verification (the source stays frozen)")
        out.enqueue = True
        return out
    if m.state != State.FAILED or m.failure is None:
        raise Refused(f"Only a failed migration can be retried; {m.source} is {m.state.value}.")
    moved = m.source_moved if m.failure.step == StepName.CUTOVER and m.failure.resume_state == State.FROZEN else None
    what = f"the copy of {m.source}, whose source moved after verification" if moved else f"the {m.failure.step} step"
    out = transition(m, Event.RETRY, actor, now, f"{actor} retried {what}", to=m.failure.resume_state)
    out.migration.failure = None
    if moved is not None:
        # Retrying is the decision to take the source as the cutover found it: the new copy's quiet checks and
        # verification compare against that, so a write since is still caught. Nothing else resets this baseline.
        out.migration.quiet_baseline, out.migration.quiet_mark = moved.baseline, moved.mark
        out.migration.source_moved = None
    out.enqueue = True
    return out
