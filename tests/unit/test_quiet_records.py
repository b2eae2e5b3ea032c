"""The quiet check's server-wide mark round-trips, and shared-object changes read as what happened."""

from __future__ import annotations

from datetime import UTC, datetime

from pgmove.state import actions
from pgmove.state.models import Migration, Plan, QuietMark
from pgmove.steps.shared import changes


def test_a_migration_with_a_quiet_mark_round_trips_through_json():
    m = actions.new_migration("m1", Plan(source="a", target="b"), "alice", datetime(2026, 11, 22, tzinfo=UTC)).migration
    m.quiet_mark = QuietMark(next_xid=(7 << 32) + 12, shared={"role app": "LOGIN", "password app": "abc"},
                             with_passwords=False)
    assert Migration.model_validate_json(m.model_dump_json()) == m


def test_shared_changes_name_each_object_and_never_show_a_password_digest():
    before = {"database appdb": "app UTF8", "role app": "LOGIN", "password app": "d1", "role old": "LOGIN",
              "password old": "d2", "membership app in readers": "member"}
    now = {"database appdb": "app UTF8", "database sneaky": "app UTF8", "role app": "LOGIN CREATEDB",
           "password app": "d9", "role new": "LOGIN", "password new": "d3"}
    found = changes(before, now)
    assert found == ["database sneaky was created", "membership app in readers was revoked",
                     "the password of role app was changed", "role app was changed: LOGIN -> LOGIN CREATEDB",
                     "role new was created", "role old was dropped or renamed"]
    assert not any(d in " ".join(found) for d in ("d1", "d2", "d3", "d9"))
