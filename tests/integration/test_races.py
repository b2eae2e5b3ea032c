"""Concurrent requests against real Redis: compare-and-set lets exactly one of them win."""

from __future__ import annotations

import threading

from pgmove.handlers.commands import handle
from pgmove.sandbox.servers import wait_until
from pgmove.state.models import Decision, EventKind
from pgmove.state.store import Store
from tests.integration.helpers import make_deps, preflight_passes


def race(url: str, calls: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    """Run the calls at the same instant, each with its own Redis connection, as separate bots/CLIs would."""
    barrier = threading.Barrier(len(calls))
    replies: list = [None] * len(calls)

    def run(i: int, user: str, text: str) -> None:
        deps = make_deps(url)
        barrier.wait()
        replies[i] = handle(deps, user, text)

    threads = [threading.Thread(target=run, args=(i, u, t)) for i, (u, t) in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return replies


def test_two_freeze_requests_at_once_make_one_pending_approval(redis_server):  # type: ignore[no-untyped-def]
    """Only one request wins; the other is told one is already waiting."""
    for _ in range(10):
        deps = make_deps(redis_server.url)
        deps.store.bind(lambda client: client.flushall())
        handle(deps, "U_ALICE", "plan prod-old prod-new")
        preflight_passes(deps.store)
        replies = race(redis_server.url, [("U_ALICE", "freeze prod-old"), ("U_DAVE", "freeze prod-old")])
        assert sorted(r.ok for r in replies) == [False, True]
        assert "already has a freeze request" in next(r for r in replies if not r.ok).text
        m = deps.store.active_for("prod-old")
        requested = [e for e in deps.store.events(m.id) if e.event == "freeze_requested"]
        assert len(requested) == 1 and m.approval.decision == Decision.PENDING


def test_two_approvals_at_once_make_one_transition(redis_server):  # type: ignore[no-untyped-def]
    """Bob and Carol click at the same moment: one approval, one job, one state change."""
    for _ in range(10):
        deps = make_deps(redis_server.url)
        deps.store.bind(lambda client: client.flushall())
        handle(deps, "U_ALICE", "plan prod-old prod-new")
        preflight_passes(deps.store)
        handle(deps, "U_ALICE", "freeze prod-old")
        replies = race(redis_server.url, [("U_BOB", "approve prod-old"), ("U_CAROL", "approve prod-old")])
        assert sorted(r.ok for r in replies) == [False, True]
        m = deps.store.active_for("prod-old")
        assert m.state == "freezing"
        events = deps.store.events(m.id)
        assert len([e for e in events if e.event == "approved"]) == 1
        assert len([e for e in events if e.kind == EventKind.DECISION]) == 1


def test_two_plans_at_once_make_one_migration(redis_server):  # type: ignore[no-untyped-def]
    """Creating the first migration of a server is claimed atomically too."""
    replies = race(redis_server.url, [("U_ALICE", "plan prod-old prod-new"), ("U_DAVE", "plan prod-old prod-new")])
    store = Store.from_url(redis_server.url)
    assert all(r.ok for r in replies)  # the second one re-plans the first: same migration
    assert len(store.migrations()) == 1


def test_the_server_lock_has_one_holder_and_a_lease(redis_server):  # type: ignore[no-untyped-def]
    """Two workers never hold a server at once; a dead holder's lease runs out; only the holder renews."""
    store = Store.from_url(redis_server.url)
    winners = []
    barrier = threading.Barrier(8)

    def grab(token: str) -> None:
        barrier.wait()
        if store.acquire_lock("prod-old", token, 0.5):
            winners.append(token)

    threads = [threading.Thread(target=grab, args=(f"t{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert not store.renew_lock("prod-old", "someone-else", 10)
    assert store.renew_lock("prod-old", winners[0], 0.5)
    wait_until(lambda: store.lock_holder("prod-old") is None, 5, "the dead holder's 0.5 s lease to run out")
    assert store.acquire_lock("prod-old", "next", 0.5)
    assert not store.release_lock("prod-old", winners[0]), "a stale holder must not release the new holder's lock"


def test_idempotency_keys_give_one_effect(redis_server):  # type: ignore[no-untyped-def]
    """A retried request (same key) returns the first reply and changes nothing more."""
    deps = make_deps(redis_server.url)
    handle(deps, "U_ALICE", "plan prod-old prod-new")
    preflight_passes(deps.store)
    first = handle(deps, "U_ALICE", "freeze prod-old", request_key="slack:retry-1")
    again = handle(deps, "U_ALICE", "freeze prod-old", request_key="slack:retry-1")
    assert first.ok and again.ok and again.duplicate and not first.duplicate
    m = deps.store.active_for("prod-old")
    assert len([e for e in deps.store.events(m.id) if e.event == "freeze_requested"]) == 1


def test_a_chat_request_taken_by_a_responder_that_died_goes_back_in_line(redis_server):  # type: ignore[no-untyped-def]
    """Acked means persisted: the edge's request survives a responder killed between taking and finishing it."""
    store = Store.from_url(redis_server.url)
    store.push_chat_request('{"n": 1}')
    store.push_chat_request('{"n": 2}')
    taken = store.take_chat_request(1)
    assert taken == '{"n": 1}'  # oldest first
    # the responder dies here, before chat_request_done
    assert store.requeue_taken_chat_requests() == 1
    assert store.take_chat_request(1) == '{"n": 1}', "the abandoned (older) request goes first: order is kept"
    assert store.take_chat_request(1) == '{"n": 2}'
    store.chat_request_done('{"n": 1}')
    store.chat_request_done('{"n": 2}')
    assert store.requeue_taken_chat_requests() == 0 and store.take_chat_request(1) is None


def test_two_plans_for_one_target_at_once_claim_it_once(redis_server):  # type: ignore[no-untyped-def]
    """Two sources planned onto the same target at the same instant: one wins, the other is refused by name."""
    for _ in range(30):
        deps = make_deps(redis_server.url)
        deps.store.bind(lambda client: client.flushall())
        replies = race(redis_server.url, [("U_ALICE", "plan prod-old prod-new"), ("U_DAVE", "plan spare prod-new")])
        assert sorted(r.ok for r in replies) == [False, True], [r.text for r in replies]
        assert "prod-new is already part of the migration" in next(r for r in replies if not r.ok).text
        assert len(deps.store.migrations()) == 1


def test_a_plan_onto_a_server_being_planned_as_a_source_is_claimed_once(redis_server):  # type: ignore[no-untyped-def]
    """prod-old -> prod-new and prod-new -> spare at once: a server is never both a source and a target."""
    for _ in range(30):
        deps = make_deps(redis_server.url)
        deps.store.bind(lambda client: client.flushall())
        replies = race(redis_server.url, [("U_ALICE", "plan prod-old prod-new"), ("U_DAVE", "plan prod-new spare")])
        assert sorted(r.ok for r in replies) == [False, True], [r.text for r in replies]
        assert len(deps.store.migrations()) == 1
