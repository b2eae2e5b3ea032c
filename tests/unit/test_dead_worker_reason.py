"""What a dead worker's failure says: true of the state it leaves, and naming only commands that state accepts."""

from __future__ import annotations

import re
from typing import Any

import pytest

from pgmove.state import actions, work
from pgmove.state.machine import State
from pgmove.state.models import FreezeOptions, FreezeSnapshot, HookReport, Lease, Migration, StepName
from pgmove.worker.logical import after_unfreeze
from pgmove.worker.reaper import dead_worker_reason
from pgmove.worker.snapshot import snapshot_line
from tests.unit.test_actions import NOW, POLICY
from tests.unit.test_hook_leftovers import freezing

FROZEN = FreezeSnapshot(taken_at=NOW, databases=["appdb"])
PAUSED = HookReport(argv0="pause-app", started_at=NOW, finished_at=NOW, exit_status=0)
RUNNING = HookReport(argv0="resume-app", started_at=NOW)  # its end never recorded: the worker died under it
SNAPSHOT = FreezeOptions(snapshot=True)
SNAP = HookReport(argv0="snap", started_at=NOW, finished_at=NOW, exit_status=0, label="pgmove-prod-old-1", lsn="0/1")


def dying(step: StepName, **facts: Any) -> Migration:
    """prod-old's migration with `step` running under a lease, and `facts` on its record."""
    m = freezing().model_copy(update={"state": work.RUNNING_STATE[step], **facts})
    m.lease = Lease(step=step, worker="doomed", token="tok", started_at=NOW)
    return m


def reaped(m: Migration) -> tuple[str, Migration]:
    assert m.lease is not None
    reason = dead_worker_reason(m, m.lease, [])
    return reason, work.fail_step(m, m.lease.step, reason, NOW, "reaper").migration


def accepted(reason: str, m: Migration) -> list[str]:
    """Every command the reason names, each applied to the state it left: none may be refused."""
    named = re.findall(r"`/pgmove (\w+) prod-old`", reason)
    for verb in named:
        if verb == "retry":
            actions.retry(m, "alice", NOW)
        else:
            actions.request_unfreeze(m, "alice", NOW, abort=verb == "abort", policy=POLICY)
    return named


CASES = [
    # Killed in the snapshot hook: frozen, the app paused; no snapshot; retry takes one, unfreeze gives writes back.
    (dying(StepName.FREEZE, freeze=FROZEN, app_pause=PAUSED, freeze_options=SNAPSHOT),
     ["prod-old is frozen, and the app's writers paused", "No snapshot was finished"], ["retry", "unfreeze"]),
    # Killed in the resume hook after the snapshot's automatic unfreeze: the retry runs the resume hook again.
    (dying(StepName.FREEZE, freeze=FROZEN, app_pause=PAUSED, app_resume=RUNNING, snapshot=SNAP,
           snapshot_unfreezing=True, freeze_options=SNAPSHOT),
     ["The snapshot pgmove-prod-old-1 was taken and prod-old was unfrozen; its resume_app_hook did not finish"],
     ["retry"]),
    # Killed in prod-new's resume hook after a cutover hook that exited 0: the app is on the target.
    (dying(StepName.CUTOVER, freeze=FROZEN, app_pause=PAUSED, app_resume=RUNNING, hook=PAUSED),
     ["the app is on prod-new", "finishes the cutover (it runs the cutover hook again and runs the resume_app_hook)"],
     ["retry"]),
    (dying(StepName.CUTOVER, freeze=FROZEN, hook=RUNNING), ["the app may be on prod-new or prod-old"], ["retry", "unfreeze"]),
    (dying(StepName.CUTOVER, freeze=FROZEN), ["the app was not switched"], ["retry", "unfreeze"]),
    (dying(StepName.FREEZE, freeze=FROZEN), ["prod-old is frozen, perhaps only in part"], ["retry", "unfreeze"]),
    (dying(StepName.COPY, freeze=FROZEN), ["prod-old is still frozen"], ["retry", "unfreeze"]),
    (dying(StepName.UNFREEZE, freeze=FROZEN, app_pause=PAUSED, app_resume=RUNNING),
     ["prod-old is writable again but its app's resume did not finish"], ["retry"]),
    (dying(StepName.PREFLIGHT), ["Nothing on prod-old is frozen"], ["retry", "abort"]),
    (dying(StepName.FREEZE, freeze_options=SNAPSHOT), ["Nothing on prod-old is frozen"], ["retry", "abort"]),
]


@pytest.mark.parametrize(("m", "says", "commands"), CASES)
def test_each_dead_worker_reason_is_true_and_names_only_accepted_commands(m, says, commands):  # type: ignore[no-untyped-def]
    """The reason says what the state is (no blanket "as safe as before") and each command it names is accepted."""
    reason, failed = reaped(m)
    assert failed.state == State.FAILED
    for text in says:
        assert text in reason, reason
    assert "as safe as before" not in reason
    assert accepted(reason, failed) == commands, reason


def test_a_window_killed_before_anything_froze_says_so_and_tells_no_one_to_unfreeze():
    """Killed in the window's pause hook: the automatic unfreeze runs at once, so no command is named, nothing says
    unfreezing or unfrozen, and its closing line says the window ended before anything was frozen."""
    m = dying(StepName.SWITCH, app_pause=PAUSED)
    assert m.lease is not None
    reason = dead_worker_reason(m, m.lease, [])
    out = work.fail_step(m, StepName.SWITCH, reason, NOW, "reaper")
    gone = out.migration
    assert gone.state == State.UNFREEZING and gone.window_rollback
    assert "nothing on it was frozen yet: pgmove ends the window now and runs the resume_app_hook" in reason, reason
    assert "/pgmove" not in reason and "unfreez" not in reason
    assert out.events[-1].message.endswith("); nothing on it was frozen, replication keeps running")
    closing = after_unfreeze(None, gone, None, {})  # type: ignore[arg-type]  # the window branch touches no server
    assert closing.message.startswith("the cutover window of prod-old ended before anything was frozen"), closing.message
    assert "unfrozen" not in closing.message.split(" (")[0]


def test_an_unfreeze_after_a_snapshot_hook_names_the_snapshot_and_whether_it_finished():
    """The closing line of an unfreeze that followed a snapshot hook gives its label and LSN, or says not to use it."""
    m = freezing()
    m.snapshot = SNAP
    assert snapshot_line(m) == "; snapshot pgmove-prod-old-1 taken at checkpoint LSN 0/1"
    m.snapshot = RUNNING.model_copy(update={"label": "pgmove-prod-old-1"})
    assert "pgmove-prod-old-1 did not finish: do not restore from it" in snapshot_line(m)
    m.snapshot = None
    assert snapshot_line(m) == ""
