"""The two-person rule and the other pure decisions, without Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pgmove.state import actions, outcome, work
from pgmove.state.errors import Refused
from pgmove.state.machine import Event, State
from pgmove.state.models import ApprovalAction, FreezeSnapshot, Plan, StepName
from pgmove.state.report import VerificationReport, VerifyMode

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
POLICY = outcome.Policy(approvers=frozenset({"bob", "carol", "alice"}), approval_ttl=timedelta(minutes=30))


def ready(target: str | None = "prod-new"):  # type: ignore[no-untyped-def]
    m = actions.new_migration("m1", Plan(source="prod-old", target=target), "alice", NOW).migration
    return work.step_transition(m, Event.PREFLIGHT_OK, NOW, "ok", "w").migration


def awaiting():  # type: ignore[no-untyped-def]
    return actions.request_approval(ready(), ApprovalAction.FREEZE, "alice", NOW, POLICY).migration


def test_the_requester_cannot_approve_even_as_an_approver():
    """alice is an approver here, and still cannot approve her own request."""
    with pytest.raises(Refused, match="second person"):
        actions.decide(awaiting(), "alice", True, NOW, POLICY)


def test_the_requester_may_withdraw_by_rejecting():
    """Rejecting your own request is allowed: it only makes things safer."""
    out = actions.decide(awaiting(), "alice", False, NOW, POLICY)
    assert out.migration.state == State.READY and not out.enqueue


def test_approval_needs_a_configured_approver():
    """Someone who is not a configured approver cannot approve a request."""
    with pytest.raises(Refused, match="not a configured approver"):
        actions.decide(awaiting(), "dave", True, NOW, POLICY)


def test_approval_after_expiry_is_refused():
    """An approval that comes when the request's time is up is refused as expired."""
    with pytest.raises(Refused, match="expired"):
        actions.decide(awaiting(), "bob", True, NOW + timedelta(minutes=30), POLICY)


def test_approval_is_bound_to_the_plan_digest():
    """If the plan changes under a pending request, the approval does not count."""
    m = awaiting()
    m.plan_digest = Plan(source="prod-old", target="prod-new", jobs=8).digest()
    with pytest.raises(Refused, match="plan changed"):
        actions.decide(m, "bob", True, NOW, POLICY)


def test_a_good_approval_moves_to_freezing_and_asks_for_the_worker():
    """A configured second person's approval in time moves the migration to freezing, records the approver and
    enqueues the worker."""
    out = actions.decide(awaiting(), "bob", True, NOW, POLICY)
    assert out.migration.state == State.FREEZING and out.enqueue
    assert out.migration.approval.approver == "bob"
    assert [e.kind for e in out.events] == ["decision", "transition"]


def test_replan_voids_the_pending_request():
    """Replanning while a request is pending voids it, so approving it afterwards is refused."""
    out = actions.replan(awaiting(), Plan(source="prod-old", target="prod-new", jobs=4), "alice", NOW)
    assert out.migration.state == State.PLANNED
    assert out.migration.approval.decision == "voided"
    with pytest.raises(Refused, match="already voided"):
        actions.decide(out.migration, "bob", True, NOW, POLICY)


def test_a_frozen_source_cannot_be_replanned():
    """Once the source is frozen, a new plan is refused."""
    m = actions.decide(awaiting(), "bob", True, NOW, POLICY).migration
    m.freeze = FreezeSnapshot(taken_at=NOW, databases=["a"])
    with pytest.raises(Refused, match="frozen"):
        actions.replan(m, Plan(source="prod-old", target="prod-new"), "alice", NOW)


def test_a_failed_step_resumes_where_it_should():
    """A copy that failed restarts from frozen (a clean target); a freeze resumes freezing."""
    m = actions.decide(awaiting(), "bob", True, NOW, POLICY).migration
    m = work.start_step(m, StepName.FREEZE, "w", "tok", NOW).migration
    failed = work.fail_step(m, StepName.FREEZE, "boom", NOW, "w", "tok").migration
    assert failed.state == State.FAILED and failed.failure.resume_state == State.FREEZING
    assert actions.retry(failed, "alice", NOW).migration.state == State.FREEZING
    assert work.RESUME_STATE[StepName.COPY] == State.FROZEN


def test_a_step_result_from_a_worker_that_lost_its_lease_is_dropped():
    """A worker whose lease token is no longer the current one cannot record its step's result."""
    m = actions.decide(awaiting(), "bob", True, NOW, POLICY).migration
    m = work.start_step(m, StepName.FREEZE, "w", "tok", NOW).migration
    with pytest.raises(Refused, match="dropped"):
        work.finish_step(m, StepName.FREEZE, "other-token", Event.FROZEN, "done", {}, NOW)


def test_unfreeze_is_refused_after_cutover_and_when_not_frozen():
    """Unfreeze is refused when nothing is frozen, and after the cutover, when the source stays frozen for good."""
    m = ready()
    with pytest.raises(Refused, match="not frozen"):
        actions.request_unfreeze(m, "alice", NOW)
    m.state = State.CUT_OVER
    with pytest.raises(Refused, match="stays frozen"):
        actions.request_unfreeze(m, "alice", NOW)


def test_abort_without_a_freeze_ends_at_once_and_with_one_unfreezes_first():
    """Abort ends a migration at once when nothing is frozen, and otherwise has the worker unfreeze the source first."""
    assert actions.request_unfreeze(ready(), "alice", NOW, abort=True).migration.state == State.ABORTED
    m = actions.decide(awaiting(), "bob", True, NOW, POLICY).migration
    m.freeze = FreezeSnapshot(taken_at=NOW, databases=["a"])
    out = actions.request_unfreeze(m, "alice", NOW, abort=True)
    assert out.migration.state == State.UNFREEZING and out.migration.aborting and out.enqueue


def test_a_standalone_freeze_has_nothing_to_copy():
    """A freeze requested without a plan runs the freeze step and then has no step due: there is nothing to copy."""
    m = actions.standalone_freeze_record("m2", "prod-old", "alice", NOW)
    m = actions.request_approval(m, ApprovalAction.FREEZE, "alice", NOW, POLICY).migration
    m = actions.decide(m, "bob", True, NOW, POLICY).migration
    assert work.step_due(m) == StepName.FREEZE
    m.state = State.FROZEN
    assert work.step_due(m) is None


def test_cutover_needs_a_full_verification_not_a_quick_one():
    """A quick verification samples content; the point of no return needs every row compared."""
    m = ready()
    m.state = State.VERIFIED
    m.verification = VerificationReport(ok=True, mode=VerifyMode.QUICK)
    with pytest.raises(Refused, match="full one"):
        actions.request_approval(m, ApprovalAction.CUTOVER, "alice", NOW, POLICY)
    m.verification = VerificationReport(ok=True, mode=VerifyMode.FULL)
    assert actions.request_approval(m, ApprovalAction.CUTOVER, "alice", NOW, POLICY).migration.state == State.AWAITING_CUTOVER_APPROVAL


def failed_cutover(hook=None):  # type: ignore[no-untyped-def]
    """A migration whose cutover step failed (the hook may have switched the app before it did)."""
    m = ready()
    m.freeze = FreezeSnapshot(taken_at=NOW, databases=["a"])
    m.state = State.VERIFIED
    m = actions.request_approval(m, ApprovalAction.CUTOVER, "alice", NOW, POLICY).migration
    m = actions.decide(m, "bob", True, NOW, POLICY).migration
    m = work.start_step(m, StepName.CUTOVER, "w", "tok", NOW).migration
    m.hook = hook
    return work.fail_step(m, StepName.CUTOVER, "the cutover hook failed", NOW, "w", "tok").migration


@pytest.mark.parametrize("abort", [False, True])
def test_after_a_cutover_started_giving_writes_back_takes_two_people(abort):  # type: ignore[no-untyped-def]
    """Unfreeze or abort after a failed cutover is a request, not an action: the requester cannot approve it,
    a configured approver can, and only then does the worker unfreeze."""
    verb = "abort" if abort else "unfreeze"
    out = actions.request_unfreeze(failed_cutover(), "alice", NOW, abort=abort, policy=POLICY)
    m = out.migration
    assert m.state == State.AWAITING_UNFREEZE_APPROVAL and not out.enqueue and m.source_frozen
    assert m.approval.action == ApprovalAction.UNFREEZE and m.aborting == abort
    assert work.step_due(m) is None
    with pytest.raises(Refused, match="second person"):
        actions.decide(m, "alice", True, NOW, POLICY)
    with pytest.raises(Refused, match="already has a unfreeze request"):
        actions.request_unfreeze(m, "carol", NOW, abort=abort, policy=POLICY)
    approved = actions.decide(m, "bob", True, NOW, POLICY)
    assert approved.migration.state == State.UNFREEZING and approved.enqueue and approved.migration.aborting == abort
    assert work.step_due(approved.migration) == StepName.UNFREEZE, verb


def test_a_rejected_writes_back_request_leaves_the_failed_cutover_to_retry():
    """Rejecting a request to give writes back after a failed cutover keeps the source frozen, and retry runs the
    cutover again."""
    m = actions.request_unfreeze(failed_cutover(), "alice", NOW, abort=True, policy=POLICY).migration
    back = actions.decide(m, "bob", False, NOW, POLICY, reason="the app is on prod-new").migration
    assert back.state == State.FAILED and back.source_frozen and not back.aborting
    assert actions.retry(back, "alice", NOW).migration.state == State.CUTTING_OVER


def test_while_the_cutover_runs_unfreeze_is_refused():
    """While the cutover step runs, unfreeze is refused with a request to wait."""
    m = failed_cutover()
    m.state, m.failure = State.CUTTING_OVER, None
    with pytest.raises(Refused, match="running; wait"):
        actions.request_unfreeze(m, "alice", NOW, policy=POLICY)


def test_a_failure_before_the_cutover_still_unfreezes_at_once():
    """The rule starts with the cutover: a failed copy is put back by one operator, as before."""
    m = actions.decide(awaiting(), "bob", True, NOW, POLICY).migration
    m = work.start_step(m, StepName.FREEZE, "w", "tok", NOW).migration
    m.freeze = FreezeSnapshot(taken_at=NOW, databases=["a"])
    m = work.fail_step(m, StepName.FREEZE, "boom", NOW, "w", "tok").migration
    assert actions.request_unfreeze(m, "alice", NOW, policy=POLICY).migration.state == State.UNFREEZING


def test_abort_drops_the_created_databases_only_while_frozen_and_before_any_cutover():
    """--drop-created is carried to the worker's unfreeze from a frozen source; refused with nothing created, with
    nothing frozen (no worker step runs) and once a cutover started (the app may use the target)."""
    m = ready()
    m.freeze = FreezeSnapshot(taken_at=NOW, databases=["a"])
    m.state = State.VERIFY_FAILED
    with pytest.raises(Refused, match="created no database on prod-new"):
        actions.request_unfreeze(m, "alice", NOW, abort=True, drop_created=True)
    m.created_target_databases = ["a"]
    out = actions.request_unfreeze(m, "alice", NOW, abort=True, drop_created=True)
    assert out.migration.state == State.UNFREEZING and out.migration.drop_created and out.enqueue
    unfrozen = ready()
    unfrozen.created_target_databases = ["a"]
    with pytest.raises(Refused, match="not frozen.*drop them there by hand"):
        actions.request_unfreeze(unfrozen, "alice", NOW, abort=True, drop_created=True)
    cut = failed_cutover()
    cut.created_target_databases = ["a"]
    with pytest.raises(Refused, match="cutover of prod-old started"):
        actions.request_unfreeze(cut, "alice", NOW, abort=True, policy=POLICY, drop_created=True)
