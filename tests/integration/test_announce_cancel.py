"""Cancelled maintenance windows: the cancellation goes once wherever the notice went, even when a new window
replaces the cancelled one before any bot's pass, and nowhere a notice never went."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pgmove.bot.notifier import Notifier
from pgmove.handlers.commands import handle
from pgmove.sandbox.fakeslack.server import FakeSlack
from tests.integration.helpers import Clock
from tests.integration.test_announce import (
    _deps,
    _DiesWhilePosting,
    _Killed,
    _notifier,
    _texts,
    pass_together,
)

CHANNELS = ("C_DBMIG", "C_OPS")


@pytest.fixture
def slack():  # type: ignore[no-untyped-def]
    server = FakeSlack().start()
    yield server
    server.stop()


def _said(slack: FakeSlack, channel: str, what: str, span: str) -> int:
    return len([t for t in _texts(slack, channel) if what in t and span in t])


def test_a_window_cancelled_and_replaced_between_two_passes_gets_its_cancellation_once(redis_server, slack):  # type: ignore[no-untyped-def]
    """Announce, the notice, cancel and announce again before any pass: three bots passing together post the first
    window's cancellation and the second's notice in each channel, each once, and later passes post nothing more."""
    clock = Clock()
    deps = _deps(redis_server.url, clock)
    first = handle(deps, "U_ALICE", "announce prod-old in 2h 1h").announcements[0]
    _notifier(deps, slack, clock).run_once(wait_seconds=0.01)
    assert handle(deps, "U_BOB", "announce prod-old cancel").ok
    second = handle(deps, "U_ALICE", "announce prod-old in 5h 1h").announcements[0]
    bots = [_notifier(_deps(redis_server.url, clock), slack, clock) for _ in range(3)]
    pass_together(bots)
    bots[0].run_once(wait_seconds=0.01)
    for channel in CHANNELS:
        assert _said(slack, channel, "is cancelled by <@U_BOB>", first.span()) == 1, channel
        assert _said(slack, channel, "Maintenance of prod-old", second.span()) == 1, channel
        assert _said(slack, channel, "", first.span()) == 2, channel  # its notice and its cancellation


def test_a_window_cancelled_before_its_notice_was_posted_is_never_posted(redis_server, slack):  # type: ignore[no-untyped-def]
    """Nobody in the channel heard of it, so neither its notice nor its cancellation goes out; the window announced
    after it does."""
    clock = Clock()
    deps = _deps(redis_server.url, clock)
    first = handle(deps, "U_ALICE", "announce prod-old in 2h 1h").announcements[0]
    assert handle(deps, "U_ALICE", "announce prod-old cancel").ok
    notifier = _notifier(deps, slack, clock)
    notifier.run_once(wait_seconds=0.01)
    second = handle(deps, "U_ALICE", "announce prod-old in 3h 1h").announcements[0]
    notifier.run_once(wait_seconds=0.01)
    for channel in CHANNELS:
        assert _said(slack, channel, "prod-old", first.span()) == 0, channel
        assert _said(slack, channel, "Maintenance of prod-old", second.span()) == 1, channel


def test_a_notice_a_bot_died_posting_gets_its_cancellation_where_it_may_have_gone(redis_server, slack):  # type: ignore[no-untyped-def]
    """A bot claims the notice for the first channel and dies (Slack may have taken it); the window is cancelled and
    replaced. While the claim is young nothing is said of it; after the hold the cancellation goes to that channel
    once, and not to the channel the notice never reached."""
    clock = Clock()
    deps = _deps(redis_server.url, clock)
    first = handle(deps, "U_ALICE", "announce prod-old in 2h 1h").announcements[0]
    doomed = Notifier(deps.store, _DiesWhilePosting(token="xoxb-test", base_url=slack.api_url), deps.config, clock=clock)
    with pytest.raises(_Killed):
        doomed.run_once(wait_seconds=0.01)
    assert handle(deps, "U_BOB", "announce prod-old cancel").ok
    assert handle(deps, "U_ALICE", "announce prod-old in 5h 1h").ok
    survivor = _notifier(_deps(redis_server.url, clock), slack, clock)
    survivor.run_once(wait_seconds=0.01)
    assert _said(slack, "C_DBMIG", "is cancelled", first.span()) == 0  # the dying bot may yet be posting
    clock.now += timedelta(minutes=2)
    survivor.run_once(wait_seconds=0.01)
    survivor.run_once(wait_seconds=0.01)
    assert _said(slack, "C_DBMIG", "is cancelled by <@U_BOB>", first.span()) == 1
    assert _said(slack, "C_OPS", "prod-old", first.span()) == 0
