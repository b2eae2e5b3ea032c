"""The step adapters: each turns a migration record and the worker's configuration into one step's call,
and its result into the event, message and facts the step loop records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pgmove.state import leftovers
from pgmove.state.errors import PlanProblems, Refused, StepFailed
from pgmove.state.machine import Event
from pgmove.state.models import HookReport, Migration, StepName, StepStatus
from pgmove.state.sync import needs_cleanup
from pgmove.steps import (
    archive,
    copy,
    cutover,
    dropdb,
    freeze,
    freezerecord,
    handover,
    preflight,
    quiet,
    verify,
)
from pgmove.steps.catalog import list_databases, selected
from pgmove.steps.connect import Endpoint, connection
from pgmove.steps.poolerswitch import PoolerSwitch
from pgmove.steps.prehash import SourceHashes
from pgmove.steps.replication import targetguard
from pgmove.steps.targethash import TargetHashes
from pgmove.steps.tools import choose_toolset
from pgmove.worker import apphooks, logical, poolers, snapshot
from pgmove.worker.runtime import Runtime

if TYPE_CHECKING:
    from pgmove.worker.runner import StepContext

@dataclass(frozen=True)
class StepResult:
    """What a finished step hands the loop: the event it fires, the line people read, the step's own result
    (kept on its step record), and facts for the migration record (validated by the model when written)."""

    event: Event
    message: str
    result: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, Any] = field(default_factory=dict)


def _preflight(rt: Runtime, m: Migration, ctx: StepContext) -> StepResult:
    src = ctx.endpoint(m.source)
    dst = ctx.endpoint(m.target) if m.target else None
    created = leftovers.created_by(m.target, rt.store.migrations()) if m.target else {}
    report = preflight.run(src, dst, m.plan.databases, rt.config.tool_dirs, rt.config.work_dir, ctx.progress,
                           created, m.id)
    poolers.preflight(rt.config, m, src, report, ctx.progress)
    if m.plan.method == "logical" and dst is not None:
        ready = logical.readiness_of(rt, m, ctx, report)
        report.problems += ready.problems
        report.warnings += ready.warnings
    ctx.record("preflight report recorded", preflight=report)
    if report.problems:
        raise PlanProblems(f"preflight found {len(report.problems)} problem(s): " + "; ".join(report.problems))
    size = report.total_bytes / 1e6
    return StepResult(Event.PREFLIGHT_OK, f"preflight ok: {len(report.databases)} databases, {size:.1f} MB",
                      report.model_dump(mode="json"))


def _freeze(rt: Runtime, m: Migration, ctx: StepContext) -> StepResult:
    options = m.freeze_options
    if options.archive and rt.config.archive_dir is not None:
        archive.check_name(rt.config.archive_dir, options.archive, m.id)  # before anything is frozen
    if m.sync_setup is not None and m.freeze is None:
        logical.check_replication(rt, m, ctx, "the freeze")  # a drain behind a broken subscription never ends
    grace = options.grace_seconds if options.grace_seconds is not None else rt.config.freeze_grace_seconds
    m = apphooks.pause_app(rt, m, ctx, f"`/pgmove freeze {m.source}{' --snapshot' if options.snapshot else ''}`")
    if options.snapshot:
        return snapshot.take(rt, m, ctx, grace)
    return freeze_source(rt, m, ctx, grace)


def freeze_source(rt: Runtime, m: Migration, ctx: StepContext, grace: float) -> StepResult:
    """Record what the freeze changes (once), freeze, and take the quiet baseline: the freeze step, and the
    first part of a cutover window."""
    src = ctx.endpoint(m.source)
    options = m.freeze_options
    if m.freeze is None:
        # Recorded before anything changes, and never re-taken: a retried freeze must not mistake
        # half-frozen settings for the originals.
        label = (f"{m.source} is frozen for its move to {m.target} (pgmove {m.id})" if m.target
                 else f"{m.source} is frozen for maintenance (pgmove {m.id})")
        try:
            snap = freeze.capture(src, options.mode, label, m.id)
        except freezerecord.AlreadyFrozen as exc:
            _adopt_lost_freeze(rt, m, ctx, exc)
            raise
        m = ctx.record("recorded the settings, logins and privileges the freeze will change", freeze=snap)
    assert m.freeze is not None
    result = freeze.apply(src, m.freeze, grace, ctx.progress, give_up_seconds=rt.config.unfreeze_lock_give_up_seconds)
    baseline = quiet.fingerprint(src, m.freeze.databases)
    mark = quiet.mark(src, _with_passwords(rt, m))
    ended = len(result["sessions_ended"])
    message = (f"{m.source} frozen ({options.mode.value}): {len(result['databases'])} databases, "
               f"{result['guarded_tables']} tables guarded, {ended} session(s) ended")
    return StepResult(Event.FROZEN, message, result, {"quiet_baseline": baseline, "quiet_mark": mark})


def _adopt_lost_freeze(rt: Runtime, m: Migration, ctx: StepContext, exc: freezerecord.AlreadyFrozen) -> None:
    """The server is frozen by a migration this store no longer knows: its record on the server becomes this
    migration's, so `unfreeze` restores the server as it was before that freeze (and nothing re-records it)."""
    record = exc.found.record
    if record is None or (record.freeze_id and rt.store.get(record.freeze_id) is not None):
        return  # a freeze pgmove still tracks, or guards with no record: refused as they are
    ctx.record(f"took over the freeze record kept on {m.source} by {record.freeze_id or 'an earlier freeze'}",
               freeze=record)
    raise StepFailed(f"{exc.message} pgmove has no record of that freeze any more, so this migration took over "
                     f"the one kept on {m.source}: `/pgmove unfreeze {m.source}` puts the server back exactly as it "
                     "was before that freeze.")


def _copy(rt: Runtime, m: Migration, ctx: StepContext) -> StepResult:
    src, dst = ctx.endpoint(m.source), ctx.endpoint(_target(m))
    _prove_quiet(m, src, ctx, "since the freeze took hold")
    with connection(src) as conn:
        databases = [d.name for d in selected(list_databases(conn), m.plan.databases)]  # re-read: one may be new
    majors = _majors(m)
    toolset = choose_toolset(majors[0], majors[1], rt.config.tool_dirs)
    if toolset is None:
        raise PlanProblems(f"no pg_dump/pg_restore of version {majors[0]} or newer is installed on this worker")

    def will_create(name: str) -> None:  # called from the copy's threads, one database each
        def add(cur: Migration) -> dict[str, Any]:
            created = cur.created_target_databases
            return {"created_target_databases": created if name in created else [*created, name]}

        ctx.record(f"creating database {name} on {dst.name}", derive=add)

    _SOURCE_HASHES.pop(m.id, None)
    hashes, landed = SourceHashes(src), TargetHashes(dst)
    job = copy.CopyJob(src, dst, databases, m.plan.jobs, toolset, m.freeze, rt.config.work_dir, m.created_target_databases,
                       split_bytes=rt.config.split_table_mb * 1024 * 1024,
                       role_passwords=rt.config.servers[_target(m)].copy_role_passwords, source_hashes=hashes,
                       target_hashes=landed)
    result = copy.run(job, ctx.progress, will_create, ctx.should_stop, CopyCheckpoints(rt, m.id))
    if m.freeze_options.archive:
        if rt.config.archive_dir is None:
            raise StepFailed("this freeze asked for an archive, and archive_dir is no longer configured; set it and retry")
        result["archive"] = archive.write(src, databases, toolset, rt.config.archive_dir, m.freeze_options.archive,
                                          m.plan.jobs, m.freeze, m.id, ctx.progress, ctx.should_stop)
    current = rt.store.get(m.id)
    _prove_quiet(current or m, src, ctx, "during the copy")
    result["databases_copied"] = databases
    result["source_tables_hashed"], result["target_tables_hashed"] = len(hashes), len(landed)
    started = current.last_step(StepName.COPY) if current else None
    if started is not None:
        _SOURCE_HASHES[m.id] = (started.started_at, hashes, landed)
        while len(_SOURCE_HASHES) > 16:  # copies no verification followed here (an abort, another worker)
            del _SOURCE_HASHES[next(iter(_SOURCE_HASHES))]
    return StepResult(Event.COPIED, f"copied {len(databases)} databases to {dst.name} in {result['seconds']:.1f}s", result)


class CopyCheckpoints:
    """The copy's record of finished work, kept beside the migration so a retry resumes instead of restarting."""

    def __init__(self, rt: Runtime, migration_id: str) -> None:
        self.store, self.migration_id = rt.store, migration_id

    def done(self) -> set[str]:
        return self.store.checkpoints(self.migration_id)

    def mark(self, key: str) -> None:
        self.store.add_checkpoint(self.migration_id, key)

    def forget(self, keys: set[str]) -> None:
        self.store.remove_checkpoints(self.migration_id, keys)


def _prove_quiet(m: Migration, src: Endpoint, ctx: StepContext, when: str) -> None:
    """Nothing may have written to the frozen source; if something did, stop and say where."""
    if m.quiet_baseline is None:
        return
    found = quiet.check(src, m.quiet_baseline, m.quiet_mark, _moving(m, src))
    problems, now_seen = found.problems, found.now_seen
    if problems:
        # The next attempt compares against what is there now: whatever wrote is then in its copy. Tables
        # copied before the write may miss it, so nothing of an earlier attempt may be kept.
        ctx.rt.store.remove_checkpoints(m.id, ctx.rt.store.checkpoints(m.id))
        ctx.record("quiet check failed; new baseline recorded", quiet_baseline=now_seen,
                   quiet_mark=quiet.mark(src, _with_passwords(ctx.rt, m)))
        raise StepFailed(f"something wrote to {m.source} {when} ({'; '.join(problems)}): the freeze was overridden, "
                         "perhaps by a superuser or a role that may create databases or roles. Find out who, then "
                         "retry (the copy starts over) or unfreeze.")
    notes = f"; {'; '.join(found.notes)}" if found.notes else ""
    ctx.progress(f"quiet check: no write on {m.source} {when} ({len(now_seen)} databases, counters, sequences, "
                 f"large objects, transaction ids, databases and roles unchanged){notes}")


def _with_passwords(rt: Runtime, m: Migration) -> bool:
    """Password hashes are part of what must not change only when the copy carries them."""
    return rt.config.servers[m.target].copy_role_passwords if m.target in rt.config.servers else True


def _moving(m: Migration, src: Endpoint) -> list[str]:
    with connection(src) as conn:
        return [d.name for d in selected(list_databases(conn), m.plan.databases)]


# The sums taken by a copy in this process, by migration: (that copy's start, the source's, the target's). Kept in
# memory only, for the verification that follows that copy under the same lock; a verification elsewhere reads both.
_SOURCE_HASHES: dict[str, tuple[datetime, SourceHashes, TargetHashes]] = {}


def _kept_hashes(m: Migration) -> tuple[SourceHashes | None, TargetHashes | None]:
    """The sums of the copy this verification checks, its last copy, finished: the source's if it stayed frozen
    since; the target's in any case, since each is reused only with its proof that its table did not change."""
    kept = _SOURCE_HASHES.pop(m.id, None)
    copied = m.last_step(StepName.COPY)
    if kept is None or copied is None or copied.status != StepStatus.DONE or copied.started_at != kept[0]:
        return None, None
    return (kept[1] if m.freeze is not None and m.quiet_mark is not None else None), kept[2]


def _verify(rt: Runtime, m: Migration, ctx: StepContext) -> StepResult:
    freshness = [f.model_dump() for f in rt.config.freshness]
    src, (hashes, landed) = ctx.endpoint(m.source), _kept_hashes(m)
    if hashes is not None:  # the source is not read again: every signal must say it is as it was when hashed
        _prove_quiet(m, src, ctx, "since the copy")
    result = verify.run(src, ctx.endpoint(_target(m)), _databases(m), m.freeze, ctx.progress,
                        m.plan.jobs, quick=m.verify_quick, freshness=freshness, mark=m.quiet_mark,
                        source_hashes=hashes, target_hashes=landed)
    report = result.model_dump(mode="json")  # the step's record keeps the report as it was, as data
    if result.ok:
        message = f"verified ({result.mode}): {result.tables} tables, {result.rows} rows, all equal"
        if result.source_hashed_during_copy or result.target_hashed_during_copy:
            message += (f" (hashed during the copy: {result.source_hashed_during_copy} tables' source side, "
                        f"{result.target_hashed_during_copy} tables' target side)")
        return StepResult(Event.VERIFY_PASSED, message, report, {"verification": result, "verify_quick": False})
    message = f"verification ({result.mode}) found {len(result.problems)} difference(s)"
    ctx.rt.store.remove_checkpoints(m.id, ctx.rt.store.checkpoints(m.id))  # so `retry` copies everything anew
    return StepResult(Event.VERIFY_FAILED, message, report, {"verification": result, "verify_quick": False})


def _cutover(rt: Runtime, m: Migration, ctx: StepContext) -> StepResult:
    target = _target(m)
    dst = ctx.endpoint(target)
    if m.sync_setup is not None and m.hook is not None and m.hook.exit_status == 0:
        # The hook switched the app already and what failed was the replication's removal: only that again.
        removed = logical.cleanup_after(rt, m, ctx)
        resumed = apphooks.resume_app(rt, m, ctx, target)
        return StepResult(Event.CUT_OVER, f"cut over to {target}; {m.source} stays frozen{logical.removal_line(removed)}"
                          f"{apphooks.resumed_line(resumed)}", {**removed, **({"resume_app_hook": resumed} if resumed else {})},
                          {"sync_setup": None, "sync_status": None})
    # The app waits in its poolers (none configured: a no-op) while the writes move; any failure in here
    # resumes them on the source, pointed back first if the repoint had begun.
    with poolers.switch(rt, m, ctx, dst) as paused:
        result = switch_over(rt, m, ctx, paused)
    return finish_cutover(rt, m, ctx, result, paused)


def switch_over(rt: Runtime, m: Migration, ctx: StepContext, paused: PoolerSwitch) -> dict[str, Any]:
    """With the app held in its poolers: the source proven quiet and marked, the target made ready, the hook,
    the poolers repointed. The caller resumes them (on the target once this returns, on the source if it raises)."""
    target = _target(m)
    cfg = rt.config.servers[target]
    src, dst = ctx.endpoint(m.source), ctx.endpoint(target)
    extra = {"PGMOVE_SOURCE": m.source, "PGMOVE_TARGET": target, "PGMOVE_MIGRATION": m.id}

    def on_hook(report: HookReport) -> None:
        ctx.record(f"cutover hook {report.argv0} {report.phase()}", hook=report)

    if m.quiet_baseline is not None and m.quiet_mark is not None and m.freeze is not None:
        try:  # before anything changes: a write past the freeze since verification is not in the copy
            handover.prove_quiet(src, target, m.id, m.quiet_baseline, m.quiet_mark, _databases(m), ctx.progress)
        except handover.SourceMoved as exc:
            ctx.rt.store.remove_checkpoints(m.id, ctx.rt.store.checkpoints(m.id))  # the retry copies everything anew
            ctx.record("cutover refused: the source moved after verification", source_moved=exc.seen)
            raise
        handover.mark_cut_over(src, m.freeze, target, m.id, ctx.progress)
    if m.sync_setup is not None:  # the target refused the app's writes while it followed the source
        targetguard.open_for_writes(dst, [d.database for d in m.sync_setup.databases], m.target_acls)
    result = cutover.run(dst, _databases(m), cfg.cutover_hook, cfg.cutover_hook_timeout,
                         extra, poolers.secret_env(rt.config), ctx.progress, on_hook)
    if paused.poolers:
        paused.repoint()
    return result


def finish_cutover(rt: Runtime, m: Migration, ctx: StepContext, result: dict[str, Any],
                   paused: PoolerSwitch) -> StepResult:
    target = _target(m)
    if paused.timeline:
        result["poolers"] = paused.timeline
    changes: dict[str, Any] = {}
    said = f"cut over to {target}; {m.source} stays frozen"
    if m.sync_setup is not None:  # nothing may keep WAL on the frozen source or apply into the new primary
        result["replication_removed"] = removed = logical.cleanup_after(rt, m, ctx)
        said, changes = said + logical.removal_line(removed), {"sync_setup": None, "sync_status": None}
    # The app's writers start last: on the target, with the poolers already resumed there.
    resumed = apphooks.resume_app(rt, m, ctx, target)
    if resumed:
        result["resume_app_hook"] = resumed
    return StepResult(Event.CUT_OVER, said + apphooks.resumed_line(resumed), result, changes)


def _unfreeze(rt: Runtime, m: Migration, ctx: StepContext) -> StepResult:
    result: dict[str, Any] = {}
    if m.freeze is not None:
        result = freeze.unfreeze(rt.endpoint(m.source), m.freeze, ctx.progress,
                                 min(rt.config.freeze_grace_seconds, freeze.UNFREEZE_GRACE_SECONDS),
                                 rt.config.unfreeze_lock_give_up_seconds)
    resumed = apphooks.resume_app(rt, m, ctx, m.source)  # the source takes writes again: so may the app's writers
    if resumed:
        result["resume_app_hook"] = resumed
    if m.window_rollback or needs_cleanup(m):
        done = logical.after_unfreeze(rt, m, ctx, result)
        return StepResult(done.event, done.message + apphooks.resumed_line(resumed), done.result, done.changes)
    # The source took writes again (or will): nothing an earlier copy finished may be kept by the next one.
    rt.store.remove_checkpoints(m.id, rt.store.checkpoints(m.id))
    event = Event.UNFROZEN_FOR_ABORT if m.aborting else Event.UNFROZEN
    verb = "aborted; " if m.aborting else ""
    # The hook's record served the writes-back decision; a later freeze and cutover start without it.
    changes: dict[str, Any] = {"freeze": None, "hook": None, "snapshot": None, "snapshot_unfreezing": False}
    if m.aborting and m.drop_created and m.created_target_databases:
        dropped = dropdb.drop_created(ctx.endpoint(_target(m)), m.created_target_databases, ctx.progress)
        result["dropped_target_databases"] = dropped
        changes["created_target_databases"] = [n for n in m.created_target_databases if n not in dropped]
        verb += f"{', '.join(dropped) or 'nothing'} dropped on {m.target}; "
    said = "unfrozen: settings restored exactly" if m.freeze is not None else "was not frozen"
    return StepResult(event, f"{verb}{m.source} {said}{snapshot.snapshot_line(m)}{apphooks.resumed_line(resumed)}",
                      result, changes)


STEPS: dict[StepName, Callable[[Runtime, Migration, StepContext], StepResult]] = {
    StepName.PREFLIGHT: _preflight,
    StepName.FREEZE: _freeze,
    StepName.COPY: _copy,
    StepName.VERIFY: _verify,
    StepName.CUTOVER: _cutover,
    StepName.UNFREEZE: _unfreeze,
    StepName.SYNC: logical.sync,
    StepName.DRAIN: logical.drain_step,
    StepName.SWITCH: logical.switch,
}


def _target(m: Migration) -> str:
    if m.target is None:
        raise Refused("this freeze has no target")
    return m.target


def _databases(m: Migration) -> list[str]:
    """The databases the last copy moved (it re-reads the source), else the plan's."""
    copied = m.last_step(StepName.COPY)
    if copied is not None and copied.result.get("databases_copied"):
        return list(copied.result["databases_copied"])
    if m.preflight is None:
        raise Refused("no preflight report: plan again")
    return [d.name for d in selected(m.preflight.databases, m.plan.databases)]


def _majors(m: Migration) -> tuple[int, int | None]:
    assert m.preflight is not None

    def major(version: str) -> int | None:
        return int(version.split(".")[0]) if version else None

    return major(m.preflight.source_version) or 0, major(m.preflight.target_version)
