"""Parsing chat text into commands, and the text pgmove says back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pgmove.handlers import views
from pgmove.handlers.parse import FreezeCmd, PlanCmd, ServerCmd, parse
from pgmove.state import actions
from pgmove.state.errors import UsageError
from pgmove.state.machine import State
from pgmove.state.models import Plan


def test_plan_with_options_in_both_spellings():
    assert parse("plan prod-old prod-new --databases a,b --jobs=4") == PlanCmd(
        source="prod-old", target="prod-new", databases=["a", "b"], jobs=4)
    assert parse("/pgmove PLAN prod-old prod-new").jobs == 2


def test_server_verbs_take_exactly_one_server():
    assert parse("unfreeze prod-old") == ServerCmd(verb="unfreeze", server="prod-old")
    with pytest.raises(UsageError, match="needs more"):
        parse("retry")


def test_freeze_takes_a_mode_and_a_grace_period():
    assert parse("freeze prod-old") == FreezeCmd(server="prod-old")
    assert parse("freeze prod-old --mode no-connect --grace 2m") == FreezeCmd(
        server="prod-old", mode="no-connect", grace_seconds=120)
    with pytest.raises(UsageError, match="read-only or no-connect"):
        parse("freeze prod-old --mode sleepy")
    with pytest.raises(UsageError, match="duration up to an hour"):
        parse("freeze prod-old --grace forever")


def test_freeze_takes_an_archive_name_never_a_path():
    assert parse("freeze prod-old --archive drill-2026.11") == FreezeCmd(server="prod-old", archive="drill-2026.11")
    for bad in ("../etc", "/tmp/x", "a/b", ".hidden", ""):
        with pytest.raises(UsageError, match="--archive takes a folder name"):
            parse(f"freeze prod-old --archive '{bad}'")


def test_user_text_is_echoed_back_defanged():
    """Backticks and control characters in an echo could break out of a code span in Slack."""
    with pytest.raises(UsageError) as caught:
        parse("launch`\x07 now")
    assert "`launch??`" in caught.value.message


def test_every_state_has_a_next_hint_and_a_status_text():
    m = actions.new_migration("m1", Plan(source="a", target="b"), "alice", datetime.now(UTC)).migration
    for state in State:
        m.state = state
        assert views.next_hint(m)
        assert m.source in views.status_text(m)


def test_verify_takes_quick_as_a_flag():
    from pgmove.handlers.parse import VerifyCmd

    assert parse("verify prod-old --quick") == VerifyCmd(server="prod-old", quick=True)
    assert parse("verify prod-old") == VerifyCmd(server="prod-old")
    with pytest.raises(UsageError, match="not an option of verify"):
        parse("verify prod-old --fast")


def test_the_writes_back_approval_says_what_the_cutover_hook_reported():
    """The approver of an unfreeze after a cutover started reads the hook's exit status and last output,
    or that it never ran, or that its end was never recorded."""
    from datetime import timedelta

    from pgmove.handlers import blocks, views
    from pgmove.state import actions
    from pgmove.state.models import HookReport
    from tests.unit.test_actions import NOW, POLICY, failed_cutover

    ran = HookReport(argv0="/opt/switch-app", started_at=NOW, finished_at=NOW + timedelta(seconds=3), exit_status=3,
                     output=["pausing pgbouncer", "DNS updated", "app restart failed"])
    m = actions.request_unfreeze(failed_cutover(ran), "alice", NOW, policy=POLICY).migration
    text = views.accepted_text("unfreeze", m, [])
    assert "exited with status 3" in text and "app restart failed" in text and "approve prod-old" in text
    _, message = blocks.approval_message(m, m.approval, ["U_BOB"], NOW)
    shown = str(message)
    assert "exited with status 3" in shown and "DNS updated" in shown and "pgmove_approve" in shown
    never = actions.request_unfreeze(failed_cutover(None), "alice", NOW, policy=POLICY).migration
    assert "never ran" in views.approval_text(never)
    unknown = actions.request_unfreeze(failed_cutover(HookReport(argv0="/opt/switch-app", started_at=NOW)), "alice",
                                       NOW, policy=POLICY).migration
    assert "never recorded" in views.approval_text(unknown)
    assert "writes back" in views.next_hint(unknown)
