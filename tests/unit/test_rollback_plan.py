"""The cutover approval states the way back and its cost for this migration, and never promises what pgmove
does not have (a reverse hook, reverse replication)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from pgmove.handlers import blocks, views
from pgmove.state import actions, outcome, work
from pgmove.state.apppause import pause_failed
from pgmove.state.errors import Refused
from pgmove.state.machine import TRANSITIONS, Event, State
from pgmove.state.models import ApprovalAction, FreezeOptions, Plan, StepName, StepStatus
from pgmove.state.replication import SyncStatus
from pgmove.state.rollback import REFUSED_AFTER_CUTOVER
from tests.unit.samples import NOW, snapshot

POLICY = outcome.Policy(approvers=frozenset({"bob"}), approval_ttl=timedelta(minutes=30))


def verified(method: str = "dump"):  # type: ignore[no-untyped-def]
    m = actions.new_migration("m1", Plan(source="prod-old", target="prod-new", method=method), "alice", NOW).migration
    m = work.step_transition(m, Event.PREFLIGHT_OK, NOW, "ok", "w").migration
    m.state = State.VERIFIED
    return m


def shown(m) -> str:  # type: ignore[no-untyped-def]
    assert m.approval is not None
    return views.approval_text(m) + json.dumps(blocks.approval_message(m, m.approval, ["bob"], NOW)[1])


AFTER = ("After the cutover succeeds, pgmove gives no way back: prod-old stays frozen for good with the data it had "
         "at the freeze; pgmove refuses `unfreeze`, `abort`, `freeze`, `plan` and `retry` of prod-old (a freeze even "
         "once it has forgotten the migration: prod-old carries the cut-over mark), and copies nothing from prod-new "
         "back{gone}. Going back is by hand and loses every write made on prod-new since the cutover that you do not "
         "copy back yourself: 1. stop the app's writes on prod-new; 2. as a superuser, give prod-old its writes back "
         "(pgmove's README, \"Giving writes back to a cut-over server\"); 3. copy what must be kept from prod-new to "
         "prod-old; 4. point the app at prod-old.")
LOGICAL = " (the cutover removes the replication; there is no reverse replication)"


def _plan(m, **kw) -> str:  # type: ignore[no-untyped-def]
    out = actions.request_approval(m, ApprovalAction.CUTOVER, "alice", NOW, POLICY, **kw)
    plan = out.migration.approval.rollback
    assert plan is not None and out.events[-1].data["rollback"] == plan
    return plan


def test_an_offline_cutover_approval_says_what_pgmove_does_before_and_after_and_the_way_back_by_hand():
    """Offline: before writes resume, unfreeze (two people once the cutover started) and point the app back; after,
    no way back in pgmove (each refused verb named), the manual steps in order and what they lose; the text is on
    the request, in its event, in the chat and the Slack message, and in the decision the approver makes."""
    out = actions.request_approval(verified(), ApprovalAction.CUTOVER, "alice", NOW, POLICY)
    plan = out.migration.approval.rollback
    before, after = plan.split(" After the cutover succeeds", 1)
    assert "Before writes resume on prod-new: `/pgmove unfreeze prod-old` (a second approver must agree" in before
    assert "pointed back at prod-old by hand" in before and "no reverse hook" in before
    assert "unfreezes prod-old automatically" not in before  # no window: nothing is automatic
    assert plan.endswith(" " + AFTER.format(gone=""))
    assert "will be lost" not in plan  # the old promise-like wording: the cost is now tied to what is done by hand
    assert plan in shown(out.migration)
    decided = actions.decide(out.migration, "bob", True, NOW, POLICY)
    assert decided.events[0].data["rollback"] == plan


def test_a_logical_cutover_approval_says_there_is_no_reverse_replication():
    """Logical from in sync (the one-approval window): the window's automatic unfreeze before the hook, and after
    the switch the same manual way back, with the replication gone."""
    m = verified("logical")
    m.state = State.IN_SYNC
    m.sync_status = SyncStatus(at=NOW, databases=[])
    plan = _plan(m, window_seconds=30)
    assert "Inside the window, a failure before the cutover hook unfreezes prod-old automatically." in plan
    assert plan.endswith(" " + AFTER.format(gone=LOGICAL))


def test_a_logical_cutover_after_a_separate_freeze_has_no_window_and_the_same_way_back():
    """Logical, frozen and verified first (two approvals): no automatic unfreeze, the replication's removal said."""
    plan = _plan(verified("logical"))
    assert "automatically" not in plan and plan.endswith(" " + AFTER.format(gone=LOGICAL))


def test_every_verb_the_text_says_is_refused_after_the_cutover_is_refused():
    """The state machine leaves cut_over by no event, and each verb the approval names as refused is refused."""
    assert TRANSITIONS[State.CUT_OVER] == {}
    m = verified()
    m.state = State.CUT_OVER
    assert set(REFUSED_AFTER_CUTOVER) == {"unfreeze", "abort", "freeze", "plan", "retry"}
    with pytest.raises(Refused, match="stays frozen"):
        actions.request_unfreeze(m, "alice", NOW)
    with pytest.raises(Refused, match="stays frozen"):
        actions.request_unfreeze(m, "alice", NOW, abort=True)
    with pytest.raises(Refused, match="Only a failed migration can be retried"):
        actions.retry(m, "alice", NOW)


def test_a_freeze_request_carries_no_rollback_plan_and_snapshot_needs_no_target():
    """The rollback plan is the cutover's; --snapshot on a source with a planned move is refused."""
    m = verified()
    m.state = State.READY
    out = actions.request_approval(m, ApprovalAction.FREEZE, "alice", NOW, POLICY)
    assert out.migration.approval.rollback is None
    with pytest.raises(Refused, match="--snapshot is for a freeze with no migration"):
        actions.request_approval(m, ApprovalAction.FREEZE, "alice", NOW, POLICY, FreezeOptions(snapshot=True))


def test_a_failed_app_pause_goes_back_to_the_approvals_prior_state_not_to_failed():
    """Nothing frozen: ready (or in sync) again, the freeze step marked failed, no failure to retry, no lease."""
    m = verified()
    m.state = State.READY
    m = actions.request_approval(m, ApprovalAction.FREEZE, "alice", NOW, POLICY).migration
    m = actions.decide(m, "bob", True, NOW, POLICY).migration
    m = work.start_step(m, StepName.FREEZE, "w", "tok", NOW).migration
    back = pause_failed(m, StepName.FREEZE, "the pause_app_hook x exited with status 3.", NOW, "worker:w", "tok")
    assert back.migration.state == State.READY and back.migration.lease is None and back.migration.failure is None
    assert back.migration.last_step(StepName.FREEZE).status == StepStatus.FAILED
    assert back.events[-1].event == Event.PAUSE_FAILED and "ready again" in back.events[-1].message
    m.freeze = snapshot()  # something changed after all: the usual failure, with its retry
    assert pause_failed(m, StepName.FREEZE, "x", NOW, "worker:w", "tok").migration.state == State.FAILED
