"""The logical method in chat: its options parsed, and what the approver and the status message say."""

from __future__ import annotations

import pytest

from pgmove.handlers import views
from pgmove.handlers.parse import CutoverCmd, PlanCmd, ServerCmd, parse
from pgmove.state import actions
from pgmove.state.errors import UsageError
from pgmove.state.models import ApprovalAction
from pgmove.state.replication import KeylessTable, LiveVerification, LogicalReadiness
from tests.unit.test_actions import NOW, POLICY
from tests.unit.test_logical_actions import in_sync, planned


def test_plan_takes_a_method_and_the_replica_identity_flag():
    """plan --method logical --replica-identity-full is read; an unknown method is refused naming both."""
    assert parse("plan prod-old prod-new --method logical --replica-identity-full") == PlanCmd(
        source="prod-old", target="prod-new", method="logical", replica_identity_full=True)
    assert parse("plan prod-old prod-new").method == "dump"
    with pytest.raises(UsageError, match="--method takes dump or logical"):
        parse("plan prod-old prod-new --method magic")


def test_sync_takes_a_server_and_cutover_a_window():
    """sync <server>; cutover <server> [--window 10s], refusing a window that is no duration."""
    assert parse("sync prod-old") == ServerCmd(verb="sync", server="prod-old")
    assert parse("cutover prod-old --window 10s") == CutoverCmd(server="prod-old", window_seconds=10)
    assert parse("cutover prod-old").window_seconds is None
    with pytest.raises(UsageError, match="--window takes a duration"):
        parse("cutover prod-old --window soon")


def test_the_window_approval_says_what_it_covers_and_what_happens_when_it_runs_out():
    """One approval: its text names the window, the automatic unfreeze, replication kept, and the expected downtime."""
    m = in_sync()
    m.expected_downtime_seconds = 1.5
    m = actions.request_approval(m, ApprovalAction.CUTOVER, "alice", NOW, POLICY, window_seconds=10).migration
    text = views.approval_text(m)
    for said in ("10s window", "unfrozen automatically", "replication keeps running", "back in sync",
                 "about 1.5s", "one approval"):
        assert said in text, said


def test_the_status_shows_lag_per_database_and_the_problems_that_block():
    """Per database: bytes and seconds behind, retained WAL, tables copying; each problem marked as blocking."""
    m = in_sync(problems=["DDL changed in appdb: re-apply it on prod-new"], lag_bytes=4096, ready=1)
    text = views.status_text(m)
    assert "appdb: 4096 bytes behind, 0.1s, WAL retained 0.0 MB, 2 table(s) in initial copy" in text
    assert "PROBLEM (blocks freeze and cutover): DDL changed in appdb" in text
    assert "/pgmove cutover prod-old" in views.next_hint(m)


def test_the_plan_shows_keyless_tables_what_is_not_carried_and_the_downtime():
    """A logical plan's status lists tables without a key with their size, what replication leaves out, and the
    expected write downtime; its next step is sync."""
    m = planned()
    m.readiness = LogicalReadiness(keyless=[KeylessTable(database="appdb", schema_name="public", name="audit",
                                                         size_bytes=5_000_000)],
                                   not_carried=["sequences: set inside the freeze window"])
    m.expected_downtime_seconds = 1.1
    text = views.status_text(m)
    assert "table without a key: appdb.public.audit (5.0 MB)" in text
    assert "not replicated: sequences: set inside the freeze window" in text
    assert "expected write downtime at cutover: about 1.1s" in text
    assert "/pgmove sync prod-old" in views.next_hint(m)


def test_the_slack_approval_of_a_window_says_it_unfreezes_by_itself():
    """The approval message with buttons carries the window, the automatic unfreeze and the point of no return."""
    import json
    from datetime import timedelta

    from pgmove.handlers import blocks

    m = actions.request_approval(in_sync(), ApprovalAction.CUTOVER, "alice", NOW, POLICY, window_seconds=10).migration
    assert m.approval is not None
    text, message = blocks.approval_message(m, m.approval, ["bob", "carol"], NOW + timedelta(minutes=1))
    shown = json.dumps(message)
    for said in ("10s window", "unfrozen automatically", "replication keeps running", "stays frozen for good"):
        assert said in shown, said


def test_the_expected_downtime_adds_the_keyless_tables_copied_inside_the_window():
    """About 1 s of freeze and drain, plus the keyless tables at the assumed rate unless they are replicated with
    REPLICA IDENTITY FULL."""
    from pgmove.worker.logical import expected_downtime

    ready = LogicalReadiness(keyless=[KeylessTable(database="d", schema_name="s", name="t", size_bytes=100 * 1024 * 1024)])
    assert expected_downtime(ready, identity_full=False, copy_mb_per_second=50) == 3.0
    assert expected_downtime(ready, identity_full=True, copy_mb_per_second=50) == 1.0


def test_once_verified_while_in_sync_the_expected_downtime_adds_what_the_window_hashes_whole_at_the_measured_rate():
    """The tables the verification while in sync left to the window (keyless ones replicated with REPLICA IDENTITY
    FULL, say) are hashed whole inside it: at the rate that verification measured on this pair, 200 MB in 4 s."""
    from pgmove.worker.logical import expected_downtime

    mb = 1024 * 1024
    ready = LogicalReadiness(keyless=[KeylessTable(database="d", schema_name="s", name="t", size_bytes=100 * mb)])
    live = LiveVerification(tables=3, bytes=200 * mb, bytes_whole=100 * mb, seconds=4.0)
    assert expected_downtime(ready, identity_full=True, copy_mb_per_second=50, live=live) == 3.0
    assert expected_downtime(ready, identity_full=False, copy_mb_per_second=50, live=live) == 5.0
    nothing_measured = LiveVerification(tables=0, bytes=0, bytes_whole=100 * mb, seconds=0.0)
    assert expected_downtime(ready, identity_full=True, copy_mb_per_second=50, live=nothing_measured) == 1.0
