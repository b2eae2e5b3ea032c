"""The app's own hooks around the freeze: its writers paused after the approval and before anything is frozen,
and resumed where writes resume (the target after a cutover, the source after its unfreeze)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgmove.state.errors import PauseFailed, StepFailed
from pgmove.state.models import HookReport, Migration
from pgmove.steps.hooks import run_hook
from pgmove.worker.poolers import secret_env
from pgmove.worker.runtime import Runtime

if TYPE_CHECKING:
    from pgmove.worker.runner import StepContext


def hook_env(m: Migration, server: str) -> dict[str, str]:
    return {"PGMOVE_SERVER": server, "PGMOVE_SOURCE": m.source, "PGMOVE_TARGET": m.target or "",
            "PGMOVE_MIGRATION": m.id}


def pause_app(rt: Runtime, m: Migration, ctx: StepContext, again: str, limit: float | None = None) -> Migration:
    """Run the source's pause_app_hook (once: a retry after it succeeded does not run it again). It failing
    raises PauseFailed while nothing is frozen: the migration goes back to where it was, and `again` is the
    command that asks anew."""
    cfg = rt.config.servers.get(m.source)
    if cfg is None or not cfg.pause_app_hook or (m.app_pause is not None and m.app_pause.exit_status == 0):
        return m

    def on_report(report: HookReport) -> None:
        ctx.record(f"pause_app_hook {report.argv0} {report.phase()}", app_pause=report)

    timeout = min(cfg.pause_app_hook_timeout, limit) if limit is not None else cfg.pause_app_hook_timeout
    try:
        run_hook("pause_app_hook", ctx.endpoint(m.source), cfg.pause_app_hook, timeout, hook_env(m, m.source),
                 secret_env(rt.config), ctx.progress, on_report)
    except StepFailed as exc:
        if m.freeze is not None:  # a retry of a freeze that had begun: the server is half frozen, the usual failure
            raise
        current = rt.store.get(m.id) or m
        resumed = resume_app(rt, current, ctx, m.source)
        undone = ("its resume_app_hook ran" + (" and failed too" if resumed.get("error") else "")
                  if resumed.get("argv0") else "no resume_app_hook is configured, so start what it paused by hand")
        raise PauseFailed(f"{exc.message}. Nothing was frozen; {undone}. Fix the hook or the app, then ask again "
                          f"({again}, a new approval).") from None
    return rt.store.get(m.id) or m


def resume_app(rt: Runtime, m: Migration, ctx: StepContext, server: str) -> dict[str, Any]:
    """Run `server`'s resume_app_hook if the app was paused for this freeze. Never raises for the hook: writes
    already resumed on `server`, so a failure is said in the thread (start the app by hand), not undone."""
    if m.app_pause is None:
        return {}
    cfg = rt.config.servers.get(server)
    argv = cfg.resume_app_hook if cfg is not None else None
    outcome: dict[str, Any] = {"server": server}
    if cfg is None or not argv:
        ctx.progress(f"no resume_app_hook is configured for {server}: start the app's writers that the "
                     "pause_app_hook stopped by hand")
    else:
        def on_report(report: HookReport) -> None:  # its group recorded before it is waited on: see hookkill.py
            ctx.record(f"resume_app_hook {report.argv0} {report.phase()}", app_resume=report)

        try:
            outcome.update(run_hook("resume_app_hook", ctx.endpoint(server), argv, cfg.resume_app_hook_timeout,
                                    hook_env(m, server), secret_env(rt.config), ctx.progress, on_report))
        except StepFailed as exc:
            outcome.update(argv0=argv[0], error=exc.message)
            ctx.progress(f"PROBLEM: {exc.message}. {server} takes writes, but the app's writers may still be paused: "
                         "start them by hand.", problem=exc.message)
    ctx.record("the app's pause is over" if not outcome.get("error") else "the app's resume failed", app_pause=None,
               app_resume=None)
    return outcome


def resumed_line(outcome: dict[str, Any]) -> str:
    """What the step's closing line says of the resume: nothing when there was no pause."""
    if not outcome:
        return ""
    if outcome.get("error"):
        return "; resume_app_hook FAILED: start the app by hand"
    return "; app resumed" if outcome.get("exit_status") == 0 else "; app NOT resumed (no resume_app_hook)"
