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
