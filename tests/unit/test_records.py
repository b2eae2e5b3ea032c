"""Persisted records round-trip through JSON, and a record written by an older pgmove still reads."""

from __future__ import annotations

from datetime import UTC, datetime

from pgmove.state import actions
from pgmove.state.models import (
    Approval,
    ApprovalAction,
    AuditEvent,
    EventKind,
    FreezeSnapshot,
    Migration,
    Plan,
    QuietMark,
    SettingRow,
)
from tests.unit.samples import snapshot

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_a_migration_with_every_part_round_trips_through_json():
    """A migration with an approval and a freeze snapshot, and an audit event with data, read back from JSON exactly
    as written."""
    from pgmove.state import actions
    from pgmove.state.models import Plan

    m = actions.new_migration("m1", Plan(source="a", target="b", databases=["x"]), "alice", NOW).migration
    m.approval = Approval(id="abcd1234", action=ApprovalAction.FREEZE, requester="alice", plan_digest="d",
                          requested_at=NOW, expires_at=NOW, prior_state="ready")
    m.freeze = FreezeSnapshot(taken_at=NOW, databases=["x"], settings=[SettingRow(database="x", name="n", value=None)])
    assert Migration.model_validate_json(m.model_dump_json()) == m
    event = AuditEvent(kind=EventKind.PROGRESS, at=NOW, actor="w", message="hi", data={"rows": 3})
    assert AuditEvent.model_validate_json(event.model_dump_json()) == event


def test_a_snapshot_with_every_new_part_round_trips_through_json_and_an_old_one_still_reads():
    """The store and the server's comment both hold it as JSON; a record written before oids were kept still loads."""
    snap = snapshot()
    assert FreezeSnapshot.model_validate_json(snap.model_dump_json()) == snap
    old = FreezeSnapshot.model_validate_json('{"taken_at": "2026-11-22T12:00:00Z", "databases": ["a"], "logins": ["x"]}')
    assert old.role_oids == {} and old.role_grants == [] and old.subscriptions == []


def test_a_migration_with_a_quiet_mark_round_trips_through_json():
    """A migration holding the quiet check's mark (the next transaction id and the shared objects' state) reads back
    from JSON exactly."""
    m = actions.new_migration("m1", Plan(source="a", target="b"), "alice", datetime(2026, 11, 22, tzinfo=UTC)).migration
    m.quiet_mark = QuietMark(next_xid=(7 << 32) + 12, shared={"role app": "LOGIN", "password app": "abc"},
                             with_passwords=False)
    assert Migration.model_validate_json(m.model_dump_json()) == m
