"""Announced maintenance windows: the notice, the reminder on an injected clock (once, however many bots), the
freeze approval that says whether it falls in the window, cancel, status, and refusals that change nothing."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.web import SlackResponse

from pgmove.bot.app import web_client
from pgmove.bot.notifier import Notifier
from pgmove.bot.settings import SlackSettings
from pgmove.handlers.commands import Deps, handle
from pgmove.sandbox.fakeslack.server import FakeSlack
from pgmove.state.config import Config
from pgmove.state.outcome import Outcome
from pgmove.state.store import Store
from tests.fixtures.services import cli_users, pgmove_cli
from tests.integration.helpers import CONFIG, Clock, snapshot
from tests.unit.test_logical_actions import in_sync


@pytest.fixture
def slack():  # type: ignore[no-untyped-def]
    server = FakeSlack().start()
    yield server
    server.stop()


def _deps(url: str, clock: Clock) -> Deps:
    config = Config.model_validate({**CONFIG, "redis_url": url, "announce_channels": ["C_OPS"]})
    return Deps(config=config, store=Store.from_url(url), enqueue=None, clock=clock)


def _notifier(deps: Deps, slack: FakeSlack, clock: Clock) -> Notifier:
    client = web_client(SlackSettings("xoxb-test", "s", None, slack.api_url))
    return Notifier(deps.store, client, deps.config, clock=clock)


def _texts(slack: FakeSlack, channel: str) -> list[str]:
    return [m.all_text() for m in slack.channel_messages(channel)]


def _reminders(slack: FakeSlack) -> list[str]:
    return [t for t in _texts(slack, "C_DBMIG") if "Reminder: maintenance" in t]



def pass_together(bots: list[Notifier]) -> None:
    """Every bot makes one pass, all starting at the same moment."""
    go = threading.Barrier(len(bots))

    def run(bot: Notifier) -> None:
        go.wait()
        bot.run_once(wait_seconds=0.01)

    threads = [threading.Thread(target=run, args=(bot,)) for bot in bots]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

def test_the_notice_goes_to_every_channel_and_the_reminder_comes_15_minutes_before_on_the_clock(redis_server, slack):  # type: ignore[no-untyped-def]
    """Announced for in 2h: the notice at once (team channel and the extra one), no reminder at 1h44m, one at 1h45m
    mentioning the approvers, and no second one on later passes."""
    clock = Clock()
    deps = _deps(redis_server.url, clock)
    reply = handle(deps, "U_ALICE", "announce prod-old in 2h 1h30m")
    assert reply.ok and "reminded at" in reply.text, reply.text
    notifier = _notifier(deps, slack, clock)
    notifier.run_once(wait_seconds=0.01)
    start = clock.now + timedelta(hours=2)
    for channel in ("C_DBMIG", "C_OPS"):
        assert [t for t in _texts(slack, channel) if "Maintenance of prod-old" in t and f"{start:%H:%M}-" in t], channel
    clock.now += timedelta(hours=1, minutes=44)
    notifier.run_once(wait_seconds=0.01)
    assert _reminders(slack) == []
    clock.now += timedelta(minutes=1)
    notifier.run_once(wait_seconds=0.01)
    notifier.run_once(wait_seconds=0.01)
    reminders = _reminders(slack)
    assert len(reminders) == 1 and "starts in 15 min" in reminders[0]
    assert "<@U_BOB>" in reminders[0] and "<@U_CAROL>" in reminders[0]
    assert not [t for t in _texts(slack, "C_OPS") if "Reminder" in t]  # the reminder is for the team and approvers
    assert len([t for t in _texts(slack, "C_DBMIG") if "Maintenance of prod-old" in t]) == 1


def test_several_bots_post_the_notice_and_the_reminder_exactly_once(redis_server, slack):  # type: ignore[no-untyped-def]
    """Three notifiers (three bots) passing at the same moment: one notice and one reminder in the channel."""
    clock = Clock()
    deps = _deps(redis_server.url, clock)
    assert handle(deps, "U_ALICE", "announce prod-old in 1h 30m").ok
    clock.now += timedelta(minutes=50)
    bots = [_notifier(_deps(redis_server.url, clock), slack, clock) for _ in range(3)]
    pass_together(bots)
    assert len(_reminders(slack)) == 1
    assert len([t for t in _texts(slack, "C_DBMIG") if "Maintenance of prod-old" in t]) == 1


class _Killed(BaseException):
    """The bot process dying: nothing in the bot catches it, as nothing runs after a kill."""


class _DiesWhilePosting(WebClient):
    """A bot killed after it claimed a post and before Slack got it."""

    def chat_postMessage(self, **kwargs: Any) -> SlackResponse:  # noqa: N802 -- slack_sdk's name
        raise _Killed


def test_a_reminder_claimed_by_a_bot_that_died_before_posting_is_posted_by_another_once(redis_server, slack):  # type: ignore[no-untyped-def]
    """The reminder's claim is short-lived: while it is held no other bot posts, a minute later another one posts
    it (the dead one never did), and no pass after that posts it again."""
    clock = Clock()
    deps = _deps(redis_server.url, clock)
    assert handle(deps, "U_ALICE", "announce prod-old in 1h 30m").ok
    survivor = _notifier(_deps(redis_server.url, clock), slack, clock)
    survivor.run_once(wait_seconds=0.01)  # the notice, posted by the bot that lives on
    clock.now += timedelta(minutes=45, seconds=10)
    doomed = Notifier(deps.store, _DiesWhilePosting(token="xoxb-test", base_url=slack.api_url), deps.config, clock=clock)
    with pytest.raises(_Killed):
        doomed.run_once(wait_seconds=0.01)
    survivor.run_once(wait_seconds=0.01)
    assert _reminders(slack) == []  # the claim is still young: the dying bot may yet be posting
    clock.now += timedelta(minutes=2)
    survivor.run_once(wait_seconds=0.01)
    survivor.run_once(wait_seconds=0.01)
    _notifier(_deps(redis_server.url, clock), slack, clock).run_once(wait_seconds=0.01)  # a third bot, later
    reminders = _reminders(slack)
    assert len(reminders) == 1 and "starts in 13 min" in reminders[0], reminders
    assert len([t for t in _texts(slack, "C_DBMIG") if "Maintenance of prod-old" in t]) == 1


def test_a_post_slack_refuses_gives_its_claim_back_at_once(redis_server, slack):  # type: ignore[no-untyped-def]
    """A bot whose posts Slack refuses (a revoked token) holds no claim: another bot posts the notice on its next
    pass, without waiting for the claim to run out, and once."""
    clock = Clock()
    deps = _deps(redis_server.url, clock)
    assert handle(deps, "U_ALICE", "announce prod-old in 1h 30m").ok
    refused = Notifier(deps.store, web_client(SlackSettings("xoxb-revoked", "s", None, slack.api_url)), deps.config,
                       clock=clock)
    refused.announcements.run_once()
    assert [e["error"] for e in slack.errors] == ["invalid_auth", "invalid_auth"]  # C_DBMIG and C_OPS
    healthy = _notifier(_deps(redis_server.url, clock), slack, clock)
    healthy.run_once(wait_seconds=0.01)
    healthy.run_once(wait_seconds=0.01)
    for channel in ("C_DBMIG", "C_OPS"):
        assert len([t for t in _texts(slack, channel) if "Maintenance of prod-old" in t]) == 1, channel


def test_a_freeze_outside_the_announced_window_says_so_in_its_approval_message(redis_server, slack):  # type: ignore[no-untyped-def]
    """No window: the approval says none was announced; a window hours away: outside it; in it: the window, named."""
    clock = Clock()
    deps = _deps(redis_server.url, clock)
    notifier = _notifier(deps, slack, clock)

    def approval_text() -> str:
        notifier.run_once(wait_seconds=0.01)
        return [t for t in _texts(slack, "C_DBMIG") if "requested by" in t and "Freeze of" in t][-1]

    reply = handle(deps, "U_ALICE", "freeze prod-old")
    assert reply.ok and "No maintenance window was announced" in reply.text
    assert "*No maintenance window was announced* for prod-old" in approval_text()
    assert handle(deps, "U_ALICE", "reject prod-old not now").ok
    assert handle(deps, "U_ALICE", "announce prod-old in 3h 1h").ok
    reply = handle(deps, "U_ALICE", "freeze prod-old")
    assert reply.ok and "Outside the announced window" in reply.text
    assert "*Outside the announced window*: requested at" in approval_text()
    assert handle(deps, "U_BOB", "reject prod-old").ok
    clock.now += timedelta(hours=3, minutes=5)
    reply = handle(deps, "U_ALICE", "freeze prod-old")
    assert reply.ok and "Outside" not in reply.text
    inside = approval_text()
    assert "In the announced maintenance window" in inside and "announced by <@U_ALICE>" in inside
    assert deps.store.active_for("prod-old").approval.window.fit == "inside"  # type: ignore[union-attr]


def test_cancel_removes_the_window_from_status_says_so_and_stops_the_reminder(redis_server, slack):  # type: ignore[no-untyped-def]
    """Listed by status until cancelled; the cancellation is posted where the notice went; no reminder follows."""
    clock = Clock()
    deps = _deps(redis_server.url, clock)
    notifier = _notifier(deps, slack, clock)
    assert handle(deps, "U_ALICE", "announce prod-old in 2h 1h").ok
    notifier.run_once(wait_seconds=0.01)
    assert "announced maintenance of prod-old" in handle(deps, "U_BOB", "status").text
    assert "announced maintenance of prod-old" in handle(deps, "U_BOB", "status prod-old").text
    cancelled = handle(deps, "U_BOB", "announce prod-old cancel")
    assert cancelled.ok and "cancelled by <@U_BOB>" in cancelled.text and "goes to C_DBMIG, C_OPS" in cancelled.text
    assert "announced maintenance" not in handle(deps, "U_BOB", "status").text
    clock.now += timedelta(hours=1, minutes=50)
    notifier.run_once(wait_seconds=0.01)
    for channel in ("C_DBMIG", "C_OPS"):
        assert len([t for t in _texts(slack, channel) if "is cancelled by" in t]) == 1
    assert _reminders(slack) == []
    assert handle(deps, "U_ALICE", "announce prod-old in 1h 1h").ok  # the slot is free again


@pytest.mark.parametrize("text, said", [
    ("announce prod-old 2000-01-01 10:00 1h", "is in the past"),
    ("announce prod-old in 1h 0m", "from 1m to 24h, not 0s"),
    ("announce prod-old in 1h 30h", "up to"),
    ("announce prod-old in 1h -1h", "is not a duration"),
    ("announce prod-old ١٠:٠٠ 1h", "is not a start"),
    ("announce prod-old in 1h ²h", "is not a duration"),
    ("announce prod-old 2099-01-01 10:00 1h", "more than 30 days ahead"),
    ("announce nowhere in 1h 1h", "Unknown server `nowhere`"),
    ("announce prod-old in 1h", "needs a start and a duration"),
    ("announce prod-old cancel", "no announced maintenance window to cancel"),
])
def test_bad_announcements_are_refused_clearly_and_change_nothing(redis_server, text, said):  # type: ignore[no-untyped-def]
    """Past, zero, negative, over a day, non-ASCII digits, unknown server, missing duration, nothing to cancel."""
    deps = _deps(redis_server.url, Clock())
    assert handle(deps, "U_ALICE", "announce spare in 2h 1h").ok  # an unrelated window, so "nothing" is not empty
    before = snapshot(redis_server.url)
    reply = handle(deps, "U_ALICE", text)
    assert not reply.ok and said.replace("up to", "from 1m to 24h") in reply.text.replace("&lt;", "<"), reply.text
    assert snapshot(redis_server.url) == before


def test_a_second_window_while_one_is_announced_is_refused(redis_server):  # type: ignore[no-untyped-def]
    """One window per server: a second announce names the first and how to cancel it."""
    deps = _deps(redis_server.url, Clock())
    assert handle(deps, "U_ALICE", "announce prod-old in 2h 1h").ok
    reply = handle(deps, "U_BOB", "announce prod-old in 5h 1h")
    assert not reply.ok and "already has a window announced by <@U_ALICE>" in reply.text
    assert "announce prod-old cancel" in reply.text


def test_the_command_line_announces_and_cancels_with_the_same_words(redis_server, tmp_path):  # type: ignore[no-untyped-def]
    """`pgmove do "announce ..."`: accepted in plain text, listed by status --json, cancelled the same way."""
    config = tmp_path / "pgmove.toml"
    config.write_text(f'redis_url = "{redis_server.url}"\n[access]\noperators = ["U_ALICE"]\napprovers = ["U_BOB"]\n'
                      f'channels = ["C_DBMIG"]\n{cli_users(["U_ALICE"])}\n[servers.prod-old]\ndsn = "host=127.0.0.1 port=1 user=pgmove"\n')
    done = pgmove_cli(config, "do", "announce prod-old in 2h 45m")
    assert done.returncode == 0 and "Maintenance of prod-old" in done.stdout and "<@" not in done.stdout, done.stderr
    status = pgmove_cli(config, "do", "--json", "status")
    assert '"announcements"' in status.stdout and '"server": "prod-old"' in status.stdout
    assert pgmove_cli(config, "do", "announce prod-old cancel").returncode == 0
    assert pgmove_cli(config, "do", "announce prod-old 1:00 0m").returncode == 2


def test_a_cutover_from_in_sync_freezes_too_and_its_approval_names_the_window(redis_server, slack):  # type: ignore[no-untyped-def]
    """The logical one-approval cutover stops writes as a freeze does: its approval says whether that is announced."""
    clock = Clock()
    deps = _deps(redis_server.url, clock)
    m = in_sync()
    deps.store.update_server("prod-old", lambda _cur: Outcome(m))
    assert handle(deps, "U_ALICE", "announce prod-old in 10m 1h").ok
    assert handle(deps, "U_ALICE", "cutover prod-old").ok
    approval = deps.store.active_for("prod-old").approval  # type: ignore[union-attr]
    assert approval is not None and approval.window is not None and approval.window.fit == "inside"
    _notifier(deps, slack, clock).run_once(wait_seconds=0.01)
    assert [t for t in _texts(slack, "C_DBMIG") if "Cutover of" in t and "In the announced maintenance window" in t]
