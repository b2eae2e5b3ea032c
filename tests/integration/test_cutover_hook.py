"""The cutover hook as a real process: a background child it leaves cannot hold pgmove, its exit status and
output are recorded before and after it runs, its time limit ends it and its children, and no password reaches it."""

from __future__ import annotations

import os
import sys
import time

from pgmove.sandbox.servers import wait_until
from pgmove.state.errors import StepFailed
from pgmove.state.models import HookReport
from pgmove.steps.connect import Endpoint
from pgmove.steps.cutover import run_hook

DST = Endpoint("prod-new", "host=127.0.0.1 port=5999 user=pgmove dbname=postgres", password="target-secret")


def hook(tmp_path, body: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "switch-app"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def run(argv: list[str], timeout: float = 20) -> tuple[list[HookReport], float, object]:
    reports: list[HookReport] = []
    started = time.monotonic()
    try:
        outcome: object = run_hook(DST, argv, timeout, {"PGMOVE_MIGRATION": "mig-1"}, {"PGMOVE_SECRET_X"},
                                   lambda *a, **k: None, reports.append)
    except StepFailed as exc:
        outcome = exc
    return reports, time.monotonic() - started, outcome


def test_a_hook_that_leaves_a_background_child_on_its_output_succeeds_at_once(tmp_path):  # type: ignore[no-untyped-def]
    """The hook exits 0 at once; its child keeps stdout open for 30 s: pgmove reports success, not a timeout."""
    argv = hook(tmp_path, "echo switching\n(sleep 30; echo late) &\necho switched")
    reports, took, outcome = run([argv], timeout=10)
    assert isinstance(outcome, dict) and outcome["exit_status"] == 0, outcome
    assert took < 5
    # Recorded before it ran, once it ran (its process group, unless it was gone already), and after.
    assert [r.finished_at is None for r in reports] == [True, True, False]
    assert reports[0].process is None and reports[1].process in (None, reports[-1].process)
    assert reports[-1].exit_status == 0 and reports[-1].output == ["switching", "switched"]


def test_a_failing_hook_has_its_exit_status_and_last_output_recorded(tmp_path):  # type: ignore[no-untyped-def]
    """A hook that exits 3 fails the cutover step, and the report keeps status 3 and its last lines of stdout and
    stderr."""
    argv = hook(tmp_path, "echo 'DNS updated'\necho 'app restart failed' >&2\nexit 3")
    reports, _, outcome = run([argv])
    assert isinstance(outcome, StepFailed) and "status 3" in outcome.message
    assert reports[-1].exit_status == 3 and not reports[-1].timed_out
    assert reports[-1].output == ["DNS updated", "app restart failed"]


def test_a_hook_past_its_time_limit_is_ended_with_its_children_and_reported_as_timed_out(tmp_path):  # type: ignore[no-untyped-def]
    """A hook still running at its time limit is killed with its background child, and the report says it timed out
    and keeps the output it had."""
    pidfile = tmp_path / "child.pid"
    argv = hook(tmp_path, f"echo halfway\nsleep 60 &\necho $! > {pidfile}\nwait")
    reports, took, outcome = run([argv], timeout=1)
    assert isinstance(outcome, StepFailed) and "within 1s" in outcome.message
    assert took < 5
    assert reports[-1].timed_out and reports[-1].exit_status is None and reports[-1].output == ["halfway"]
    child = int(pidfile.read_text())
    wait_until(lambda: not os.path.exists(f"/proc/{child}") or "Z" in _state(child), 5,
               "the hook's child to end with its time limit")


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0]
    except OSError:
        return "Z"


def test_the_hook_never_sees_a_password(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """The hook's environment names the migration and the target's port but holds no password: not PGPASSWORD, not a
    configured secret, not the target's."""
    monkeypatch.setenv("PGPASSWORD", "libpq-secret")
    monkeypatch.setenv("PGMOVE_SECRET_X", "configured-secret")
    dump = tmp_path / "env.txt"
    argv = [sys.executable, "-c", f"import os; open({str(dump)!r}, 'w').write(repr(dict(os.environ)))"]
    reports, _, outcome = run(argv)
    assert isinstance(outcome, dict), outcome
    seen = dump.read_text()
    assert "mig-1" in seen and "'PGPORT': '5999'" in seen  # told where the target is
    for secret in ("libpq-secret", "configured-secret", "target-secret"):
        assert secret not in seen
    assert "password" not in reports[-1].model_dump_json().lower()


def test_a_hook_that_cannot_start_is_recorded_as_such(tmp_path):  # type: ignore[no-untyped-def]
    """A hook that does not exist fails the step with 'could not start', and the report records the error and an end
    time."""
    reports, _, outcome = run([str(tmp_path / "missing")])
    assert isinstance(outcome, StepFailed) and "could not start" in outcome.message
    assert reports[-1].error and reports[-1].finished_at is not None
