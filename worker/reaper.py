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
    """What is true once the worker died, and a command that works from the failed state it leaves."""
    said = f"the worker {lease.worker} stopped responding during {lease.step} (its lease expired)"
    said += "".join(f"; {line}" for line in hooks)
    if lease.step == StepName.FREEZE and m.snapshot_unfreezing:
        return f"{said}: `/pgmove retry {m.source}` continues the unfreeze (it does not freeze again)"
    if lease.step == StepName.FREEZE and m.freeze is None and m.app_pause is not None:
        return (f"{said}. Nothing on {m.source} was frozen, but its pause_app_hook ran, so the app's writers may be "
                f"paused: `/pgmove abort {m.source}` runs the resume_app_hook, or `/pgmove retry {m.source}` runs the "
                "pause hook again and freezes")
    if lease.step == StepName.FREEZE and m.freeze is None:  # `unfreeze` would be refused: nothing is frozen
        return f"{said}; nothing on {m.source} was frozen: retry or abort"
    return f"{said}; the source is as safe as before the step: retry or unfreeze"
