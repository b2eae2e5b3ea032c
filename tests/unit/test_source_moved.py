"""A cutover refused because the source moved after verification: where retry and unfreeze go, without Redis."""

from __future__ import annotations

from datetime import timedelta

from pgmove.state import actions, work
from pgmove.state.machine import State
from pgmove.state.models import (
    ApprovalAction,
    CutOverMark,
    FreezeSnapshot,
    HookReport,
    Migration,
    MovedSource,
    QuietMark,
    StepName,
)
from tests.unit.test_actions import NOW, POLICY, ready

OLD = {"appdb": "before"}
SEEN = MovedSource(problems=["appdb: public.orders: rows written by 1 transaction(s)"], at=NOW + timedelta(seconds=5),
                   baseline={"appdb": "after"}, mark=QuietMark(next_xid=900))


def refused_cutover(moved: MovedSource):  # type: ignore[no-untyped-def]
    m = ready()
    m.freeze, m.quiet_baseline, m.quiet_mark = FreezeSnapshot(taken_at=NOW, databases=["appdb"]), OLD, QuietMark(next_xid=700)
    m.state = State.VERIFIED
    m = actions.request_approval(m, ApprovalAction.CUTOVER, "alice", NOW, POLICY).migration
    m = actions.decide(m, "bob", True, NOW, POLICY).migration
    m = work.start_step(m, StepName.CUTOVER, "w", "tok", NOW).migration
    m.source_moved = moved
    return work.fail_step(m, StepName.CUTOVER, "Cutover refused: ...", NOW, "w", "tok").migration


def test_retry_after_the_source_moved_recopies_from_the_source_as_the_cutover_found_it():
    """Retry goes to a new copy (never the cutover again) whose baseline is what the cutover saw."""
    m = refused_cutover(SEEN)
    assert m.failure.resume_state == State.FROZEN and m.quiet_baseline == OLD
    out = actions.retry(m, "alice", NOW)
    assert out.migration.state == State.FROZEN and work.step_due(out.migration) == StepName.COPY and out.enqueue
    assert out.migration.quiet_baseline == SEEN.baseline and out.migration.quiet_mark == SEEN.mark
    assert out.migration.source_moved is None


def test_a_cutover_that_changed_nothing_is_unfrozen_by_one_operator():
    """Nothing was switched, so the two-person rule for writes back does not apply."""
    m = refused_cutover(SEEN)
    assert not actions.cutover_started(m)
    out = actions.request_unfreeze(m, "alice", NOW, policy=POLICY)
    assert out.migration.state == State.UNFREEZING and out.migration.source_moved is None


def test_a_source_moved_record_from_an_earlier_run_does_not_reroute_a_later_cutover_failure():
    """Only a refusal found during this very run of the step sends retry to a new copy."""
    m = refused_cutover(SEEN.model_copy(update={"at": NOW - timedelta(hours=1)}))
    assert m.failure.resume_state == State.CUTTING_OVER and actions.cutover_started(m)


def test_the_cut_over_mark_and_the_moved_source_round_trip_through_json():
    """Both are persisted: the mark in the server's freeze record, the moved source on the migration."""
    m = refused_cutover(SEEN)
    assert m.freeze is not None
    m.freeze = m.freeze.model_copy(update={"cut_over": CutOverMark(target="prod-new", migration_id="m1", at=NOW)})
    m.source_moved = SEEN
    assert Migration.model_validate_json(m.model_dump_json()) == m
    assert FreezeSnapshot.model_validate_json(m.freeze.model_dump_json()).cut_over == m.freeze.cut_over


def test_a_source_that_moved_after_the_hook_ran_is_never_recopied_nor_unfrozen_by_one_person():
    """A retried cutover whose hook had already run (the app may be on the target) stays a cutover to retry, and
    giving writes back to the source still takes a second person."""
    m = ready()
    m.freeze, m.quiet_baseline, m.quiet_mark = FreezeSnapshot(taken_at=NOW, databases=["appdb"]), OLD, QuietMark(next_xid=700)
    m.state = State.VERIFIED
    m = actions.request_approval(m, ApprovalAction.CUTOVER, "alice", NOW, POLICY).migration
    m = actions.decide(m, "bob", True, NOW, POLICY).migration
    m = work.start_step(m, StepName.CUTOVER, "w", "tok", NOW).migration
    m.hook = HookReport(argv0="switch-app", started_at=NOW, finished_at=NOW, exit_status=1)
    m.source_moved = SEEN
    m = work.fail_step(m, StepName.CUTOVER, "Cutover refused: ...", NOW, "w", "tok").migration
    assert m.failure.resume_state == State.CUTTING_OVER and actions.cutover_started(m)
    assert actions.retry(m, "alice", NOW).migration.state == State.CUTTING_OVER
    out = actions.request_unfreeze(m, "alice", NOW, policy=POLICY)
    assert out.migration.state == State.AWAITING_UNFREEZE_APPROVAL and not out.enqueue


def test_any_failure_after_a_hook_ran_needs_two_people_to_give_writes_back():
    """The hook's record, not the failing step, says whether the app may already be on the target."""
    m = refused_cutover(SEEN)
    assert not actions.cutover_started(m)
    m.hook = HookReport(argv0="switch-app", started_at=NOW)
    assert actions.cutover_started(m)
