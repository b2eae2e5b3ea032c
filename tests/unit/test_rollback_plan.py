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
from pgmove.state.machine import Event, State
from pgmove.state.models import ApprovalAction, FreezeOptions, Plan, StepName, StepStatus
from pgmove.state.replication import SyncStatus
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


def test_an_offline_cutover_approval_says_target_writes_since_cutover_will_be_lost():
    """Offline: unfreeze the source and point the app back before writes resume, lost writes after; the text is on
    the request, in its event, in the chat and the Slack message, and in the decision the approver makes."""
    out = actions.request_approval(verified(), ApprovalAction.CUTOVER, "alice", NOW, POLICY)
    plan = out.migration.approval.rollback
    assert "`/pgmove unfreeze prod-old`" in plan and "pointed back at prod-old by hand" in plan
    assert "writes made on prod-new since the cutover will be lost" in plan
    assert "reverse hook" in plan and "no reverse hook" in plan  # said to be missing, never promised
    assert out.events[-1].data["rollback"] == plan
    assert plan in shown(out.migration)
    decided = actions.decide(out.migration, "bob", True, NOW, POLICY)
    assert decided.events[0].data["rollback"] == plan


def test_a_logical_cutover_approval_says_there_is_no_reverse_replication():
    """Logical from in sync (the one-approval window): the window's automatic unfreeze, and after the switch
    writes on the target are lost unless copied back by hand, since pgmove has no reverse replication."""
    m = verified("logical")
    m.state = State.IN_SYNC
    m.sync_status = SyncStatus(at=NOW, databases=[])
    out = actions.request_approval(m, ApprovalAction.CUTOVER, "alice", NOW, POLICY, window_seconds=30)
    plan = out.migration.approval.rollback
    assert "no reverse replication" in plan and "copy those writes back by hand" in plan
    assert "unfreezes prod-old automatically" in plan
    assert plan in shown(out.migration)


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
