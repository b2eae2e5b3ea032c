"""Hooks and a worker that dies under them: a SIGKILLed worker's pause, snapshot or resume hook is ended (not left
running in its own process group) before anything is retried, the failure says what is true and what works, the app
it paused is resumed by the abort, and a `freeze --snapshot` whose unfreeze could not finish resumes that unfreeze
instead of freezing again."""

from __future__ import annotations

import os
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.catalog import customize, snapshot
from tests.integration.test_app_hooks import hook, messages, ran, server_keys
from tests.integration.test_logical_flow import configure, do_json
from tests.integration.test_worker import source_is_frozen, wait_for

pytestmark = pytest.mark.slow


def running(pid: int) -> bool:
    """True while the process lives (a zombie waiting for its new parent has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def sleeper(tmp_path: Path, name: str) -> tuple[str, Path]:
    """A hook that says where it runs (its pid, in a file) and then takes ten minutes; and that file."""
    pid_file = tmp_path / f"{name}.pid"
    body = f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)"
    return hook(tmp_path, name, body=body), pid_file


def sleeps_once(tmp_path: Path, name: str) -> tuple[str, Path]:
    """A hook whose first run says its pid (in a file) and takes ten minutes; a later run says whether that first
    run is still alive and returns at once."""
    pid_file = tmp_path / f"{name}.pid"
    body = (f"import os, time\npid_file = {str(pid_file)!r}\nif os.path.exists(pid_file):\n"
            "    first = open(pid_file).read()\n    try:\n        stat = open(f'/proc/{first}/stat').read()\n"
            "    except FileNotFoundError:\n        stat = ') Z'\n"
            "    print('first run', 'gone' if stat[stat.rindex(')') + 2] in 'ZX' else 'STILL RUNNING')\n"
            "else:\n    open(pid_file, 'w').write(str(os.getpid()))\n    time.sleep(600)")
    return hook(tmp_path, name, body=body), pid_file


def killed_mid_hook(pgmove: Any, request: Any, pid_file: Path, command: str) -> int:
    """Ask and approve `command` on a worker, SIGKILL it (its own process group) once the hook runs; the hook's pid."""
    worker = pgmove.start_worker("doomed")
    assert pgmove.do("U_ALICE", command).returncode == 0
    assert pgmove.do("U_BOB", "approve prod-old").returncode == 0
    wait_for(lambda: pid_file.exists() and pid_file.read_text())
    pid = int(pid_file.read_text())
    request.addfinalizer(lambda: running(pid) and os.kill(pid, signal.SIGKILL))  # the old code left it running
    pgmove.kill_worker(worker)
    assert running(pid), "the hook was in the worker's process group"
    return pid


def test_a_worker_killed_during_the_pause_hook_ends_it_and_the_abort_resumes_the_app(pgmove, source, tmp_path, request):  # type: ignore[no-untyped-def]
    """SIGKILL while the pause_app_hook runs: the reaper ends the hook's process group, the failure says nothing was
    frozen and names a command that works (unfreeze is refused and points to abort), and the abort runs the
    resume_app_hook with the source exactly as before."""
    customize(source)
    before = snapshot(source)
    pause, pid_file = sleeper(tmp_path, "pause-app")
    server_keys(pgmove, "prod-old", pause_app_hook=[pause], resume_app_hook=[hook(tmp_path, "resume-old")])
    pid = killed_mid_hook(pgmove, request, pid_file, "freeze prod-old")

    failed = do_json(pgmove, "U_ALICE", "status prod-old")
    assert failed["state"] == "failed" and failed["failure"]["step"] == "freeze", failed.get("failure")
    assert not running(pid)
    reason = failed["failure"]["reason"]
    assert f"process group {pid}" in reason and "pgmove ended it" in reason, reason
    assert "Nothing on prod-old was frozen" in reason and "`/pgmove abort prod-old` runs the resume_app_hook" in reason
    assert "unfreeze" not in reason
    refused = pgmove.do("U_ALICE", "unfreeze prod-old")
    assert refused.returncode != 0 and 'pgmove do "abort prod-old" runs its resume_app_hook' in refused.stderr

    pgmove.start_worker("second")
    done = do_json(pgmove, "U_ALICE", "abort prod-old")
    assert done["state"] == "aborted" and done["app_pause"] is None, done.get("failure")
    assert [h["hook"] for h in ran(tmp_path)] == ["pause-app", "resume-old"]
    assert any("resume-old says hello" in line for line in messages(pgmove, done["id"]))
    assert snapshot(source) == before and not source_is_frozen(source)


def test_a_worker_killed_during_the_snapshot_hook_ends_it_and_its_retry_counts_the_whole_freeze(pgmove, source, tmp_path, request):  # type: ignore[no-untyped-def]
    """SIGKILL while the snapshot hook runs: its process group is ended before the failure is recorded (it cannot go
    on to snapshot a server writable again), the failure names the hook and its label as possibly incomplete and says
    the source is frozen and the app paused, and `retry` takes a new snapshot, unfreezes exactly as before, and counts
    the write freeze from the first run's freeze, not from the retry's start."""
    customize(source)
    before = snapshot(source)
    snap, pid_file = sleeps_once(tmp_path, "snap-volume")
    server_keys(pgmove, "prod-old", snapshot_hook=[snap], pause_app_hook=[hook(tmp_path, "pause-app")],
                resume_app_hook=[hook(tmp_path, "resume-old")])
    pid = killed_mid_hook(pgmove, request, pid_file, "freeze prod-old --snapshot")
    label = ran(tmp_path)[1]["argv"][-1]

    failed = do_json(pgmove, "U_ALICE", "status prod-old")
    assert failed["state"] == "failed", failed.get("failure")
    assert not running(pid)
    reason = failed["failure"]["reason"]
    assert "the snapshot hook" in reason and "pgmove ended it" in reason, reason
    assert f"the snapshot {label} may be incomplete or unusable" in reason
    assert "No snapshot was finished and prod-old is frozen, and the app's writers paused by its pause_app_hook" in reason
    assert "`/pgmove retry prod-old` takes a new one and unfreezes" in reason and "as safe as before" not in reason
    assert source_is_frozen(source)

    pgmove.start_worker("second")
    done = do_json(pgmove, "U_ALICE", "retry prod-old")
    assert done["state"] == "ready" and done["freeze"] is None and done["snapshot"] is None, done.get("failure")
    assert snapshot(source) == before and not source_is_frozen(source)
    assert [h["hook"] for h in ran(tmp_path)] == ["pause-app", "snap-volume", "snap-volume", "resume-old"]
    retried = done["steps"][-1]
    assert retried["name"] == "freeze" and retried["status"] == "done", retried
    held = (datetime.fromisoformat(retried["started_at"]) - datetime.fromisoformat(failed["freeze"]["taken_at"]))
    assert retried["result"]["write_freeze_seconds"] >= held.total_seconds() > 0


def test_a_snapshot_freeze_whose_unfreeze_is_blocked_fails_in_the_unfreeze_and_retry_finishes_it(pgmove, source, tmp_path):  # type: ignore[no-untyped-def]
    """A reader holds a table's lock through the automatic unfreeze, so a guard cannot be dropped: the migration
    fails in the unfreeze step (not `frozen`, not the freeze) after the configured give-up (5 s here, not the
    default 60 s), and `retry` finishes the unfreeze without freezing again or running the snapshot hook a second
    time."""
    customize(source)
    before = snapshot(source)
    ready, go = tmp_path / "ready", tmp_path / "go"
    body = (f"import os, time\nopen({str(ready)!r}, 'w').write('1')\ndeadline = time.monotonic() + 120\n"
            f"while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:\n    time.sleep(0.05)")
    server_keys(pgmove, "prod-old", snapshot_hook=[hook(tmp_path, "snap-volume", body=body)])
    configure(pgmove, unfreeze_lock_give_up_seconds=5)
    pgmove.start_worker()
    assert pgmove.do("U_ALICE", "freeze prod-old --snapshot").returncode == 0
    assert pgmove.do("U_BOB", "approve prod-old").returncode == 0
    wait_for(ready.exists)
    # Opened during the freeze under pgmove's application name, which the unfreeze does not end.
    with psycopg.connect(source.admin_dsn("appdb"), application_name="pgmove") as reader:
        reader.execute("SELECT count(*) FROM orders")  # its transaction stays open: the table's lock is held
        go.write_text("1")
        failed = do_json(pgmove, "U_ALICE", "status prod-old")
        assert failed["state"] == "failed", failed
        failure = failed["failure"]
        assert failure["step"] == "unfreeze" and failure["resume_state"] == "unfreezing", failure
        assert "could not lock public.orders in appdb within 5s" in failure["reason"], failure
        assert "the unfreeze of prod-old did not finish" in failure["reason"]
        assert "`/pgmove retry prod-old` continues the unfreeze" in failure["reason"]
        reader.rollback()

    done = do_json(pgmove, "U_ALICE", "retry prod-old")
    assert done["state"] == "ready" and done["freeze"] is None and not done["snapshot_unfreezing"], done.get("failure")
    assert snapshot(source) == before and not source_is_frozen(source)
    assert [h["hook"] for h in ran(tmp_path)] == ["snap-volume"]
    lines = messages(pgmove, done["id"])
    assert sum("recorded the settings" in line for line in lines) == 1  # frozen once, never again by the retry
    assert [s["name"] for s in done["steps"]][-2:] == ["freeze", "unfreeze"]


def test_a_worker_killed_during_the_resume_hook_after_a_snapshot_ends_it_and_retry_runs_it_once_more(pgmove, source, tmp_path, request):  # type: ignore[no-untyped-def]
    """SIGKILL while the resume_app_hook runs after the snapshot's automatic unfreeze: the reaper ends its process
    group, the failure names it and the snapshot taken, and `retry` runs it again only once the first run is gone,
    closing with the snapshot's label and checkpoint LSN."""
    customize(source)
    before = snapshot(source)
    resume, pid_file = sleeps_once(tmp_path, "resume-old")
    server_keys(pgmove, "prod-old", pause_app_hook=[hook(tmp_path, "pause-app")], resume_app_hook=[resume],
                snapshot_hook=[hook(tmp_path, "snap")])
    pid = killed_mid_hook(pgmove, request, pid_file, "freeze prod-old --snapshot")
    label = ran(tmp_path)[1]["argv"][-1]

    failed = do_json(pgmove, "U_ALICE", "status prod-old")
    assert failed["state"] == "failed" and not running(pid), failed.get("failure")
    reason = failed["failure"]["reason"]
    assert f"the resume_app_hook {resume} started" in reason and f"process group {pid}) and pgmove ended it" in reason
    assert f"The snapshot {label} was taken and prod-old was unfrozen" in reason, reason
    assert "`/pgmove retry prod-old` runs it again" in reason

    pgmove.start_worker("second")
    done = do_json(pgmove, "U_ALICE", "retry prod-old")
    assert done["state"] == "ready" and done["app_pause"] is None and done["app_resume"] is None, done.get("failure")
    assert [h["hook"] for h in ran(tmp_path)] == ["pause-app", "snap", "resume-old", "resume-old"]
    lines = messages(pgmove, done["id"])
    assert any("resume-old succeeded (exit status 0): first run gone" in line for line in lines)
    lsn = next(line for line in lines if "checkpoint LSN" in line).rsplit(" ", 1)[-1]
    assert any(f"unfrozen: settings restored exactly; snapshot {label} taken at checkpoint LSN {lsn}; app resumed" in line
               for line in lines)
    assert snapshot(source) == before and not source_is_frozen(source)


def test_a_worker_killed_during_the_targets_resume_hook_says_the_app_moved_and_retry_finishes_the_cutover(pgmove, source, tmp_path, request):  # type: ignore[no-untyped-def]
    """SIGKILL while prod-new's resume_app_hook runs after a cutover hook that exited 0: the reaper ends it, the
    failure says the app is on prod-new and that retry finishes the cutover (offering no unfreeze), and the retry cuts
    over running the resume hook once more, after the first run was gone."""
    resume, pid_file = sleeps_once(tmp_path, "resume-new")
    server_keys(pgmove, "prod-old", pause_app_hook=[hook(tmp_path, "pause-app")],
                resume_app_hook=[hook(tmp_path, "resume-old")])
    server_keys(pgmove, "prod-new", resume_app_hook=[resume])
    worker = pgmove.start_worker("doomed")
    assert do_json(pgmove, "U_ALICE", "plan prod-old prod-new")["state"] == "ready"
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    assert do_json(pgmove, "U_BOB", "approve prod-old")["state"] == "verified"
    assert pgmove.do("U_ALICE", "cutover prod-old").returncode == 0
    assert pgmove.do("U_BOB", "approve prod-old").returncode == 0
    wait_for(lambda: pid_file.exists() and pid_file.read_text())
    pid = int(pid_file.read_text())
    request.addfinalizer(lambda: running(pid) and os.kill(pid, signal.SIGKILL))  # the old code left it running
    pgmove.kill_worker(worker)

    failed = do_json(pgmove, "U_ALICE", "status prod-old")
    assert failed["state"] == "failed" and not running(pid), failed.get("failure")
    reason = failed["failure"]["reason"]
    assert f"the resume_app_hook {resume} started" in reason and "pgmove ended it" in reason, reason
    assert "The cutover hook had exited 0, so the app is on prod-new" in reason
    assert "`/pgmove retry prod-old` finishes the cutover" in reason and "unfreeze prod-old" not in reason

    pgmove.start_worker("second")
    done = do_json(pgmove, "U_ALICE", "retry prod-old")
    assert done["state"] == "cut_over" and done["app_pause"] is None, done.get("failure")
    assert [h["hook"] for h in ran(tmp_path)] == ["pause-app", "resume-new", "resume-new"]
    assert any("resume-new succeeded (exit status 0): first run gone" in line for line in messages(pgmove, done["id"]))
    assert source_is_frozen(source)
