"""A logical cutover whose hook shuts the old server down: the cutover stands, and what replication could not be
removed is said, with how to remove it by hand, instead of "replication removed"."""

from __future__ import annotations

import sys

import pytest

from tests.integration.test_logical_flow import sync_and_cut_over, zero_leftovers

pytestmark = pytest.mark.slow


def test_a_hook_that_stops_the_old_server_leaves_a_cutover_that_names_the_slots_left_on_it(pgmove, source, target,  # type: ignore[no-untyped-def]
                                                                                             passwords):
    """The hook decommissions the source (fast shutdown) after switching the app: the migration is cut over, its
    result says replication was NOT fully removed and how to drop the slots, and the slots really are left."""
    hook = pgmove.config_path.parent / "switch-app"
    assert source.proc is not None
    hook.write_text(f"#!{sys.executable}\nimport os, signal, time\n"
                    f"os.kill({source.proc.pid}, signal.SIGINT)\n"
                    "time.sleep(3)\nprint('app switched, old server shut down')\n")
    pgmove.start_worker()
    final = sync_and_cut_over(pgmove, "30s")
    assert final["state"] == "cut_over", final.get("failure")
    switch = next(s for s in reversed(final["steps"]) if s["name"] == "switch")
    assert "replication NOT fully removed" in switch["message"], switch["message"]
    assert "pg_drop_replication_slot" in switch["message"]
    assert "replication removed" not in switch["message"].replace("NOT fully removed", "")
    source.proc.wait(timeout=30)
    source.proc = None
    source.start(port=source.port)
    left = zero_leftovers(source, target, passwords)
    assert left.get("source.slots", 0) > 0, left
    assert "target.subscriptions" not in left, left
