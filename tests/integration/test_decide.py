"""A click is a typed decision: `decide` takes the migration and request by id, with the same checks, replies,
audit trail and idempotency as the typed `approve`/`reject`, against a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from pgmove.bot.responder import Responder
from pgmove.handlers import views
from pgmove.handlers.commands import Deps, decide, handle
from pgmove.handlers.verbs import Decide
from pgmove.state.machine import Event, State
from tests.integration.helpers import Clock, make_deps, preflight_passes, snapshot


@pytest.fixture
def deps(redis_server):  # type: ignore[no-untyped-def]
    deps = make_deps(redis_server.url)
    assert handle(deps, "U_ALICE", "plan prod-old prod-new").ok
    preflight_passes(deps.store)
    assert handle(deps, "U_ALICE", "freeze prod-old --mode no-connect").ok
    return deps


def _click(deps: Deps, verb: str = "approve", request_id: str | None = None) -> Decide:
    m = deps.store.active_for("prod-old")
    assert m is not None and m.approval is not None
    return Decide(verb=verb, migration_id=m.id, request_id=request_id or m.approval.id)  # type: ignore[arg-type]


def _trail(deps: Deps) -> list[tuple[Any, ...]]:
    """The audit trail with the random ids taken out, so two runs of the same story compare equal."""
    m = deps.store.active_for("prod-old")
    assert m is not None and m.approval is not None
    return [(e.kind, e.actor, e.message.replace(m.approval.id, "<id>").replace(m.id, "<mig>"), e.event, e.from_state, e.to_state,
             {k: v for k, v in e.data.items() if k != "id"}) for e in deps.store.events(m.id)]


@pytest.mark.parametrize(("text", "verb"), [("approve prod-old", "approve"), ("reject prod-old", "reject")])
def test_a_click_does_what_the_typed_decision_does(redis_server, text, verb):  # type: ignore[no-untyped-def]
    """Same reply, same state, same audit trail whether bob types the decision or clicks it."""
    results = []
    for how in ("typed", "clicked"):
        redis.Redis.from_url(redis_server.url).flushall()
        clock = Clock()
        deps = make_deps(redis_server.url, clock)
        assert handle(deps, "U_ALICE", "plan prod-old prod-new").ok
        preflight_passes(deps.store)
        assert handle(deps, "U_ALICE", "freeze prod-old").ok
        reply = (handle(deps, "U_BOB", text, channel="C_DBMIG") if how == "typed"
                 else decide(deps, "U_BOB", _click(deps, verb), "C_DBMIG"))
        assert reply.ok, reply.text
        m = deps.store.active_for("prod-old")
        assert m is not None and m.approval is not None
        shown = reply.text.replace(m.approval.id, "<id>").replace(m.id, "<mig>")
        results.append((reply.kind, reply.verb, reply.visibility, shown,
                        m.state, m.freeze_options, _trail(deps)))
    assert results[0] == results[1]
    assert results[1][4] == (State.FREEZING if verb == "approve" else State.READY)


@pytest.mark.parametrize(
    ("user", "change", "channel", "needle"),
    [
        ("U_ALICE", {}, "C_DBMIG", "second person"),
        ("U_DAVE", {}, "C_DBMIG", "not a configured approver"),
        ("U_MALLORY", {}, "C_DBMIG", "not a pgmove operator"),
        ("U_BOB", {}, "C_RANDOM", "configured channels"),
        ("U_BOB", {}, "", "could not tell which channel"),
        ("U_BOB", {"migration_id": "mig-00000000"}, "C_DBMIG", "not known to pgmove"),
        ("U_BOB", {"request_id": "0badc0de"}, "C_DBMIG", "that is the freeze request"),
    ],
)
def test_a_refused_click_says_why_and_changes_nothing(deps, redis_server, user, change, channel, needle):  # type: ignore[no-untyped-def]
    """The requester, a non-approver, a stranger, the wrong or no channel, an unknown migration or request:
    each is told why, privately, and Redis is untouched."""
    command = _click(deps).model_copy(update=change)
    before = snapshot(redis_server.url)
    reply = decide(deps, user, command, channel, request_key=f"action:{user}:{channel}")
    assert not reply.ok and reply.kind == "refused" and reply.visibility == "ephemeral"
    assert needle in views.for_terminal(reply.text), reply.text
    if needle == "that is the freeze request":
        pending = deps.store.active_for("prod-old").approval
        assert pending.id in reply.text and "0badc0de" in reply.text
    after = snapshot(redis_server.url)
    after.pop(deps.store.keys.idempotency(f"action:{user}:{channel}"), None)  # the refusal, for a retry of this click
    assert after == before


def test_a_repeated_click_changes_nothing_twice(deps):  # type: ignore[no-untyped-def]
    """The same delivery twice is one approval; a second click is told the request was already approved."""
    command = _click(deps)
    first = decide(deps, "U_BOB", command, "C_DBMIG", request_key="action:t1")
    again = decide(deps, "U_BOB", command, "C_DBMIG", request_key="action:t1")
    second = decide(deps, "U_CAROL", command, "C_DBMIG", request_key="action:t2")
    assert first.ok and again.duplicate and again.text == first.text
    assert not second.ok and "already approved by <@U_BOB>" in second.text  # a mention in Slack
    m = deps.store.active_for("prod-old")
    assert len([e for e in deps.store.events(m.id) if e.event == Event.APPROVED]) == 1


def test_the_responder_turns_a_click_into_a_decision(deps):  # type: ignore[no-untyped-def]
    """A block action as Slack sends it decides the request its button names, under the clicker's name;
    a mangled value or a click without its channel decides nothing."""
    m = deps.store.active_for("prod-old")
    responder = Responder(deps)

    def body(value: str, channel: str | None = "C_DBMIG", trigger: str = "t1") -> dict[str, Any]:
        click: dict[str, Any] = {"user": {"id": "U_BOB"}, "trigger_id": trigger,
                                 "actions": [{"action_id": "pgmove_approve", "value": value, "action_ts": "1.0"}]}
        if channel:
            click["channel"] = {"id": channel}
        return click

    responder.process({"kind": "action", "body": body(f"{m.id}:{m.approval.id}x", trigger="t0")})
    responder.process({"kind": "action", "body": body(f"{m.id}:{m.approval.id}", channel=None, trigger="t1")})
    assert deps.store.get(m.id).state == State.AWAITING_FREEZE_APPROVAL
    responder.process({"kind": "action", "body": body(f"{m.id}:{m.approval.id}", trigger="t2")})
    decided = deps.store.get(m.id)
    assert decided.state == State.FREEZING and decided.approval.approver == "U_BOB"
    assert decided.freeze_options.mode.value == "no-connect"  # what the approver was shown is what runs
