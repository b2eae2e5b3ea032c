"""The Slack status message shows the copy's progress as `status` does, within Slack's limits."""

from __future__ import annotations

import re

import pytest

from pgmove.sandbox.fakeslack.limits import check_message
from pgmove.sandbox.servers import wait_until
from tests.integration.slowcopy import make_copy_slow

pytestmark = pytest.mark.slow

LINE = re.compile(r"copy: [\d.]+ MB of [\d.]+ MB \(\d+%\), \d+ of \d+ tables, [\d.]+ MB/s, ETA ~\w+ for the data")


def test_the_status_message_shows_the_whole_copys_progress_mid_copy(http_world, source, target):  # type: ignore[no-untyped-def]
    """A real bot and worker, a slow copy: the status message is edited in place with the whole copy's bytes,
    tables, rate and ETA, each version valid Block Kit, and the same line `status` gives in the channel."""
    w, slack, drive = http_world, http_world.slack, http_world.driver
    make_copy_slow(source, target, rows=400)
    w.pgmove.start_worker()
    drive.command("U_ALICE", "/pgmove plan prod-old prod-new --jobs 1")
    w.wait_state("ready")
    drive.command("U_ALICE", "/pgmove freeze prod-old")
    request = w.message_with("Approve freeze")
    drive.click("U_BOB", request, "pgmove_approve")
    m = wait_until(lambda: w.store.active_for("prod-old"), 10, "the migration")

    def status_message():  # type: ignore[no-untyped-def]
        return next((x for x in slack.channel_messages("C_DBMIG") if f"pgmove {m.id}" in x.all_text()), None)

    shown = wait_until(lambda: (s := status_message()) and LINE.search(s.all_text()) and s, 120,
                       "the status message with the copy's progress", every=0.2)
    check_message(shown.text, shown.blocks)
    assert w.state() == "copying"

    def status_reply() -> str | None:
        before = len(slack.ephemerals_for("U_ALICE"))
        drive.command("U_ALICE", "/pgmove status prod-old")
        said = wait_until(lambda: slack.ephemerals_for("U_ALICE")[before:], 10, "the status reply")[0]
        check_message(said.text, said.blocks)
        return said.text if "now: copy: " in said.text else None

    reply = wait_until(status_reply, 60, "a /pgmove status reply with the copy's progress", every=0.2)
    assert LINE.search(reply), reply

    w.wait_state("verified", timeout=300)
    assert slack.errors == [], slack.errors
