"""`freeze <server> --snapshot`: under the one approval, freeze, CHECKPOINT, the configured snapshot hook, and the
unfreeze, which happens whatever the hook did."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pgmove.state.errors import StepFailed
from pgmove.state.machine import Event
from pgmove.state.models import HookReport, Migration
from pgmove.steps import freeze
from pgmove.steps.checkpoint import checkpoint
from pgmove.steps.hooks import run_hook
from pgmove.worker.apphooks import hook_env, resume_app, resumed_line
from pgmove.worker.poolers import secret_env
from pgmove.worker.runtime import Runtime

if TYPE_CHECKING:
    from pgmove.worker.adapters import StepResult
    from pgmove.worker.runner import StepContext


def take(rt: Runtime, m: Migration, ctx: StepContext, grace: float) -> StepResult:
    from pgmove.worker import adapters  # here: adapters imports this module for its freeze step

    cfg = rt.config.servers[m.source]
    if not cfg.snapshot_hook:
        raise StepFailed(f"no snapshot_hook is configured for {m.source} any more; nothing was frozen. Configure it, "
                         f"or `/pgmove abort {m.source}`.")
    src = ctx.endpoint(m.source)
    froze = adapters.freeze_source(rt, m, ctx, grace)
    m = ctx.record(froze.message, **froze.changes)
    assert m.freeze is not None
    label = f"pgmove-{m.source}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    result: dict[str, Any] = {"freeze": froze.result, "label": label}
    problem = None

    def on_report(report: HookReport) -> None:
        facts = {"label": label, "lsn": result.get("checkpoint_lsn")}
        ctx.record(f"snapshot hook {report.argv0} {report.phase()}", snapshot=report.model_copy(update=facts))

    try:
        lsn = result["checkpoint_lsn"] = checkpoint(src)
        ctx.progress(f"CHECKPOINT on {m.source} done: checkpoint LSN {lsn}")
        env = {**hook_env(m, m.source), "PGMOVE_SNAPSHOT_LABEL": label, "PGMOVE_CHECKPOINT_LSN": lsn}
        result["hook"] = run_hook("snapshot hook", src, [*cfg.snapshot_hook, m.source, label], cfg.snapshot_hook_timeout,
                                  env, secret_env(rt.config), ctx.progress, on_report)
    except StepFailed as exc:
        problem = exc.message  # the server must not stay frozen for a snapshot that will not come
    # From here a failure (or this worker's death) leaves the unfreeze to finish, never a new freeze to take.
    m = ctx.record(f"unfreezing {m.source} after the snapshot", snapshot_unfreezing=True)
    assert m.freeze is not None
    try:
        result["unfreeze"] = freeze.unfreeze(src, m.freeze, ctx.progress,
                                              give_up_seconds=rt.config.unfreeze_lock_give_up_seconds)
    except StepFailed as exc:
        taken = f"no snapshot ({problem})" if problem is not None else f"snapshot {label} taken"
        raise StepFailed(f"{taken}, but the unfreeze of {m.source} did not finish: {exc.message}. "
                         f"`/pgmove retry {m.source}` continues the unfreeze (it does not freeze again); the app's "
                         "writers stay paused until it is done") from None
    # From the freeze's record, not this run's start: a retry's freeze has held since the first run took it.
    seconds = result["write_freeze_seconds"] = round((datetime.now(UTC) - m.freeze.taken_at).total_seconds(), 2)
    resumed = resume_app(rt, m, ctx, m.source)
    if resumed:
        result["resume_app_hook"] = resumed
    if problem is not None:
        message = (f"NO snapshot of {m.source}: {problem}. {m.source} was unfrozen all the same, settings restored "
                   f"exactly, after {seconds:.1f}s of write freeze{resumed_line(resumed)}. Fix it, then "
                   f"`/pgmove freeze {m.source} --snapshot` again.")
    else:
        output = " / ".join(result["hook"]["output"][-5:]) or "no output"
        message = (f"snapshot {label} of {m.source} taken at checkpoint LSN {result['checkpoint_lsn']} (hook output: "
                   f"{output}); {m.source} unfrozen, settings restored exactly; writes were frozen for "
                   f"{seconds:.1f}s{resumed_line(resumed)}")
    changes = {"freeze": None, "quiet_baseline": None, "quiet_mark": None, "snapshot": None, "snapshot_unfreezing": False}
    return adapters.StepResult(Event.UNFROZEN, message, result, changes)


def snapshot_line(m: Migration) -> str:
    """What an unfreeze's closing line says of a snapshot hook that ran under the same freeze: nothing if none did."""
    snap = m.snapshot
    if snap is None or snap.label is None:
        return ""
    if snap.exit_status == 0:
        return f"; snapshot {snap.label} taken" + (f" at checkpoint LSN {snap.lsn}" if snap.lsn else "")
    return f"; the snapshot {snap.label} did not finish: do not restore from it"
