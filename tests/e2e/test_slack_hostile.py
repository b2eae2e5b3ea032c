"""Hostile data and payloads at the Slack edge, on the real bot and servers: a database called `<!channel>` and
a reject reason with `<!here>` are shown and ping nobody; a click or command without a channel does nothing."""

from __future__ import annotations

import psycopg
import pytest

from tests.e2e.conftest import wait_until

pytestmark = pytest.mark.slow


def test_catalog_names_and_reasons_are_shown_never_obeyed(http_world, source):  # type: ignore[no-untyped-def]
    """The approval message lists `<!channel>` (a real database) and the rejection shows `<!here>` (the reason):
    as text. The stand-in notes any broadcast or stranger's mention pgmove lets through."""
    w, slack, drive = http_world, http_world.slack, http_world.driver
    with psycopg.connect(source.admin_dsn(), autocommit=True) as conn:
        conn.execute('CREATE DATABASE "<!channel>"')
    w.pgmove.start_worker()
    drive.command("U_ALICE", "plan prod-old prod-new")
    w.wait_state("ready")
    drive.command("U_ALICE", "freeze prod-old")
    request = w.message_with("Approve freeze")
    assert "<!channel>" in request.all_text() and "&lt;!channel&gt;" in request.raw_text()
    drive.command("U_BOB", "reject prod-old <!here> & <@U_MALLORY> say no")
    w.wait_state("ready")
    decided = wait_until(lambda: "Rejected by" in slack.find(request.ts).all_text() and slack.find(request.ts), 20,
                         "the rejection in the approval message")
    assert "<!here> & <@U_MALLORY> say no" in decided.all_text()
    drive.command("U_ALICE", "status <!everyone>")  # a refusal quoting what was typed
    wait_until(lambda: slack.ephemerals_for("U_ALICE"), 10, "alice's refusal")
    mentions = [e for e in slack.errors if e["error"] == "unescaped_mention"]
    assert mentions == [], mentions
    assert slack.errors == []


def test_a_click_or_command_without_a_channel_is_refused(http_world):  # type: ignore[no-untyped-def]
    """Slack always names the channel; a payload without one cannot skip the channel check: nothing happens,
    the one who clicked is told why."""
    w, slack, drive = http_world, http_world.slack, http_world.driver
    w.pgmove.start_worker()
    drive.command("U_ALICE", "plan prod-old prod-new")
    w.wait_state("ready")
    drive.command("U_ALICE", "freeze prod-old")
    request = w.message_with("Approve freeze")
    drive.click("U_BOB", request, "pgmove_approve", with_channel=False)
    told = wait_until(lambda: slack.ephemerals_for("U_BOB"), 10, "bob told the click did nothing")
    assert "which channel" in told[-1].text
    assert w.state() == "awaiting_freeze_approval"
    drive.command("U_BOB", "approve prod-old", channel="")
    wait_until(lambda: len(slack.ephemerals_for("U_BOB")) >= 2, 10, "bob told the command did nothing")
    assert w.state() == "awaiting_freeze_approval"
    drive.click("U_BOB", request, "pgmove_approve")  # the same click from the channel works
    w.wait_state("freezing", "frozen", "copying", "verifying", "verified")
