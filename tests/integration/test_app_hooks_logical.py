"""The app hooks of a logical migration against real servers: a failing pause inside the one-approval window and
before the two-step freeze leaves the source as it was and the migration in sync; once it works, the pause runs
inside the window before the freeze and the target's resume after the cutover hook."""

from __future__ import annotations

import pytest

from tests.integration.catalog import snapshot
from tests.integration.test_app_hooks import first, hook, messages, no_secret_in, ran, server_keys
from tests.integration.test_logical_flow import configure, do_json, zero_leftovers

pytestmark = pytest.mark.slow


def test_the_pause_hook_guards_both_logical_freezes_and_the_window_resumes_the_app_on_the_target(pgmove, source, target, tmp_path, passwords):  # type: ignore[no-untyped-def]
    """In sync, a pause hook that fails (window, then two-step freeze) freezes nothing and the migration is in
    sync again each time; once it works, the window runs it before the freeze, then the cutover hook, then
    prod-new's resume hook, and the rollback plan the approver saw says writes on the target would be lost."""
    broken = tmp_path / "broken"
    broken.touch()
    fails = f"import pathlib\nif pathlib.Path({str(broken)!r}).exists():\n    print('cannot scale workers')\n    sys.exit(3)"
    server_keys(pgmove, "prod-old", pause_app_hook=[hook(tmp_path, "pause-app", body=fails)],
                resume_app_hook=[hook(tmp_path, "resume-old")])
    server_keys(pgmove, "prod-new", resume_app_hook=[hook(tmp_path, "resume-new")])
    configure(pgmove, sync_check_seconds=1)
    pgmove.start_worker()
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new --method logical")["state"] == "ready"
    synced = do_json(pgmove, "U_ALICE", "sync prod-old")
    assert synced["state"] == "in_sync", synced.get("failure")
    before = snapshot(source)

    asked = pgmove.do("U_ALICE", "cutover prod-old --window 20s")
    assert "Rollback plan" in asked.stdout and "no reverse replication" in asked.stdout, asked.stdout
    back = do_json(pgmove, "U_BOB", "approve prod-old")
    assert back["state"] == "in_sync" and back["freeze"] is None, back.get("failure")
    assert snapshot(source) == before
    said = next(line for line in messages(pgmove, back["id"]) if "exited with status 3" in line)
    assert "cannot scale workers" in said and "`/pgmove cutover prod-old`" in said and "in sync again" in said

    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    again = do_json(pgmove, "U_BOB", "approve prod-old")
    assert again["state"] == "in_sync" and again["freeze"] is None, again.get("failure")
    assert snapshot(source) == before
    assert [h["hook"] for h in ran(tmp_path)] == ["pause-app", "resume-old"] * 2

    broken.unlink()
    assert pgmove.do("U_ALICE", "cutover prod-old --window 20s").returncode == 0
    done = do_json(pgmove, "U_BOB", "approve prod-old")
    assert done["state"] == "cut_over", done.get("failure")
    assert "every write made on prod-new since the cutover" in done["approval"]["rollback"]
    assert [h["hook"] for h in ran(tmp_path)][4:] == ["pause-app", "resume-new"]
    lines = messages(pgmove, done["id"])
    window = first(lines, "U_BOB approved the cutover")
    start = window + first(lines[window:], "pause-app says hello")
    assert start < window + first(lines[window:], "frozen for the cutover window") \
        < window + first(lines[window:], "cutover hook") < window + first(lines[window:], "resume-new says hello")
    no_secret_in(ran(tmp_path), passwords)
    assert zero_leftovers(source, target, passwords) == {}
