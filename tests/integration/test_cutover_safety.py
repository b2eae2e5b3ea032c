"""After a cutover started, the source takes writes again only with a second person's approval."""

from __future__ import annotations

import json

import psycopg
import pytest

pytestmark = pytest.mark.slow


def source_is_frozen(source) -> bool:  # type: ignore[no-untyped-def]
    with psycopg.connect(source.admin_dsn("appdb")) as conn:
        return conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"


def test_after_a_failed_cutover_one_operator_cannot_give_writes_back_to_the_source(pgmove, source, tmp_path):  # type: ignore[no-untyped-def]
    """The hook switched the app and then failed: alice's unfreeze becomes a request that says so, she cannot
    approve it herself, and the source stays frozen until bob approves."""
    hook = tmp_path / "switch-app"
    hook.write_text("#!/bin/sh\necho 'app now points at prod-new'\necho 'health check failed' >&2\nexit 3\n")
    pgmove.start_worker()
    assert pgmove.do("U_ALICE", "plan prod-old prod-new", "--wait").returncode == 0
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    assert json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)["state"] == "verified"
    assert pgmove.do("U_ALICE", "cutover prod-old").returncode == 0
    failed = json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)
    assert failed["state"] == "failed" and failed["failure"]["step"] == "cutover"
    assert failed["hook"]["exit_status"] == 3 and failed["hook"]["output"][-1] == "health check failed"

    requests = {}
    for verb in ("unfreeze", "abort"):
        asked = pgmove.do("U_ALICE", f"{verb} prod-old")
        assert asked.returncode == 0, asked.stderr
        requests[verb] = asked.stdout
        waiting = json.loads(pgmove.do("U_ALICE", "status prod-old", "--json").stdout)
        assert waiting["state"] == "awaiting_unfreeze_approval" and waiting["approval"]["action"] == "unfreeze"
        said = pgmove.do("U_ALICE", f"{verb} prod-old")  # a second request while one waits
        assert said.returncode == 2 and "waiting for approval" in said.stderr
        assert "writes back" in pgmove.do("U_ALICE", "status prod-old").stdout
        assert source_is_frozen(source)
        refused = pgmove.do("U_ALICE", "approve prod-old")
        assert refused.returncode == 2 and "second person" in refused.stderr
        if verb == "unfreeze":
            assert pgmove.do("U_ALICE", "reject prod-old").returncode == 0  # withdrawn: back to failed
            assert json.loads(pgmove.do("U_ALICE", "status prod-old", "--json").stdout)["state"] == "failed"
    # What the approver is asked to weigh: the hook's exit status and its last words.
    assert "exited with status 3" in requests["abort"] and "health check failed" in requests["abort"], requests
    done = json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)
    assert done["state"] == "aborted", done.get("failure")
    assert not source_is_frozen(source)
