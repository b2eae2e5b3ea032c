"""Refusals say why and change nothing; random text never produces a traceback."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgmove.handlers.commands import handle
from pgmove.state.machine import Event, State
from pgmove.state.outcome import Outcome
from pgmove.state.rollback import REFUSED_AFTER_CUTOVER
from tests.integration.helpers import Clock, force_state, make_deps, preflight_passes, snapshot


@pytest.fixture
def deps(redis_server):  # type: ignore[no-untyped-def]
    return make_deps(redis_server.url)


@pytest.fixture
def awaiting_freeze(deps):  # type: ignore[no-untyped-def]
    assert handle(deps, "U_ALICE", "plan prod-old prod-new").ok
    preflight_passes(deps.store)
    assert handle(deps, "U_ALICE", "freeze prod-old").ok
    return deps


def refused(deps, url, user, text, *needles):  # type: ignore[no-untyped-def]
    before = snapshot(url)
    reply = handle(deps, user, text)
    assert not reply.ok, reply.text
    assert reply.visibility == "ephemeral"
    for needle in needles:
        assert needle.lower() in reply.text.lower(), reply.text
    assert snapshot(url) == before, "a refusal changed Redis"
    return reply


def test_alice_cannot_approve_her_own_freeze(awaiting_freeze, redis_server):  # type: ignore[no-untyped-def]
    """The requester is never the approver, even when she is one."""
    refused(awaiting_freeze, redis_server.url, "U_ALICE", "approve prod-old", "second person")


def test_an_operator_who_is_not_an_approver_cannot_approve(awaiting_freeze, redis_server):  # type: ignore[no-untyped-def]
    """Only configured approvers approve."""
    refused(awaiting_freeze, redis_server.url, "U_DAVE", "approve prod-old", "not a configured approver")


def test_a_stranger_cannot_run_commands(deps, redis_server):  # type: ignore[no-untyped-def]
    """People outside access.operators are turned away before anything is parsed into action."""
    refused(deps, redis_server.url, "U_MALLORY", "plan prod-old prod-new", "not a pgmove operator")


def test_an_expired_approval_is_refused(redis_server):  # type: ignore[no-untyped-def]
    """An approval after the request's expiry does not count."""
    clock = Clock()
    deps = make_deps(redis_server.url, clock)
    handle(deps, "U_ALICE", "plan prod-old prod-new")
    preflight_passes(deps.store)
    assert handle(deps, "U_ALICE", "freeze prod-old").ok
    clock.now += timedelta(minutes=31)
    refused(deps, redis_server.url, "U_BOB", "approve prod-old", "expired")
    # and a fresh request replaces the expired one
    assert handle(deps, "U_ALICE", "freeze prod-old").ok
    assert handle(deps, "U_BOB", "approve prod-old").ok


def test_an_approval_after_a_replan_is_refused(awaiting_freeze, redis_server):  # type: ignore[no-untyped-def]
    """Re-planning voids the pending request: the approver would approve a plan nobody showed them."""
    pending = awaiting_freeze.store.active_for("prod-old").approval
    assert handle(awaiting_freeze, "U_ALICE", "plan prod-old prod-new --jobs 4").ok
    preflight_passes(awaiting_freeze.store)
    reply = refused(awaiting_freeze, redis_server.url, "U_BOB", f"approve prod-old {pending.id}", "already voided")
    assert "nothing to decide" in reply.text


def test_cutover_before_verified_is_refused(awaiting_freeze, redis_server):  # type: ignore[no-untyped-def]
    """Cutover needs a verified copy."""
    refused(awaiting_freeze, redis_server.url, "U_ALICE", "cutover prod-old", "not now", "verified copy")


def test_cutover_after_failed_verification_is_refused_with_reasons(awaiting_freeze, redis_server):  # type: ignore[no-untyped-def]
    """A failed verification blocks cutover and says why."""
    store = awaiting_freeze.store
    assert handle(awaiting_freeze, "U_BOB", "approve prod-old").ok
    force_state(store, "prod-old", Event.FROZEN, Event.COPY_STARTED, Event.COPIED)
    m = store.active_for("prod-old")
    from pgmove.state import work
    from pgmove.state.report import VerificationReport

    def failed(cur):  # type: ignore[no-untyped-def]
        out = work.step_transition(cur, Event.VERIFY_FAILED, cur.updated_at, "verification failed", "test")
        out.migration.verification = VerificationReport(problems=["appdb: public.orders has 10 rows on the source, 9 on the target"])
        return out

    store.update(m.id, failed)
    refused(awaiting_freeze, redis_server.url, "U_ALICE", "cutover prod-old", "public.orders has 10 rows")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("plan prod-old nowhere", "unknown server `nowhere`"),
        ("launch prod-old", "unknown command"),
        ("plan prod-old prod-new --jobz 3", "not an option of plan"),
        ("plan prod-old prod-new --jobs 0", "whole number from 1 to 64"),
        ("plan prod-old prod-new --jobs ²", "--jobs takes a whole number from 1 to 64, not `²`"),
        ("freeze prod-old --grace ٣s", "--grace takes a duration up to an hour"),
        ("plan prod-old prod-new --jobs", "needs a value"),
        ("freeze prod-old; drop database x", "not a server name"),
        ("freeze 'prod-old; drop database x'", "not a server name"),
        ("freeze prod-old extra", "unexpected"),
        ("", "say what to do"),
        ("   ", "say what to do"),
        ("plan 'unterminated", "could not read"),
        ("approve prod-old not-an-id", "not a request id"),
        ("freeze nowhere", "unknown server"),
        ("status prod-old", ""),
    ],
)
def test_bad_input_gets_a_specific_reply_and_changes_nothing(deps, redis_server, text, needle):  # type: ignore[no-untyped-def]
    """Each kind of bad input is named in the reply; Redis is untouched."""
    before = snapshot(redis_server.url)
    reply = handle(deps, "U_ALICE", text)
    assert needle.lower() in reply.text.lower(), reply.text
    if text != "status prod-old":
        assert not reply.ok
    assert snapshot(redis_server.url) == before


def test_commands_outside_the_configured_channels_are_refused(deps, redis_server):  # type: ignore[no-untyped-def]
    """The bot only listens where it was told to."""
    before = snapshot(redis_server.url)
    assert not handle(deps, "U_ALICE", "plan prod-old prod-new", channel="C_RANDOM").ok
    assert handle(deps, "U_ALICE", "status", channel="C_DBMIG").ok
    assert snapshot(redis_server.url) == before


_words = st.sampled_from(["plan", "freeze", "approve", "reject", "status", "help", "cutover", "abort", "retry",
                          "prod-old", "prod-new", "spare", "--jobs", "--databases", "2", "a,b", ";", "'", '"', "--"])
_text = st.one_of(st.text(max_size=80), st.lists(_words, max_size=6).map(" ".join),
                  st.tuples(st.lists(_words, max_size=4).map(" ".join), st.text(max_size=20)).map(" ".join))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_text, user=st.sampled_from(["U_ALICE", "U_BOB", "U_MALLORY"]))
def test_random_text_is_a_clear_refusal_or_a_valid_command(deps, text, user):  # type: ignore[no-untyped-def]
    """Whatever is typed, the answer is a reply, never a traceback."""
    reply = handle(deps, user, text)
    assert reply.text.strip()
    assert "Traceback" not in reply.text
    assert reply.kind != "error", reply.text
    if not reply.ok:
        assert reply.kind in ("usage", "refused")


@pytest.mark.parametrize("verb", REFUSED_AFTER_CUTOVER)
def test_each_verb_the_rollback_plan_says_is_refused_after_the_cutover_is_refused(deps, redis_server, verb):  # type: ignore[no-untyped-def]
    """The cutover approval tells the approver pgmove refuses these for a cut-over source: each is, and changes nothing."""
    assert handle(deps, "U_ALICE", "plan prod-old prod-new").ok
    m = deps.store.active_for("prod-old")
    deps.store.update(m.id, lambda cur: Outcome(cur.model_copy(update={"state": State.CUT_OVER})))
    refused(deps, redis_server.url, "U_ALICE", f"{verb} prod-old" + (" prod-new" if verb == "plan" else ""),
            "prod-old", "cut")
