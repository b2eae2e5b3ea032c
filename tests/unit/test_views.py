"""The text pgmove says back: a status and a next step for every state, and what an approver reads."""

from __future__ import annotations

from datetime import UTC, datetime

from pgmove.handlers import views
from pgmove.state import actions, work
from pgmove.state.machine import State
from pgmove.state.models import Plan


def test_every_state_has_a_next_hint_and_a_status_text():
    """Every state has a status line naming the source and a hint of what to do next."""
    m = actions.new_migration("m1", Plan(source="a", target="b"), "alice", datetime.now(UTC)).migration
    for state in State:
        m.state = state
        assert views.next_hint(m)
        assert m.source in views.status_text(m)


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


def test_hints_of_a_failed_unfrozen_migration_and_of_an_abort_offer_only_what_works():
    """A failed preflight (nothing frozen) is not told to unfreeze; an abort names the target databases it left."""
    from pgmove.state.models import StepName

    now = datetime.now(UTC)
    m = actions.new_migration("m1", Plan(source="a", target="b"), "alice", now).migration
    failed = work.fail(m, StepName.PREFLIGHT, "no route to host", now, "worker:w1", State.PLANNED).migration
    hint = views.next_hint(failed)
    assert "unfreeze" not in hint and "None" not in hint
    assert "retry a` to try the preflight step again" in hint and "abort a" in hint
    aborted = actions.request_unfreeze(failed, "alice", now, abort=True).migration
    aborted.created_target_databases = ["appdb", "pagila"]
    assert aborted.state == State.ABORTED
    said = views.status_text(aborted)
    assert "pgmove created appdb, pagila on b and left them there" in said and "DROP DATABASE" in said


def test_a_ready_migrations_status_shows_the_plan_the_preflight_found():
    """`plan --wait` ends with the plan itself: versions, each database with its size, the client tools."""
    from pgmove.state.models import DatabaseInfo, PreflightReport

    m = actions.new_migration("m1", Plan(source="a", target="b", jobs=3), "alice", datetime.now(UTC)).migration
    m.state = State.READY
    m.preflight = PreflightReport(source_version="15.4", target_version="18.0",
                                  tools={"pg_dump": "/usr/lib/postgresql/18/bin/pg_dump (18.0)"},
                                  databases=[DatabaseInfo(name="appdb", size_bytes=12_345_678, owner="app"),
                                             DatabaseInfo(name="pagila", size_bytes=15_000_000)])
    text = views.status_text(m)
    assert "plan: PostgreSQL 15.4 -> 18.0, 2 database(s), 27.3 MB, 3 jobs" in text
    assert "  appdb: 12.3 MB, owner app" in text and "  pagila: 15.0 MB" in text
    assert "  pg_dump: /usr/lib/postgresql/18/bin/pg_dump (18.0)" in text


def test_no_hint_offers_an_unfreeze_with_nothing_frozen_and_no_text_says_none():
    """In every state, with a target or freeze-only, frozen or not: no `None` in what people read, and unfreeze
    is not offered in a state a source with nothing frozen can be in."""
    import re

    from pgmove.state.models import StepName

    now = datetime.now(UTC)
    for target in ("b", None):
        base = actions.new_migration("m1", Plan(source="a", target=target), "alice", now).migration
        failed = work.fail(base, StepName.COPY, "boom", now, "worker:w1", State.FROZEN).migration
        for m in (base, failed):
            for state in State:
                shown = m.model_copy(update={"state": state})
                text = views.status_text(shown) + "\n" + views.next_hint(shown)
                assert not re.search(r"\bNone\b", text), (state, target, text)
                if state in (State.PLANNED, State.READY, State.SYNCING, State.IN_SYNC, State.ABORTED, State.FAILED,
                             State.AWAITING_FREEZE_APPROVAL):  # states a source with no freeze record can be in
                    assert "unfreeze a`" not in views.next_hint(shown), (state, target, views.next_hint(shown))
