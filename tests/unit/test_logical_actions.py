"""The logical method's decisions without servers: sync, in_sync, the cutover window and its rollback, cleanup."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pgmove.state import actions, sync, work
from pgmove.state.errors import Refused
from pgmove.state.machine import Event, State, next_state
from pgmove.state.models import ApprovalAction, HookReport, Plan, StepName
from pgmove.state.replication import DatabaseLag, SyncDatabase, SyncSetup, SyncStatus
from tests.unit.samples import snapshot
from tests.unit.test_actions import NOW, POLICY


def planned(method: str = "logical"):  # type: ignore[no-untyped-def]
    m = actions.new_migration("m1", Plan(source="prod-old", target="prod-new", method=method), "alice", NOW).migration
    return work.step_transition(m, Event.PREFLIGHT_OK, NOW, "ok", "w").migration


def lag(lag_bytes: int = 0, ready: int = 3) -> DatabaseLag:
    return DatabaseLag(database="appdb", lag_bytes=lag_bytes, lag_seconds=0.1, retained_wal_bytes=1000,
                       tables_total=3, tables_ready=ready, apply_errors=0)


def setup() -> SyncSetup:
    return SyncSetup(migration_id="m1", databases=[SyncDatabase(database="appdb", publication="pgmove_m1_5",
                                                                slot="pgmove_m1_5", subscription="pgmove_m1_5")])


def in_sync(problems: list[str] | None = None, lag_bytes: int = 0, ready: int = 3):  # type: ignore[no-untyped-def]
    m = sync.request_sync(planned(), "alice", NOW).migration
    m = work.step_transition(m, Event.SYNCED, NOW, "in sync", "w").migration
    m.sync_setup = setup()
    m.sync_status = SyncStatus(at=NOW, databases=[lag(lag_bytes, ready)], problems=problems or [])
    return m


def window_running(window: float = 10):  # type: ignore[no-untyped-def]
    m = actions.request_approval(in_sync(), ApprovalAction.CUTOVER, "alice", NOW, POLICY, window_seconds=window).migration
    m = actions.decide(m, "bob", True, NOW, POLICY).migration
    return work.start_step(m, StepName.SWITCH, "w", "tok", NOW).migration


def test_sync_starts_replication_of_a_ready_logical_plan_and_asks_for_the_worker():
    """ready --sync--> syncing, with a job for the worker, whose due step is sync."""
    out = sync.request_sync(planned(), "alice", NOW)
    assert out.migration.state == State.SYNCING and out.enqueue
    assert work.step_due(out.migration) == StepName.SYNC


def test_sync_is_refused_for_a_dump_plan_and_when_already_syncing_or_in_sync():
    """A dump plan is told to re-plan with --method logical; a second sync is told it runs already."""
    with pytest.raises(Refused, match="--method logical"):
        sync.request_sync(planned("dump"), "alice", NOW)
    syncing = sync.request_sync(planned(), "alice", NOW).migration
    with pytest.raises(Refused, match="already syncing"):
        sync.request_sync(syncing, "alice", NOW)
    with pytest.raises(Refused, match="already in sync"):
        sync.request_sync(in_sync(), "alice", NOW)


def test_the_sync_step_ends_in_sync():
    """syncing --synced--> in_sync, and nothing is due for a worker there."""
    assert next_state(State.SYNCING, Event.SYNCED) == State.IN_SYNC
    assert work.step_due(in_sync()) is None


@pytest.mark.parametrize("action", [ApprovalAction.FREEZE, ApprovalAction.CUTOVER])
def test_freeze_and_cutover_from_in_sync_wait_for_a_clean_reading_under_the_lag_threshold(action):  # type: ignore[no-untyped-def]
    """A replication problem, a lag above the threshold, a table still copying or no reading at all refuses both."""
    with pytest.raises(Refused, match="DDL changed"):
        actions.request_approval(in_sync(problems=["DDL changed in appdb"]), action, "alice", NOW, POLICY)
    with pytest.raises(Refused, match="behind prod-old .*appdb 99999999 bytes behind"):
        actions.request_approval(in_sync(lag_bytes=99_999_999), action, "alice", NOW, POLICY)
    with pytest.raises(Refused, match="1 tables copying"):
        actions.request_approval(in_sync(ready=2), action, "alice", NOW, POLICY)
    never_read = in_sync()
    never_read.sync_status = None
    with pytest.raises(Refused, match="no replication status"):
        actions.request_approval(never_read, action, "alice", NOW, POLICY)
    assert actions.request_approval(in_sync(), action, "alice", NOW, POLICY).migration.state.value.startswith("awaiting")


def test_a_cutover_from_in_sync_records_its_window_and_one_approval_starts_the_switch():
    """The approval carries the window; approved, the cutting_over state's step is the bounded switch."""
    requested = actions.request_approval(in_sync(), ApprovalAction.CUTOVER, "alice", NOW, POLICY, window_seconds=10)
    assert requested.migration.state == State.AWAITING_CUTOVER_APPROVAL
    assert requested.migration.approval is not None and requested.migration.approval.window_seconds == 10
    approved = actions.decide(requested.migration, "bob", True, NOW, POLICY)
    assert approved.migration.state == State.CUTTING_OVER and approved.enqueue
    assert work.step_due(approved.migration) == StepName.SWITCH
    default = actions.request_approval(in_sync(), ApprovalAction.CUTOVER, "alice", NOW, POLICY).migration
    assert default.approval is not None and default.approval.window_seconds == sync.DEFAULT_WINDOW_SECONDS


def test_a_rejected_window_returns_to_in_sync():
    """Rejecting the cutover of an in-sync migration puts it back in sync, replication untouched."""
    m = actions.request_approval(in_sync(), ApprovalAction.CUTOVER, "alice", NOW, POLICY).migration
    out = actions.decide(m, "bob", False, NOW, POLICY)
    assert out.migration.state == State.IN_SYNC and out.migration.sync_setup is not None


def test_a_cutover_from_verified_has_no_window():
    """The two-step path's cutover (after freeze, drain, verify) is the ordinary cutover step."""
    m = in_sync()
    m.state = State.VERIFIED
    out = actions.request_approval(m, ApprovalAction.CUTOVER, "alice", NOW, POLICY, window_seconds=10)
    assert out.migration.approval is not None and out.migration.approval.window_seconds is None
    approved = actions.decide(out.migration, "bob", True, NOW, POLICY).migration
    assert work.step_due(approved) == StepName.CUTOVER


def test_a_window_that_fails_before_its_hook_unfreezes_at_once_and_returns_to_in_sync():
    """The switch's failure is no `failed` state: the unfreeze is due at once, then resumed_sync leads to in_sync."""
    out = work.fail_step(window_running(), StepName.SWITCH, "the 10s window ran out", NOW, "worker:w", "tok")
    m = out.migration
    assert m.state == State.UNFREEZING and m.window_rollback and not m.aborting and out.enqueue
    assert m.lease is None and work.step_due(m) == StepName.UNFREEZE
    record = m.last_step(StepName.SWITCH)
    assert record is not None and record.status == "failed" and "ran out" in record.message
    assert next_state(State.UNFREEZING, Event.RESUMED_SYNC) == State.IN_SYNC


def test_a_window_whose_worker_died_before_the_hook_also_unfreezes():
    """The reaper's failure of a switch (no token) takes the same way back to in_sync."""
    out = work.fail_step(window_running(), StepName.SWITCH, "the worker stopped responding", NOW, "reaper")
    assert out.migration.state == State.UNFREEZING and out.enqueue


def test_a_window_that_fails_after_its_hook_started_waits_in_failed():
    """Once the hook started the app may be on the target: no automatic unfreeze, writes back need two people."""
    m = window_running()
    m.hook = HookReport(argv0="switch-app", started_at=NOW)
    out = work.fail_step(m, StepName.SWITCH, "hook failed", NOW, "worker:w", "tok")
    assert out.migration.state == State.FAILED and actions.cutover_started(out.migration)
    with pytest.raises(Refused, match="hook has run"):
        sync.window_failed(m, "late", NOW, "w")


@pytest.mark.parametrize("state", [State.SYNCING, State.IN_SYNC])
def test_abort_while_replicating_goes_through_the_cleanup(state):  # type: ignore[no-untyped-def]
    """An abort of a migration with replication runs the unfreeze step (which drops it) before aborted."""
    m = in_sync()
    m.state = state
    out = actions.request_unfreeze(m, "alice", NOW, abort=True, policy=POLICY)
    assert out.migration.state == State.UNFREEZING and out.migration.aborting and out.enqueue
    assert work.step_due(out.migration) == StepName.UNFREEZE


def test_abort_of_a_pending_window_request_voids_it_and_cleans_up():
    """An abort while the cutover waits for approval voids the request and removes the replication."""
    m = actions.request_approval(in_sync(), ApprovalAction.CUTOVER, "alice", NOW, POLICY).migration
    out = actions.request_unfreeze(m, "carol", NOW, abort=True, policy=POLICY)
    assert out.migration.state == State.UNFREEZING and out.migration.approval is not None
    assert out.migration.approval.decision == "voided"


def test_unfreeze_of_an_unfrozen_in_sync_source_is_refused_and_abort_without_replication_ends_at_once():
    """unfreeze has nothing to do in sync; abort of a ready plan that never synced needs no step."""
    with pytest.raises(Refused, match="not frozen"):
        actions.request_unfreeze(in_sync(), "alice", NOW, policy=POLICY)
    assert actions.request_unfreeze(planned(), "alice", NOW, abort=True).migration.state == State.ABORTED


def test_a_sync_that_failed_is_cleaned_up_on_abort_even_with_nothing_recorded():
    """A failed sync may have created objects by name only: its abort still runs the cleanup."""
    m = sync.request_sync(planned(), "alice", NOW).migration
    m = work.start_step(m, StepName.SYNC, "w", "tok", NOW).migration
    m = work.fail_step(m, StepName.SYNC, "boom", NOW, "worker:w", "tok").migration
    assert m.state == State.FAILED and m.sync_setup is None and sync.needs_cleanup(m)
    assert actions.request_unfreeze(m, "alice", NOW, abort=True).migration.state == State.UNFREEZING


def test_a_frozen_logical_migration_drains_instead_of_copying():
    """After a freeze from in_sync the due step is the drain, run as the copy's state, and it leads to verifying."""
    m = in_sync()
    m.state, m.freeze = State.FROZEN, snapshot()
    assert work.step_due(m) == StepName.DRAIN
    started = work.start_step(m, StepName.DRAIN, "w", "tok", NOW)
    assert started.migration.state == State.COPYING and "drain of prod-old" in started.events[0].message
    done = work.finish_step(started.migration, StepName.DRAIN, "tok", Event.COPIED, "drained", {}, NOW)
    assert done.migration.state == State.VERIFYING
    assert work.RESUME_STATE[StepName.DRAIN] == State.FROZEN


def test_a_new_replication_problem_and_its_resolution_are_events_once_each():
    """A reading adds an event for each new problem and each resolved one, and none when nothing changed."""
    m = in_sync()
    later = SyncStatus(at=NOW + timedelta(seconds=30), databases=[lag()], problems=["apply error in appdb: dup key"])
    first = sync.record_sync_status(m, later, NOW, "worker:w")
    assert [e.message for e in first.events] == ["replication problem: apply error in appdb: dup key"]
    assert sync.record_sync_status(first.migration, later, NOW, "worker:w").events == []
    clean = SyncStatus(at=NOW + timedelta(seconds=60), databases=[lag()])
    resolved = sync.record_sync_status(first.migration, clean, NOW, "worker:w")
    assert [e.message for e in resolved.events] == ["replication problem resolved: apply error in appdb: dup key"]
    assert resolved.migration.sync_status == clean


def test_a_reading_is_not_recorded_once_the_migration_moved_on():
    """A late monitor reading must not overwrite a migration that is freezing or gone."""
    m = in_sync()
    m.state = State.FREEZING
    with pytest.raises(Refused, match="moved on"):
        sync.record_sync_status(m, SyncStatus(at=NOW), NOW, "worker:w")


def test_the_status_says_what_was_verified_while_in_sync_and_what_the_window_will_compare_again():
    """The replication lines name the verification while in sync (when, tables, rows) and the ranges the window reads
    again; the window's approval text says what its verification covers."""
    from pgmove.handlers import views
    from pgmove.state.replication import HotRange, LiveVerification

    m = in_sync()
    m.live_verification = LiveVerification(tables=7, rows=123456, hot=[HotRange(database="appdb", schema_name="public",
                                                                               name="orders", key=["id"], low=5, high=6)],
                                           finished_at=NOW)
    said = "\n".join(views.sync_lines(m))
    assert f"verified while in sync at {NOW:%H:%M:%S} UTC: 7 tables, 123,456 rows; 1 range(s) still changing" in said
    assert "ranges still changing" in views.window_effect(m, 60)
