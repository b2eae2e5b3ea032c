"""Marks a step failed when its worker died: the lease on the server lock ran out with the step unfinished; and
gives back to the source every pooler such a step left paused."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pgmove.state.config import Config
from pgmove.state.errors import Refused
from pgmove.state.models import Migration
from pgmove.state.outcome import Outcome
from pgmove.state.store import Enqueue, Store
from pgmove.state.work import fail_step
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

        def decide(cur: Migration | None, lease=lease) -> Outcome:  # type: ignore[no-untyped-def]
            if cur is None or cur.lease is None or cur.lease.token != lease.token:
                raise Refused("the step finished meanwhile")
            if store.lock_holder(cur.source) == lease.token:
                raise Refused("the worker is alive")
            reason = (f"the worker {lease.worker} stopped responding during {lease.step} (its lease expired); "
                      f"the source is as safe as before the step: retry or unfreeze")
            return fail_step(cur, lease.step, reason, datetime.now(UTC), actor)

        try:
            store.update(m.id, decide, enqueue)
        except Refused:
            continue
        log.warning("%s: %s marked failed: worker %s is gone", m.id, lease.step, lease.worker)
        reaped.append(m.id)
    if config is not None and config.poolers:
        release_orphans(store, config, actor)
    return reaped
