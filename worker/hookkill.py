"""Hooks whose worker died: the process group each run recorded is ended before anything else is done to the
migration. Left running, a pause hook may go on stopping the app after its resume, a snapshot hook may go on
to snapshot a server that is already writable again, and a resume hook would run twice at once with its retry."""

from __future__ import annotations

from pgmove.state.models import HookReport, Migration
from pgmove.steps.process import end_group, here

# The migration's hook records, each with the name the thread gives it.
HOOKS = (("cutover hook", "hook"), ("pause_app_hook", "app_pause"), ("snapshot hook", "snapshot"),
         ("resume_app_hook", "app_resume"))


def unfinished(m: Migration) -> list[tuple[str, HookReport]]:
    """The hooks that started and whose end was never recorded: their worker died while they ran."""
    found = [(what, getattr(m, field)) for what, field in HOOKS]
    return [(what, report) for what, report in found if report is not None and report.finished_at is None]


def end_orphans(m: Migration, quiet: bool = False) -> list[str]:
    """End, on this machine, every hook of `m` still running without its worker; a sentence for each. `quiet`
    leaves out the hooks that had ended already (the next step's check, after the reaper said it all)."""
    said = []
    for what, report in unfinished(m):
        line, acted = _end(what, report)
        if acted or not quiet:
            said.append(line)
    return said


def _end(what: str, report: HookReport) -> tuple[str, bool]:
    p = report.process
    if p is None:
        fate, acted = "its process was not recorded: it may not have started, or may still run: check by hand", False
    elif not here(p):
        fate, acted = f"it may still be running on {p.host} as process group {p.pgid}: stop it there", True
    elif end_group(p):
        fate, acted = f"it was still running (process group {p.pgid}) and pgmove ended it (SIGTERM, then SIGKILL)", True
    else:
        fate, acted = "it is not running any more", False
    line = f"the {what} {report.argv0} started at {report.started_at:%H:%M:%S} UTC and never finished: {fate}"
    if report.label:
        line += f"; the snapshot {report.label} may be incomplete or unusable: do not restore from it"
    return line, acted
