"""What Slack's edges throw at the bot: bad signatures, retries, double clicks, 429s, restarts, huge reports."""

from __future__ import annotations

import copy
import os
import signal
import time
import urllib.parse
from datetime import UTC, datetime

import pytest

from pgmove.handlers import views
from pgmove.sandbox.fakeslack.driver import sign
from pgmove.state.machine import Event, State
from pgmove.state.models import AuditEvent, EventKind, Plan
from tests.e2e.conftest import SIGNING_SECRET, wait_until
from tests.integration.helpers import snapshot
from tests.unit.samples import verification_of_500_tables

pytestmark = pytest.mark.slow


def _url(world) -> str:  # type: ignore[no-untyped-def]
    import tomllib

    return tomllib.loads(world.pgmove.config_path.read_text())["redis_url"]


def test_unsigned_wrongly_signed_and_stale_requests_get_401_and_change_nothing(http_world):  # type: ignore[no-untyped-def]
    """Only Slack can drive the bot: a bad or replayed signature is refused before any handler runs."""
    body = urllib.parse.urlencode({"command": "/pgmove", "text": "plan prod-old prod-new", "user_id": "U_ALICE",
                                   "channel_id": "C_DBMIG", "trigger_id": "t-1", "response_url": "http://127.0.0.1:9/x"}).encode()
    before = snapshot(_url(http_world))
    form = "application/x-www-form-urlencoded"
    cases = {
        "unsigned": {},
        "wrong secret": sign("not-the-secret", body),
        "tampered body": sign(SIGNING_SECRET, body + b"&text=x"),
        "stale": sign(SIGNING_SECRET, body, timestamp=int(time.time()) - 301),
    }
    for name, headers in cases.items():
        status, _ = http_world.driver.post(body, headers, form)
        assert status == 401, name
    # No wait needed: the bot stores a request before it acks, and only a stored request is ever acted on or answered
    # in Slack, so one wrongly accepted would already be in Redis when its response came.
    assert snapshot(_url(http_world)) == before
    assert not http_world.slack.messages and not http_world.slack.ephemerals
    status, _ = http_world.driver.post(body, sign(SIGNING_SECRET, body), form)  # the same body, signed: accepted
    assert status == 200


def test_a_retried_command_and_a_double_click_each_cause_one_transition(http_world):  # type: ignore[no-untyped-def]
    """Slack's retry of a slash command (same trigger) and two clicks on Approve: one effect each."""
    w = http_world
    w.pgmove.start_worker()
    w.driver.command("U_ALICE", "plan prod-old prod-new")
    w.wait_state("ready")
    first = w.driver.command("U_ALICE", "freeze prod-old")
    w.driver.command("U_ALICE", "freeze prod-old", retry_of=first)
    # Both clicks on the message as Bob saw it: the first one's effect may replace its buttons before the second.
    request = copy.deepcopy(w.message_with("Approve freeze"))
    w.driver.click("U_BOB", request, "pgmove_approve")
    w.driver.click("U_BOB", request, "pgmove_approve")
    w.wait_state("verified")
    m = w.store.active_for("prod-old")
    events = w.store.events(m.id)
    assert len([e for e in events if e.event == Event.FREEZE_REQUESTED]) == 1
    assert len([e for e in events if e.event == Event.APPROVED]) == 1
    assert len([x for x in w.slack.channel_messages("C_DBMIG") if "Approve freeze" in x.all_text()
                or "Approved by" in x.all_text()]) == 1
    second_click = wait_until(lambda: w.slack.ephemerals_for("U_BOB"), 10, "bob told his second click did nothing")
    assert "already approved" in second_click[-1].text


def test_the_status_survives_a_bot_killed_and_restarted_mid_migration(http_world):  # type: ignore[no-untyped-def]
    """No update lost, none posted twice: the notifier resumes from its cursor in Redis."""
    w = http_world
    w.pgmove.start_worker()
    w.driver.command("U_ALICE", "plan prod-old prod-new")
    w.wait_state("ready")
    w.driver.command("U_ALICE", "freeze prod-old")
    request = w.message_with("Approve freeze")
    w.driver.click("U_BOB", request, "pgmove_approve")
    w.wait_state("freezing", "frozen", "copying", "verifying", "verified")
    os.killpg(w.pgmove.bots[-1].pid, signal.SIGKILL)
    w.pgmove.bots[-1].wait()
    w.wait_state("verified")  # the migration went on without the bot
    w.start_bot()
    m = w.store.active_for("prod-old")
    status = w.message_with(f"pgmove {m.id}")
    wait_until(lambda: any("Verified" in x.all_text() for x in w.slack.thread(status.ts)), 30, "the summary after restart")
    # The notifier's cursor at the stream's end: every event was handled, and a later pass posts nothing again.
    wait_until(lambda: w.store.chat_ref(m.id, "cursor") == w.store.last_event_id(m.id), 30, "the notifier caught up")
    thread_text = views.for_terminal("\n".join(x.text for x in w.slack.thread(status.ts)))  # as people read it
    for event in w.store.events(m.id):
        line = event.message
        assert thread_text.count(line) >= 1, f"lost: {line}"
    for event in w.store.events(m.id):
        if event.kind == EventKind.TRANSITION:
            assert thread_text.count(views.for_terminal(views.event_line(event))) == 1, f"twice or never: {event.message}"
    assert len([x for x in w.slack.channel_messages("C_DBMIG") if f"pgmove {m.id}" in x.all_text()]) == 1
    assert w.slack.find(status.ts).text.endswith("verified")


def test_every_update_arrives_in_order_when_every_second_call_is_rate_limited(redis_server):  # type: ignore[no-untyped-def]
    """429 with Retry-After: the client waits and retries; order is kept because one notifier posts in sequence."""
    from pgmove.bot.app import web_client
    from pgmove.bot.notifier import Notifier
    from pgmove.bot.settings import SlackSettings
    from pgmove.sandbox.fakeslack.server import FakeSlack
    from tests.integration.helpers import make_deps

    slack = FakeSlack().start()
    try:
        slack.rate_limit_every = 2
        deps = make_deps(redis_server.url)
        m = _migration_with_events(deps.store, 12)
        notifier = Notifier(deps.store, web_client(SlackSettings("xoxb-test", "s", None, slack.api_url)), deps.config)
        notifier.sync(m.id)
        statuses = slack.channel_messages("C_DBMIG")
        assert len(statuses) == 1
        thread = "\n".join(x.text for x in slack.thread(statuses[0].ts))
        positions = [thread.index(f"step {i} of 12") for i in range(12)]
        assert positions == sorted(positions), "thread lines out of order"
        shown = [e["text"] for e in statuses[0].edits] + [statuses[0].text]
        assert [s.split(": ")[-1] for s in shown][-1] == "ready"
        assert slack.throttled >= 3, "the stand-in never rate-limited: the test proves nothing"
        assert slack.errors == []
    finally:
        slack.stop()


def test_a_verification_report_of_500_tables_is_attached_whole_to_the_status_thread(redis_server):  # type: ignore[no-untyped-def]
    """The summary fits Slack (tests/unit/test_blocks.py); the notifier posts it and attaches the full report as a file."""
    from pgmove.bot.app import web_client
    from pgmove.bot.notifier import Notifier
    from pgmove.bot.settings import SlackSettings
    from pgmove.sandbox.fakeslack.server import FakeSlack
    from tests.integration.helpers import make_deps

    verification, tables, _ = verification_of_500_tables()
    slack = FakeSlack().start()
    try:
        deps = make_deps(redis_server.url)
        m = _migration_with_events(deps.store, 0, verification=verification)
        Notifier(deps.store, web_client(SlackSettings("xoxb-test", "s", None, slack.api_url)), deps.config).sync(m.id)
        assert slack.errors == []
        status = slack.channel_messages("C_DBMIG")[0]
        files = [f for x in slack.thread(status.ts) for f in x.files]
        assert files and all(t["table"] in files[0]["content"] for t in tables)
    finally:
        slack.stop()


def _migration_with_events(store, n: int, verification=None):  # type: ignore[no-untyped-def]
    """A migration record with n progress events and one transition, written straight to the store."""
    from pgmove.state import actions, work

    now = datetime.now(UTC)
    out = actions.new_migration("mig-edge", Plan(source="prod-old", target="prod-new"), "U_ALICE", now)
    store.update_server("prod-old", lambda _cur: out)
    for i in range(n):
        store.append_event("mig-edge", AuditEvent(kind=EventKind.PROGRESS, at=now, actor="worker", message=f"step {i} of 12"))

    def ready(cur):  # type: ignore[no-untyped-def]
        moved = work.step_transition(cur, Event.PREFLIGHT_OK, now, "preflight ok", "w")
        if verification is not None:
            moved = work.step_transition(moved.migration, Event.REPLANNED, now, "x", "w")
            moved.migration.state = State.VERIFYING
            moved.migration.verification = verification
            moved.events = [AuditEvent(kind=EventKind.TRANSITION, at=now, actor="w", message="verification failed",
                                       event=Event.VERIFY_FAILED, from_state=State.VERIFYING, to_state=State.VERIFY_FAILED)]
            moved.migration.state = State.VERIFY_FAILED
        return moved

    return store.update("mig-edge", ready).migration


def test_an_expired_request_says_so_and_loses_its_buttons(redis_server):  # type: ignore[no-untyped-def]
    """Nobody decided in time: the approval message shows it expired, and nothing can be clicked."""
    from datetime import timedelta

    from pgmove.bot.app import web_client
    from pgmove.bot.notifier import Notifier
    from pgmove.bot.settings import SlackSettings
    from pgmove.handlers.commands import handle
    from pgmove.sandbox.fakeslack.server import FakeSlack
    from tests.integration.helpers import Clock, make_deps, preflight_passes

    slack = FakeSlack().start()
    try:
        clock = Clock()
        deps = make_deps(redis_server.url, clock)
        handle(deps, "U_ALICE", "plan prod-old prod-new")
        preflight_passes(deps.store)
        assert handle(deps, "U_ALICE", "freeze prod-old").ok
        m = deps.store.active_for("prod-old")
        notifier = Notifier(deps.store, web_client(SlackSettings("xoxb-test", "s", None, slack.api_url)), deps.config,
                            clock=clock)
        notifier.sync(m.id)
        request = next(x for x in slack.channel_messages("C_DBMIG") if "Approve freeze" in x.all_text())
        assert "Expired at" not in slack.find(request.ts).all_text()
        clock.now += timedelta(minutes=30)  # the request's lifetime: it expires now
        notifier.sync(m.id)
        expired = slack.find(request.ts)
        assert "Expired at" in expired.all_text() and '"actions"' not in expired.all_text()
        assert slack.errors == []
    finally:
        slack.stop()


def test_a_stalled_slack_delays_the_channel_but_loses_nothing(redis_server):  # type: ignore[no-untyped-def]
    """Calls that time out are retried on the next pass, from the cursor: every update still arrives, in order."""
    from slack_sdk import WebClient

    from pgmove.bot.notifier import Notifier
    from pgmove.sandbox.fakeslack.server import FakeSlack
    from tests.integration.helpers import make_deps

    slack = FakeSlack().start()
    try:
        deps = make_deps(redis_server.url)
        m = _migration_with_events(deps.store, 12)
        notifier = Notifier(deps.store, WebClient(token="xoxb-test", base_url=slack.api_url, timeout=0.5), deps.config)
        slack.stall_calls, slack.stall_seconds = 2, 1.0
        passes = 0
        while True:
            passes += 1
            try:
                notifier.sync(m.id)
                break
            except Exception:
                assert passes < 10
        assert passes > 1, "no call timed out: the test proves nothing"
        def whole_thread() -> str | None:
            text = "\n".join(x.text for s_ in slack.channel_messages("C_DBMIG") for x in slack.thread(s_.ts))
            return text if all(f"step {i} of 12" in text for i in range(12)) else None

        thread = wait_until(whole_thread, 10, "every step in the thread")  # stalled calls land late, as in a slow Slack
        firsts = [thread.index(f"step {i} of 12") for i in range(12)]
        assert firsts == sorted(firsts)
    finally:
        slack.stop()


def test_a_request_committed_while_the_notifier_reads_still_gets_its_approval_message(redis_server):  # type: ignore[no-untyped-def]
    """Regression: the notifier once read the record before the events, so a request committed in between
    was announced by an event the stale record knew nothing of, and its approval message was never posted."""
    from pgmove.bot.app import web_client
    from pgmove.bot.notifier import Notifier
    from pgmove.bot.settings import SlackSettings
    from pgmove.handlers.commands import handle
    from pgmove.sandbox.fakeslack.server import FakeSlack
    from tests.integration.helpers import make_deps, preflight_passes

    slack = FakeSlack().start()
    try:
        deps = make_deps(redis_server.url)
        handle(deps, "U_ALICE", "plan prod-old prod-new")
        preflight_passes(deps.store)
        m = deps.store.active_for("prod-old")
        notifier = Notifier(deps.store, web_client(SlackSettings("xoxb-test", "s", None, slack.api_url)), deps.config)
        notifier.sync(m.id)
        real_events = deps.store.events

        def events_with_a_commit_in_between(*args, **kwargs):  # type: ignore[no-untyped-def]
            deps.store.events = real_events
            assert handle(deps, "U_ALICE", "freeze prod-old").ok  # lands between the notifier's two reads
            return real_events(*args, **kwargs)

        deps.store.events = events_with_a_commit_in_between
        notifier.sync(m.id)
        notifier.sync(m.id)
        assert any("Approve freeze" in x.all_text() for x in slack.channel_messages("C_DBMIG"))
    finally:
        slack.stop()


def test_live_copy_progress_edits_the_status_message_and_stays_out_of_the_thread(redis_server):  # type: ignore[no-untyped-def]
    """Per-table ticks every few seconds would flood a thread: they show as the status message's live line."""
    from pgmove.bot.app import web_client
    from pgmove.bot.notifier import Notifier
    from pgmove.bot.settings import SlackSettings
    from pgmove.sandbox.fakeslack.server import FakeSlack
    from pgmove.state import work
    from pgmove.state.models import StepName, StepRecord, StepStatus
    from tests.integration.helpers import make_deps

    slack = FakeSlack().start()
    try:
        deps = make_deps(redis_server.url)
        m = _migration_with_events(deps.store, 2)
        started = datetime.now(UTC)
        deps.store.update(m.id, lambda cur: work.with_changes(cur, started, "copy runs", "w", steps=[
            StepRecord(name=StepName.COPY, status=StepStatus.RUNNING, started_at=started)]))
        notifier = Notifier(deps.store, web_client(SlackSettings("xoxb-test", "s", None, slack.api_url)), deps.config)
        notifier.sync(m.id)
        status = slack.channel_messages("C_DBMIG")[0]
        thread_before = [x.text for x in slack.thread(status.ts)]
        now = datetime.now(UTC)
        for done in (10, 20, 30):
            deps.store.append_event(m.id, AuditEvent(kind=EventKind.PROGRESS, at=now, actor="worker", data={"tick": True},
                                                     step=StepName.COPY, message=f"copying big.public.t: {done} MB at 10.0 MB/s"))
        notifier.sync(m.id)
        assert [x.text for x in slack.thread(status.ts)] == thread_before
        assert "copying big.public.t: 30 MB" in slack.find(status.ts).all_text()
        assert slack.errors == []
    finally:
        slack.stop()
