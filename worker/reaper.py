"""Marks a step failed when its worker died: the lease on the server lock ran out with the step unfinished; and
gives back to the source every pooler such a step left paused."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pgmove.state.config import Config
from pgmove.state.errors import Refused
from pgmove.state.models import Lease, Migration, StepName
from pgmove.state.outcome import Outcome
from pgmove.state.store import Enqueue, Store
from pgmove.state.work import fail_step
from pgmove.worker.hookkill import end_orphans
from pgmove.worker.poolers import release_orphans

log = logging.getLogger("pgmove.reaper")


def reap(store: Store, actor: str = "reaper", config: Config | None = None, enqueue: Enqueue | None = None) -> list[str]:
    """Fail every migration whose running step has no live lock behind it; returns their ids. With the
    configuration (which holds the poolers' admin consoles), also RESUME the poolers such steps left paused. A
    cutover window whose worker died unfreezes instead of failing: `enqueue` hands that to the next worker."""
    reaped = []
    for m in store.active():
        if m.lease is None or store.lock_holder(m.source) == m.lease.token:
            continue
        lease = m.lease
        hooks = end_orphans(m)  # first: nothing may go on working for a worker that is gone

        def decide(cur: Migration | None, lease=lease, hooks=hooks) -> Outcome:  # type: ignore[no-untyped-def]
            if cur is None or cur.lease is None or cur.lease.token != lease.token:
                raise Refused("the step finished meanwhile")
            if store.lock_holder(cur.source) == lease.token:
                raise Refused("the worker is alive")
            return fail_step(cur, lease.step, dead_worker_reason(cur, lease, hooks), datetime.now(UTC), actor)

        try:
            store.update(m.id, decide, enqueue)
        except Refused:
            continue
        log.warning("%s: %s marked failed: worker %s is gone", m.id, lease.step, lease.worker)
        reaped.append(m.id)
    if config is not None and config.poolers:
        release_orphans(store, config, actor)
    return reaped


def dead_worker_reason(m: Migration, lease: Lease, hooks: list[str]) -> str:
    """What is true once the worker died, and a command that works from the state it leaves (failed, or for a
    cutover window whose hook had not started, the unfreeze pgmove runs at once)."""
    said = f"the worker {lease.worker} stopped responding during {lease.step} (its lease expired)"
    said += "".join(f"; {line}" for line in hooks)
    src, step = m.source, lease.step
    resume = " and runs the resume_app_hook" if m.app_pause is not None else ""
    if step == StepName.FREEZE and m.snapshot_unfreezing:
        return f"{said}. {_snapshot_unfreeze(m)}"
    if step == StepName.FREEZE and m.freeze is None and m.app_pause is not None:
        return (f"{said}. Nothing on {src} was frozen, but its pause_app_hook ran, so the app's writers may be "
                f"paused: `/pgmove abort {src}` runs the resume_app_hook, or `/pgmove retry {src}` runs the "
                "pause hook again and freezes")
    if step == StepName.FREEZE and m.freeze_options.snapshot and m.freeze is not None:
        return f"{said}. {_snapshot_frozen(m, resume)}"
    if step in (StepName.CUTOVER, StepName.SWITCH) and m.hook is not None:
        return f"{said}. {_after_hook(m)}"
    if step == StepName.SWITCH:  # work.fail_step gives the source back at once: a window never waits for a person
        frozen = "pgmove unfreezes it now" if m.freeze is not None else "nothing on it was frozen yet: pgmove ends the window now"
        return (f"{said}. The cutover hook had not started, so the app is still on {src}: {frozen}{resume}; "
                "replication keeps running; nothing to do unless that fails")
    if step == StepName.CUTOVER:
        return (f"{said}. The cutover hook had not started, so the app was not switched and {src} is still frozen: "
                f"`/pgmove retry {src}` runs the cutover again, or `/pgmove unfreeze {src}` (a second person "
                f"approves it) gives writes back to {src}{resume}")
    if step == StepName.UNFREEZE:
        done = f"{src} is writable again but its app's resume did not finish" if m.app_resume is not None \
            else "the unfreeze did not finish"
        return f"{said}. {done}: `/pgmove retry {src}` continues it{resume}"
    if m.freeze is None:  # `unfreeze` would be refused: nothing is frozen
        what = "its replication" if step == StepName.SYNC else "the app's writers it paused" if m.app_pause else ""
        undo = f" (which removes {what})" if what else ""
        return f"{said}. Nothing on {src} is frozen: `/pgmove retry {src}`, or `/pgmove abort {src}`{undo}"
    if step == StepName.FREEZE:
        return (f"{said}. {src} is frozen, perhaps only in part{_paused(m)}: `/pgmove retry {src}` finishes the freeze, "
                f"or `/pgmove unfreeze {src}` gives writes back{resume}")
    return (f"{said}. {src} is still frozen, as before the step{_paused(m)}: `/pgmove retry {src}` runs the {step} "
            f"again, or `/pgmove unfreeze {src}` gives writes back{resume}")


def _paused(m: Migration) -> str:
    return ", and the app's writers paused by its pause_app_hook" if m.app_pause is not None else ""


def _snapshot_unfreeze(m: Migration) -> str:
    """`freeze --snapshot` died after its automatic unfreeze began: the retry is that unfreeze's, never a freeze."""
    src, snap = m.source, m.snapshot
    taken = f"The snapshot {snap.label} was taken" if snap is not None and snap.exit_status == 0 else "No snapshot was taken"
    if m.app_resume is not None:  # it runs once the unfreeze is done
        return (f"{taken} and {src} was unfrozen; its resume_app_hook did not finish: `/pgmove retry {src}` runs it "
                "again (and checks the unfreeze; it does not freeze again)")
    return f"{taken}; {src}'s unfreeze did not finish: `/pgmove retry {src}` continues the unfreeze (it does not freeze again)"


def _snapshot_frozen(m: Migration, resume: str) -> str:
    """`freeze --snapshot` died frozen, before its unfreeze: in the freeze, the CHECKPOINT or the snapshot hook."""
    src, snap = m.source, m.snapshot
    frozen = f"{src} is frozen{_paused(m)}"
    if snap is not None and snap.exit_status == 0:
        return (f"The snapshot {snap.label} was taken and {frozen}: `/pgmove unfreeze {src}` gives writes back{resume} "
                f"(`/pgmove retry {src}` would take another snapshot first)")
    return (f"No snapshot was finished and {frozen}: `/pgmove retry {src}` takes a new one and unfreezes, or "
            f"`/pgmove unfreeze {src}` gives writes back without one{resume}")


def _after_hook(m: Migration) -> str:
    """The cutover hook started: the app may be on the target, so writes back to the source need a second person."""
    src, dst, hook = m.source, m.target, m.hook
    assert hook is not None
    if hook.exit_status == 0:
        rest = ["removes the replication" if m.sync_setup is not None else "runs the cutover hook again"]
        rest += ["runs the resume_app_hook"] if m.app_pause is not None else []
        return (f"The cutover hook had exited 0, so the app is on {dst}; {src} stays frozen. `/pgmove retry {src}` "
                f"finishes the cutover (it {' and '.join(rest)}); do not give writes back to {src}: the app would "
                "write to both servers")
    ended = "did not finish" if hook.finished_at is None else f"exited with status {hook.exit_status}"
    return (f"The cutover hook started and {ended}, so the app may be on {dst} or {src}: find out where it "
            f"writes. `/pgmove retry {src}` runs the cutover again, hook included; `/pgmove unfreeze {src}` (a second "
            f"person approves it) gives writes back to {src}")
