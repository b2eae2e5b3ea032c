"""Block Kit messages stay within Slack's limits and lose nothing a reader needs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pgmove.handlers import blocks, views
from pgmove.sandbox.fakeslack.limits import MAX_BLOCKS, MAX_SECTION_TEXT, check_blocks
from pgmove.state.models import Plan
from tests.unit.samples import verification_of_500_tables


def test_a_verification_summary_of_500_tables_with_3_differences_fits_and_loses_nothing():
    """The summary stays within Slack's limits and names all 3 differences; the full report is attached."""
    verification, tables, problems = verification_of_500_tables()
    (text, summary), full = blocks.verification_message(_fake_migration(verification))
    check_blocks(summary)
    assert len(summary) <= MAX_BLOCKS and all(len(b.get("text", {}).get("text", "")) <= MAX_SECTION_TEXT for b in summary)
    for p in problems:
            assert views.esc(p) in json.dumps(summary)  # escaped: "<" is data here
    assert full is not None and all(t["table"] in full for t in tables)


def _fake_migration(verification):  # type: ignore[no-untyped-def]
    from pgmove.state import actions

    m = actions.new_migration("mig-big", Plan(source="prod-old", target="prod-new"), "U_ALICE", datetime.now(UTC)).migration
    m.verification = verification
    return m


def test_the_final_report_gives_each_poolers_measured_pause_and_status_names_a_paused_pooler():
    """A cutover that switched pooler app reports its pause, timeline and new mapping; while a pooler is recorded
    as paused, status says so."""
    from pgmove.state.models import PausedPooler, StepName, StepRecord, StepStatus

    m = _fake_migration(None)
    now = datetime.now(UTC)
    line = {"paused_seconds": 0.42, "paused_at": "10:00:00.100", "repointed_at": "10:00:00.400",
            "resumed_at": "10:00:00.520", "clients_waiting": 3, "now_serves": {"appdb": "10.0.0.6:5432/appdb"}}
    m.steps.append(StepRecord(name=StepName.CUTOVER, status=StepStatus.DONE, started_at=now, finished_at=now,
                              result={"poolers": {"app": line}}))
    text = json.dumps(blocks.final_report(m))
    assert "Pooler app: the app was paused 0.42s" in text and "3 client(s) waiting" in text
    assert "appdb -&gt; 10.0.0.6:5432/appdb" in text  # escaped: data, never markup
    m.poolers_paused = [PausedPooler(name="app", databases=["appdb"], source={}, paused_at=now)]
    assert "pooler app is paused (appdb)" in views.status_text(m)
