"""The poolers of a migration, from the configuration: their preflight, the switch around the cutover, and
giving back any pooler a dead worker left paused."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pgmove.state.config import Config
from pgmove.state.errors import Refused, StepFailed
from pgmove.state.models import Migration, PausedPooler, PreflightReport
from pgmove.state.outcome import Outcome
from pgmove.state.store import Store
from pgmove.state.work import with_changes
from pgmove.steps import poolercheck
from pgmove.steps.connect import Endpoint, Progress
from pgmove.steps.pooler import Pooler
from pgmove.steps.poolerswitch import PoolerSwitch, release
from pgmove.worker.runtime import Runtime

if TYPE_CHECKING:
    from pgmove.worker.runner import StepContext

log = logging.getLogger("pgmove.worker")

# What the offline cutover does while the app waits, besides PAUSE and the hook: the quiet proof, the mark,
# the write test on the target, the repoint. Seconds on a small server; a generous bound for the warning.
OFFLINE_SWITCH_SECONDS = 30.0


def configured(config: Config, source: str) -> list[Pooler]:
    return [Pooler(name=name, admin_dsn=p.admin_dsn, databases=tuple(p.databases), password=config.pooler_password(name),
                   databases_file=p.databases_file,
                   repoint_command=tuple(p.repoint_command) if p.repoint_command else None,
                   repoint_timeout=p.repoint_timeout_seconds, pause_timeout=p.pause_timeout_seconds,
                   password_env=p.password_env)
            for name in config.poolers_for(source) if (p := config.poolers[name])]


def secret_env(config: Config) -> set[str]:
    """Every environment variable that holds a configured password: no program pgmove runs may see them."""
    names = {s.password_env for s in config.servers.values() if s.password_env}
    names |= {p.password_env for p in config.poolers.values() if p.password_env}
    return names | ({config.redis_password_env} if config.redis_password_env else set())


def offline_window(config: Config, m: Migration, poolers: list[Pooler]) -> float:
    """The longest the offline cutover may keep the app paused: every PAUSE at its limit, the hook at its."""
    hook = config.servers[m.target] if m.target in config.servers else None
    hook_seconds = hook.cutover_hook_timeout if hook is not None and hook.cutover_hook else 0.0
    return sum(p.pause_timeout * len(p.databases) for p in poolers) + hook_seconds + OFFLINE_SWITCH_SECONDS


def preflight(config: Config, m: Migration, src: Endpoint, report: PreflightReport, progress: Progress) -> None:
    poolers = configured(config, m.source)
    if not poolers:
        return
    target = config.servers.get(m.target) if m.target else None
    found = poolercheck.check(poolers, src, [d.name for d in report.databases], offline_window(config, m, poolers),
                              target.params().get("host") or "localhost" if target is not None else None)
    report.poolers += found.facts
    for fact in found.facts:
        progress(fact)
    report.problems += found.problems
    report.warnings += found.warnings


def switch(rt: Runtime, m: Migration, ctx: StepContext, target: Endpoint) -> PoolerSwitch:
    """The switch of this migration's poolers, recording each pause on the migration before it is sent."""
    params = target.params
    host, port = str(params.get("host") or "localhost"), int(params.get("port") or 5432)

    def record(paused: list[PausedPooler]) -> None:
        ctx.record(f"poolers paused: {', '.join(p.name for p in paused) or 'none'}", poolers_paused=paused)

    poolers = configured(rt.config, m.source)
    if m.poolers_paused:  # an earlier attempt's, not yet given back: its record must not be overwritten
        left = release({p.name: p for p in poolers}, m.poolers_paused, secret_env(rt.config), ctx.progress)
        record(left)
        if left:
            raise StepFailed(f"pooler(s) {', '.join(e.name for e in left)} are still paused from an earlier attempt "
                             "and could not be resumed; see the thread, fix the pooler, then retry")
    from pgmove.worker import watchdog  # it reuses release_orphans from here

    def guard() -> None:
        watchdog.start(rt, m.id, m.source, ctx.token)

    return PoolerSwitch(poolers, host, port, ctx.progress, record, secret_env(rt.config), guard)


def release_orphans(store: Store, config: Config, actor: str, only: str | None = None) -> list[str]:
    """RESUME (on the source) every pooler recorded as paused by a step whose worker is gone; returns migration ids.

    It takes the server's lock first, so no worker can start pausing again meanwhile, and a live worker's
    pause (its lock held) is never touched."""
    released = []
    for m in store.active():
        if only not in (None, m.id) or not m.poolers_paused or (
                m.lease is not None and store.lock_holder(m.source) == m.lease.token):
            continue
        token = f"release-{uuid.uuid4().hex}"
        if not store.acquire_lock(m.source, token, config.lease_seconds):
            continue
        try:
            current = store.get(m.id)
            if current is None or not current.poolers_paused:
                continue
            poolers = {p.name: p for p in configured(config, m.source)}
            said: list[str] = []
            left = release(poolers, current.poolers_paused, secret_env(config), said.append)
            log.warning("%s: %s", m.id, "; ".join(said))
            # A pooler that stays unreachable is retried every pass: the trail hears of it once a minute.
            if left != current.poolers_paused or datetime.now(UTC) - current.updated_at > timedelta(seconds=60):
                _record(store, m.id, left, said, actor)
            if len(left) < len(current.poolers_paused):
                released.append(m.id)
        finally:
            store.release_lock(m.source, token)
    return released


def _record(store: Store, migration_id: str, left: list[PausedPooler], said: list[str], actor: str) -> None:
    def decide(cur: Migration | None) -> Outcome:
        if cur is None:
            raise Refused("the migration record is gone")
        return with_changes(cur, datetime.now(UTC), "; ".join(said), actor, poolers_paused=left)

    try:
        store.update(migration_id, decide)
    except Refused:
        pass
