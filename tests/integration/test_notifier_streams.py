"""The notifier waits on the migrations' streams with one blocking read, and sees every server's current migration."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from pgmove.bot.app import web_client
from pgmove.bot.notifier import Notifier
from pgmove.bot.settings import SlackSettings
from pgmove.handlers.commands import handle
from pgmove.sandbox.fakeslack.server import FakeSlack
from pgmove.sandbox.servers import wait_until
from pgmove.state import actions, work
from pgmove.state.models import AuditEvent, EventKind, Plan, StepName, StepRecord, StepStatus
from tests.integration.helpers import Clock, make_deps


@pytest.fixture
def slack():  # type: ignore[no-untyped-def]
    server = FakeSlack().start()
    yield server
    server.stop()


def _notifier(deps, slack, clock=None) -> Notifier:  # type: ignore[no-untyped-def]
    client = web_client(SlackSettings("xoxb-test", "s", None, slack.api_url))
    return Notifier(deps.store, client, deps.config, **({"clock": clock} if clock else {}))


def _blocked_in_xread(url: str) -> bool:
    return any(c.get("cmd") in ("xread", "xread|block") for c in redis.Redis.from_url(url).client_list())


def _thread(slack) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(x.text for s in slack.channel_messages("C_DBMIG") for x in slack.thread(s.ts))


def test_a_new_event_is_posted_as_soon_as_it_lands_while_the_notifier_blocks(redis_server, slack):  # type: ignore[no-untyped-def]
    """The notifier sits in XREAD, not in a polling loop: an event wakes it at once, well before its wait runs out."""
    deps = make_deps(redis_server.url)
    assert handle(deps, "U_ALICE", "plan prod-old prod-new").ok
    m = deps.store.active_for("prod-old")
    notifier = _notifier(deps, slack)
    notifier.run_once(wait_seconds=0.01)  # the status message and what is there already
    assert len(slack.channel_messages("C_DBMIG")) == 1
    took: list[float] = []

    def one_pass() -> None:
        started = time.monotonic()
        notifier.run_once(wait_seconds=60)
        took.append(time.monotonic() - started)

    waiter = threading.Thread(target=one_pass)
    waiter.start()
    wait_until(lambda: _blocked_in_xread(redis_server.url), 10, "the notifier blocked on the streams")
    deps.store.append_event(m.id, AuditEvent(kind=EventKind.PROGRESS, at=datetime.now(UTC), actor="worker",
                                             message="woken by this line"))
    waiter.join(timeout=30)
    assert took and took[0] < 30, "the pass waited out its whole wait instead of waking on the event"
    assert "woken by this line" in _thread(slack)


def test_every_servers_current_migration_is_watched_however_many_newer_ones_there_are(redis_server, slack):  # type: ignore[no-untyped-def]
    """The notifier once looked only at the 50 newest migrations: an older one still running went silent."""
    deps = make_deps(redis_server.url)
    assert handle(deps, "U_ALICE", "plan prod-old prod-new").ok
    old = deps.store.active_for("prod-old")
    later = datetime.now(UTC) + timedelta(minutes=1)
    for n in range(55):
        out = actions.new_migration(f"mig-other-{n}", Plan(source=f"other-{n}", target=None), "U_ALICE", later)
        deps.store.update_server(f"other-{n}", lambda _cur, out=out: out)
    deps.store.append_event(old.id, AuditEvent(kind=EventKind.PROGRESS, at=datetime.now(UTC), actor="worker",
                                               message="the oldest migration still speaks"))
    _notifier(deps, slack).run_once(wait_seconds=0.01)
    assert "the oldest migration still speaks" in _thread(slack)


def test_a_live_line_held_back_by_the_pace_shows_once_the_clock_moves_on(redis_server, slack):  # type: ignore[no-untyped-def]
    """Live ticks are paced by the injected clock: the second waits for it, then shows without any new event."""
    clock = Clock()
    deps = make_deps(redis_server.url, clock)
    assert handle(deps, "U_ALICE", "plan prod-old prod-new").ok
    m = deps.store.active_for("prod-old")
    started = clock.now - timedelta(seconds=1)
    deps.store.update(m.id, lambda cur: work.with_changes(cur, started, "copy runs", "w", steps=[
        StepRecord(name=StepName.COPY, status=StepStatus.RUNNING, started_at=started)]))
    notifier = _notifier(deps, slack, clock)

    def tick(text: str) -> None:
        deps.store.append_event(m.id, AuditEvent(kind=EventKind.PROGRESS, at=clock.now, actor="worker",
                                                 data={"tick": True}, step=StepName.COPY, message=text))

    def status_text() -> Any:
        return slack.find(slack.channel_messages("C_DBMIG")[0].ts).all_text()

    tick("copying big.public.t: 10 MB")
    notifier.run_once(wait_seconds=0.01)
    notifier.run_once(wait_seconds=0.01)
    assert "10 MB" in status_text()
    tick("copying big.public.t: 20 MB")
    notifier.run_once(wait_seconds=0.01)
    assert "20 MB" not in status_text(), "shown before its pace allowed"
    clock.now += timedelta(seconds=5)
    notifier.run_once(wait_seconds=0.01)
    assert "20 MB" in status_text()
