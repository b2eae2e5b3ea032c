"""The whole dump migration in a channel: alice and bob, signed requests, one status message, real servers."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import wait_until

pytestmark = pytest.mark.slow


def test_the_whole_migration_in_the_channel(slack_world):  # type: ignore[no-untyped-def]
    """Plan, approval request, self-approval refused privately, bob approves, status updated in place, summary, cutover."""
    w, slack, drive = slack_world, slack_world.slack, slack_world.driver
    w.pgmove.start_worker()

    drive.command("U_ALICE", "/pgmove plan prod-old prod-new")
    w.wait_state("ready")
    plan_reply = w.message_with("planned prod-old -> prod-new")
    assert plan_reply.via == "response_url"  # the team sees what alice did

    drive.command("U_ALICE", "/pgmove freeze prod-old")
    request = w.message_with("Approve freeze")
    assert "requested by <@U_ALICE>" in request.all_text() and "<@U_BOB>" in request.all_text()
    assert "Databases: appdb" in request.all_text()

    drive.click("U_ALICE", request, "pgmove_approve")
    refusal = wait_until(lambda: slack.ephemerals_for("U_ALICE"), 10, "alice's private refusal")
    assert "second person" in refusal[-1].text
    assert not any("second person" in m.all_text() for m in slack.messages), "the refusal leaked into the channel"
    assert w.state() == "awaiting_freeze_approval"

    drive.click("U_BOB", request, "pgmove_approve")
    w.wait_state("verified")
    decided = wait_until(lambda: slack.find(request.ts).edits and slack.find(request.ts), 10, "the decision to replace the buttons")
    assert "Approved by <@U_BOB>" in decided.all_text() and '"actions"' not in decided.all_text()

    m = w.store.active_for("prod-old")
    status_messages = [msg for msg in slack.channel_messages("C_DBMIG") if f"pgmove {m.id}" in msg.all_text()]
    assert len(status_messages) == 1, "one status message per migration"
    status = status_messages[0]
    thread = wait_until(lambda: [x for x in slack.thread(status.ts) if "Verified" in x.all_text()] and slack.thread(status.ts),
                        20, "the verification summary in the thread")
    assert any("quiet check: no write on prod-old" in x.all_text() for x in thread)
    assert any("ended session" in x.all_text() or "frozen" in x.all_text() for x in thread)

    drive.command("U_ALICE", "/pgmove cutover prod-old")
    cutover_request = w.message_with("Approve cutover")
    drive.click("U_BOB", cutover_request, "pgmove_approve")
    w.wait_state("cut_over")
    final = w.message_with("cut over.", timeout=20)
    assert final.thread_ts is None
    wait_until(lambda: any("cut over." in x.all_text() for x in slack.thread(status.ts)), 20, "the final report in the thread")

    versions = [e["text"] for e in slack.find(status.ts).edits] + [slack.find(status.ts).text]
    seen = [v.split(": ")[-1] for v in versions]
    for state in ("ready", "awaiting_freeze_approval", "freezing", "frozen", "copying", "verifying", "verified",
                  "awaiting_cutover_approval", "cutting_over", "cut_over"):
        assert state in seen, f"the status message never showed {state}: {seen}"
    assert seen.index("freezing") < seen.index("copying") < seen.index("verified") < seen.index("cut_over")
    assert slack.errors == [], f"Slack would have refused: {slack.errors}"
    assert max(drive.ack_seconds) < 3.0, drive.ack_seconds
