"""The logical method's steps: sync (set up replication, wait for in_sync), drain (the frozen source's last
changes), switch (freeze to hook inside one approved window) and the cleanup that follows every end of it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pgmove.state.errors import PlanProblems, Refused, StepFailed
from pgmove.state.machine import Event
from pgmove.state.models import Migration, PreflightReport, StepName
from pgmove.state.replication import LiveVerification, LogicalReadiness, SyncSetup, SyncStatus
from pgmove.state.sync import record_sync_status
from pgmove.steps.connect import reusing_sessions
from pgmove.steps.replication import (
    cleanup,
    drain,
    liveverify,
    readiness,
    setup,
    status,
    targetguard,
    windowcheck,
)
from pgmove.steps.tools import choose_toolset
from pgmove.worker import apphooks, poolers
from pgmove.worker.runtime import Runtime

if TYPE_CHECKING:
    from pgmove.worker.adapters import StepResult
    from pgmove.worker.runner import StepContext

SYNC_POLL_SECONDS = 1.0  # how often the sync step looks for in_sync; it records a reading every sync_check_seconds
DRAIN_MARGIN_SECONDS = 0.5  # left of the window for the unfreeze after a drain that ran out


def readiness_of(rt: Runtime, m: Migration, ctx: StepContext, report: PreflightReport) -> LogicalReadiness:
    """Preflight's replication half: what blocks sync, the keyless tables, and the write downtime to expect."""
    assert m.target is not None
    databases = [d.name for d in report.databases if m.plan.databases is None or d.name in m.plan.databases]
    wal = readiness.WalBudget(
        copy_bytes=sum(d.size_bytes for d in report.databases if d.name in databases),
        copy_bytes_per_second=rt.config.window_copy_mb_per_second * 1024 * 1024,
        max_retained_bytes=rt.config.max_retained_wal_mb * 1024 * 1024)
    ready = readiness.check(ctx.endpoint(m.source), ctx.endpoint(m.target), databases,
                            replica_identity_full=m.plan.replica_identity_full, wal=wal)
    ctx.record("replication readiness recorded", readiness=ready,
               expected_downtime_seconds=expected_downtime(ready, m.plan.replica_identity_full,
                                                           rt.config.window_copy_mb_per_second))
    return ready


def expected_downtime(ready: LogicalReadiness, identity_full: bool, copy_mb_per_second: float,
                      live: LiveVerification | None = None) -> float:
    """Seconds without writes: the freeze and drain floor measured on this machine (about 1 s), plus the keyless
    tables copied inside the window unless they are replicated with REPLICA IDENTITY FULL; once the verification
    while in sync has run, plus the tables it left to the window, hashed whole there at the rate it measured on
    this pair (a floor for that rate: its time includes waiting for the target to apply)."""
    inside = 0 if identity_full else sum(t.size_bytes for t in ready.keyless)
    hashing = live.bytes_whole * live.seconds / live.bytes if live is not None and live.bytes > 0 else 0.0
    return round(1.0 + inside / (copy_mb_per_second * 1024 * 1024) + hashing, 1)


def _endpoints(m: Migration, ctx: StepContext) -> tuple[Any, Any]:
    if m.target is None:
        raise Refused("this freeze has no target")
    return ctx.endpoint(m.source), ctx.endpoint(m.target)


def _read(rt: Runtime, m: Migration, ctx: StepContext) -> SyncStatus:
    assert m.sync_setup is not None
    src, dst = _endpoints(m, ctx)
    limit = rt.config.max_retained_wal_mb * 1024 * 1024
    found: SyncStatus = status.read(src, dst, m.sync_setup, max_retained_wal_bytes=limit)
    return found


def check_replication(rt: Runtime, m: Migration, ctx: StepContext, what: str) -> SyncStatus:
    """A fresh reading before the source is frozen: a problem refuses `what` with the problem's own advice."""
    found = _read(rt, m, ctx)
    if found.problems:
        raise StepFailed(f"{what} did not start, {m.source} is not frozen: replication has problems to resolve first: "
                         + "; ".join(found.problems))
    return found


def sync(rt: Runtime, m: Migration, ctx: StepContext) -> StepResult:
    from pgmove.worker import adapters  # here: adapters imports this module for its step table

    src, dst = _endpoints(m, ctx)
    databases = adapters._databases(m)
    if m.sync_setup is None:  # from here on an abort removes whatever carries this migration's name
        m = ctx.record(f"replication of {m.source} to {m.target} starting", sync_setup=SyncSetup(migration_id=m.id))
    majors = adapters._majors(m)
    toolset = choose_toolset(majors[0], majors[1], rt.config.tool_dirs)
    if toolset is None:
        raise PlanProblems(f"no pg_dump/pg_restore of version {majors[0]} or newer is installed on this worker")

    def record(names: SyncSetup) -> None:
        ctx.record("replication objects recorded before they are created", sync_setup=names)

    made = setup.start(src, dst, databases, m.id, replica_identity_full=m.plan.replica_identity_full,
                       toolset=toolset, work_dir=rt.config.work_dir, jobs=m.plan.jobs, record=record,
                       progress=ctx.progress, should_stop=ctx.should_stop, previous=m.sync_setup)
    m = ctx.record("replication set up", sync_setup=made)
    guarded = guard_target(rt, m, ctx)
    ctx.progress(f"{m.target} refuses every write but replication's and pgmove's until the cutover "
                 f"({guarded} tables newly guarded)")
    reported = 0.0
    while True:
        found = _read(rt, m, ctx)
        if found.in_sync(rt.config.sync_max_lag_bytes):
            break
        if time.monotonic() - reported >= rt.config.sync_check_seconds:
            reported = time.monotonic()
            _keep(rt, m, found)
            ctx.progress(f"catching up: {lag_line(found)}", tick=True)
        _sleep(ctx, SYNC_POLL_SECONDS)
    ctx.progress(f"{m.target} caught up with {m.source} ({lag_line(found)}); verifying the copy while writes go on",
                 tick=True)
    live = liveverify.run(src, dst, made, ctx.progress, ctx.should_stop, m.plan.jobs)
    message = f"{m.target} is in sync with {m.source}: {lag_line(found)}; {live_line(live)}"
    changes: dict[str, Any] = {"sync_status": found, "live_verification": live}
    if m.readiness is not None:
        changes["expected_downtime_seconds"] = expected_downtime(m.readiness, m.plan.replica_identity_full,
                                                                 rt.config.window_copy_mb_per_second, live)
        message += f"; expected write downtime at cutover: about {changes['expected_downtime_seconds']:g}s"
    return adapters.StepResult(Event.SYNCED, message, {"databases": databases, "live_verification": live}, changes)


def live_line(live: LiveVerification) -> str:
    hot = (f"{len(live.hot)} range(s) still changing, compared again inside the cutover window: "
           + ", ".join(h.label for h in live.hot[:5]) + (" ..." if len(live.hot) > 5 else "")) if live.hot else \
        "every range matched"
    return (f"verified while in sync: {live.tables} tables, {live.rows:,} rows, {live.ranges} key ranges in "
            f"{live.rounds} round(s), {live.seconds:g}s; {hot}")


def _keep(rt: Runtime, m: Migration, found: SyncStatus) -> None:
    try:
        rt.store.update(m.id, lambda cur: record_sync_status(_must(cur), found, _now(), f"worker:{rt.worker_id}"))
    except Refused:
        pass  # the migration moved on; the step notices at its next progress report


def _sleep(ctx: StepContext, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if ctx.should_stop():
            ctx.progress("stopping")  # raises LockLost: the migration moved on
        time.sleep(min(0.2, max(0.0, end - time.monotonic())))


def lag_line(found: SyncStatus) -> str:
    return "; ".join(f"{d.database} {d.lag_bytes} bytes behind, {d.tables_ready}/{d.tables_total} tables ready"
                     for d in found.databases) or "no database"


def drain_step(rt: Runtime, m: Migration, ctx: StepContext) -> StepResult:
    """The frozen source's last changes onto the target, then what replication does not carry: the two-step path's
    copy (the verification follows as for an offline copy)."""
    from pgmove.worker import adapters  # here: adapters imports this module for its step table

    src, dst = _endpoints(m, ctx)
    assert m.sync_setup is not None
    adapters._prove_quiet(m, src, ctx, "since the freeze took hold")
    deadline = time.monotonic() + rt.config.drain_seconds
    result = {"drain": drain.run(src, dst, m.sync_setup, deadline, ctx.progress, ctx.should_stop),
              "finish": drain.finish(src, dst, m.sync_setup, ctx.progress),
              "databases_copied": [d.database for d in m.sync_setup.databases]}
    return adapters.StepResult(Event.COPIED, f"drained {m.source} into {m.target}: everything up to the freeze applied",
                               result)


def switch(rt: Runtime, m: Migration, ctx: StepContext) -> StepResult:
    """Freeze, drain, sequences and left-out tables, verification and the hook, all before the window's deadline.
    Any failure before the hook (the runner's fail_step) unfreezes at once and returns to in_sync."""
    from pgmove.worker import adapters  # here: adapters imports this module for its step table

    if m.hook is not None:
        # The hook ran: the app may be on the target, open for it since. The source stayed frozen, drained and verified,
        # so the retry only switches again; a second drain would set the target's sequences (and left-out tables and
        # large objects) back to the source's over what the app wrote there.
        return adapters._cutover(rt, m, ctx)
    assert m.approval is not None and m.approval.window_seconds is not None and m.sync_setup is not None
    window, names = m.approval.window_seconds, m.sync_setup
    deadline = time.monotonic() + window
    src, dst = _endpoints(m, ctx)
    # No fresh status check here: the request was checked against the monitor's reading, and anything wrong since
    # only keeps the drain from finishing, which the window turns into an unfreeze. A check would cost window time.
    grace = max(0.0, min(rt.config.freeze_grace_seconds, window / 4))
    # The app's writers stop inside the window, before its poolers pause: a hook waiting for workers to drain
    # would wait for ever on queries the paused pooler holds. It failing leaves the migration in sync.
    m = apphooks.pause_app(rt, m, ctx, f"`/pgmove cutover {m.source}`", limit=window)
    _in_time(deadline, window, "the app pause")
    # The app's poolers hold its queries from before the freeze to after the switch: through a pooler the app
    # sees a pause, not a read-only refusal. Any failure inside resumes them on the source, then the runner
    # unfreezes and the migration is in sync again.
    # Inside the window every database is visited by step after step: one session each, not one per visit.
    with reusing_sessions():
        with poolers.switch(rt, m, ctx, dst) as paused:
            froze = adapters.freeze_source(rt, m, ctx, grace)
            m = ctx.record("frozen for the cutover window", **froze.changes)
            _in_time(deadline, window, "the freeze")
            drained = drain.run(src, dst, names, deadline - DRAIN_MARGIN_SECONDS, ctx.progress, ctx.should_stop,
                                froze.result.get("durable_lsn"))
            finished = drain.finish(src, dst, names, ctx.progress)
            _in_time(deadline, window, "the drain")
            report = windowcheck.run(src, dst, names, m.freeze, ctx.progress, m.plan.jobs, m.quiet_mark,
                                     m.live_verification)
            if not report.ok:
                raise StepFailed(f"the verification inside the window found {len(report.problems)} difference(s): "
                                 + "; ".join(report.problems[:5]))
            _in_time(deadline, window, "the verification")
            m = ctx.record("verified inside the window", verification=report)
            result = adapters.switch_over(rt, m, ctx, paused)
        done = adapters.finish_cutover(rt, m, ctx, result, paused)
    done.result.update(freeze=froze.result, drain=drained, finish=finished, window_seconds=window,
                       seconds=round(window - (deadline - time.monotonic()), 2))
    return done


def _in_time(deadline: float, window: float, after: str) -> None:
    if time.monotonic() > deadline - DRAIN_MARGIN_SECONDS:
        raise StepFailed(f"the {window:g}s window ran out after {after}, before the cutover hook")


def guard_target(rt: Runtime, m: Migration, ctx: StepContext) -> int:
    """The target refuses writes but replication's and pgmove's; its large-object privileges are recorded with the
    migration before any is revoked (a recorded set is kept: it is what the app had). Returns the tables newly
    guarded."""
    if m.target is None or m.sync_setup is None:
        return 0
    return targetguard.guard(rt.endpoint(m.target), [d.database for d in m.sync_setup.databases], m.source,
                             m.target_acls, lambda acls: ctx.record("the target's large-object privileges recorded "
                                                                     "before they are revoked", target_acls=acls))


def cleanup_after(rt: Runtime, m: Migration, ctx: StepContext) -> dict[str, Any]:
    """Every replication object of this migration, and the target's guards, off both servers; the source may stay
    frozen meanwhile."""
    assert m.target is not None
    dst = rt.endpoint(m.target)
    removed = cleanup.run(rt.endpoint(m.source), dst, m.id, m.sync_setup, ctx.progress)
    if m.sync_setup is not None:
        unguarded = targetguard.remove(dst, [d.database for d in m.sync_setup.databases], m.target_acls)
        removed["target_guards_removed"] = unguarded["guards_removed"]
        removed["left"] = [*removed["left"], *unguarded["left"]]
    return removed


def removal_line(removed: dict[str, Any]) -> str:
    """After the cutover nothing retries the removal: what is left is said with how to remove it by hand."""
    if not removed["left"]:
        return "; replication removed"
    return "; replication NOT fully removed, remove by hand: " + " | ".join(removed["left"])


def after_unfreeze(rt: Runtime, m: Migration, ctx: StepContext, result: dict[str, Any]) -> StepResult:
    """The unfreeze of a logical migration: after a failed window replication keeps running and it is in_sync
    again; otherwise (unfreeze, abort) nothing of the replication is left."""
    from pgmove.worker import adapters  # here: adapters imports this module for its step table

    if m.window_rollback:
        guard_target(rt, m, ctx)  # the window may have opened it for the app already
        switched = m.last_step(StepName.SWITCH)
        why = switched.message if switched is not None else "the window failed"
        undone = (f"{m.source} unfrozen after the cutover window" if m.freeze is not None
                  else f"the cutover window of {m.source} ended before anything was frozen")
        return adapters.StepResult(Event.RESUMED_SYNC, f"{undone} ({why}); replication keeps running", result,
                                   {"freeze": None, "hook": None, "window_rollback": False})
    if m.freeze is not None:
        ctx.record(f"{m.source} unfrozen; removing replication", freeze=None)
    result["replication_removed"] = cleanup_after(rt, m, ctx)
    if result["replication_removed"]["left"]:
        # Not done: ending here would forget the record, and with it the objects (a slot holds WAL for ever).
        # Failed with the record kept, an abort or retry runs the cleanup again; the source is already writable.
        unfrozen = f"{m.source} is unfrozen, but " if m.freeze is not None else ""
        raise StepFailed(f"{unfrozen}replication could not be fully removed: {' | '.join(result['replication_removed']['left'])}"
                         f"; once that is fixed, `/pgmove abort {m.source}` removes the rest")
    event = Event.UNFROZEN_FOR_ABORT if m.aborting else Event.UNFROZEN
    verb = "aborted; " if m.aborting else ""
    frozen = f"{m.source} unfrozen, settings restored exactly; " if m.freeze is not None else ""
    return adapters.StepResult(event, f"{verb}{frozen}replication removed from both servers", result,
                               {"freeze": None, "hook": None, "sync_setup": None, "sync_status": None,
                                "live_verification": None})


def _now() -> datetime:
    return datetime.now(UTC)


def _must(m: Migration | None) -> Migration:
    if m is None:
        raise Refused("the migration record is gone")
    return m

