"""What a hook's interrupted run leaves decided: an app paused by a pause hook is resumed by the abort, a
`freeze --snapshot` that failed in its unfreeze resumes the unfreeze, and a dead worker's hook group is ended
without ever signalling a process that merely reuses its id."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pgmove.handlers.views import status_text
from pgmove.state import actions, work
from pgmove.state.errors import Refused
from pgmove.state.machine import Event, State
from pgmove.state.models import FreezeSnapshot, HookReport, StepName
from pgmove.steps.process import end_group, here, identify
from pgmove.worker.reaper import dead_worker_reason
from tests.unit.test_actions import NOW, POLICY, awaiting


def freezing():  # type: ignore[no-untyped-def]
    m = actions.decide(awaiting(), "bob", True, NOW, POLICY).migration
    return work.start_step(m, StepName.FREEZE, "w", "tok", NOW).migration


def test_a_failed_freeze_whose_pause_hook_started_is_aborted_through_the_unfreeze_step():
    """Nothing frozen but the pause hook started: abort asks the worker (whose unfreeze step runs the resume hook)
    instead of ending at once, unfreeze is refused naming abort, and the dead worker's reason names abort."""
    m = freezing()
    m.app_pause = HookReport(argv0="pause-app", started_at=NOW)
    lease = m.lease
    assert lease is not None
    reason = dead_worker_reason(m, lease, [])
    assert "Nothing on prod-old was frozen" in reason and "`/pgmove abort prod-old` runs the resume_app_hook" in reason
    failed = work.fail_step(m, StepName.FREEZE, reason, NOW, "reaper").migration
    with pytest.raises(Refused, match="abort prod-old"):
        actions.request_unfreeze(failed, "alice", NOW)
    out = actions.request_unfreeze(failed, "alice", NOW, abort=True)
    assert out.migration.state == State.UNFREEZING and out.migration.aborting and out.enqueue
    assert work.step_due(out.migration) == StepName.UNFREEZE


def test_a_snapshot_freeze_failing_in_its_unfreeze_fails_the_unfreeze_and_retry_resumes_it():
    """Once `freeze --snapshot` began its unfreeze, a failure (or a dead worker) is the unfreeze's: status says the
    unfreeze did not finish, and retry goes to unfreezing, never back to freezing."""
    m = freezing()
    m.freeze, m.snapshot_unfreezing = FreezeSnapshot(taken_at=NOW, databases=["appdb"]), True
    failed = work.fail_step(m, StepName.FREEZE, "guard locked", NOW, "w", "tok").migration
    assert failed.state == State.FAILED and failed.failure is not None
    assert failed.failure.step == StepName.UNFREEZE and failed.failure.resume_state == State.UNFREEZING
    assert failed.last_step(StepName.FREEZE).status == "failed"  # type: ignore[union-attr]
    retried = actions.retry(failed, "alice", NOW).migration
    assert retried.state == State.UNFREEZING and work.step_due(retried) == StepName.UNFREEZE
    done = work.start_step(retried, StepName.UNFREEZE, "w", "t2", NOW).migration
    assert "prod-old's unfreeze did not finish" in status_text(failed)
    assert work.finish_step(done, StepName.UNFREEZE, "t2", Event.UNFROZEN, "unfrozen", {}, NOW,
                            {"freeze": None, "snapshot_unfreezing": False}).migration.state == State.READY


def test_end_group_ends_a_hook_group_and_spares_a_process_that_reuses_its_id():
    """A group recorded by identify() is ended (SIGTERM, then SIGKILL for a child that ignores it); a record whose
    leader start time differs is another process's and nothing is signalled."""
    ignores_term = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"
    proc = subprocess.Popen([sys.executable, "-c", ignores_term], process_group=0, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        process = identify(proc.pid)
        assert process is not None and here(process) and process.pgid == proc.pid
        stranger = process.model_copy(update={"start_ticks": process.start_ticks + 1})
        assert not end_group(stranger, grace=0.2)
        assert proc.poll() is None
        assert end_group(process, grace=0.5)
        assert proc.wait(timeout=10) == -9  # it ignored SIGTERM: SIGKILL after the grace
        assert not end_group(process, grace=0.2)  # nothing left to end
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
