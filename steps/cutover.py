"""Cutover: prove the target takes writes from the app roles, then run the configured switch hook."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pgmove.state.errors import StepFailed
from pgmove.state.models import HookReport
from pgmove.steps.connect import Endpoint, Progress
from pgmove.steps.process import kill_group, tail
from pgmove.steps.smoke import smoke_test


def run(
    dst: Endpoint, databases: list[str], hook: list[str] | None,
    hook_timeout: float, env_extra: dict[str, str], secret_env: set[str], progress: Progress,
    on_hook: Callable[[HookReport], None] = lambda report: None,
) -> dict[str, Any]:
    checks = smoke_test(dst, databases, progress)
    result: dict[str, Any] = {"checks": checks}
    if hook:
        result["hook"] = run_hook(dst, hook, hook_timeout, env_extra, secret_env, progress, on_hook)
    return result


def run_hook(
    dst: Endpoint, argv: list[str], timeout: float, env_extra: dict[str, str], secret_env: set[str], progress: Progress,
    on_report: Callable[[HookReport], None] = lambda report: None,
) -> dict[str, Any]:
    """The team's own switch (DNS, pgbouncer, app config): told where the target is, never given a password.

    libpq's PG* variables and every variable that holds a configured password are left out. Its output goes
    to a file and the deadline is on the process, not on the end of its output: a background child it leaves
    holding stdout cannot hold pgmove. `on_report` records the run before it starts and once it ended, so a
    later decision to give writes back to the source knows whether the app may have been switched.
    """
    params = dst.params
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k not in secret_env}
    env.update({"PGHOST": str(params.get("host") or ""), "PGPORT": str(params.get("port") or "5432"),
                "PGDATABASE": str(params.get("dbname") or "postgres"), "PGMOVE_TARGET_DSN": dst.dsn})
    env.update(env_extra)
    name = argv[0]
    report = HookReport(argv0=name, started_at=datetime.now(UTC))
    on_report(report)
    progress(f"running the cutover hook {name}")
    with tempfile.TemporaryFile() as out:
        try:
            # Its own process group, so the time limit ends its children too.
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    process_group=0)
        except OSError as exc:
            on_report(report.model_copy(update={"finished_at": datetime.now(UTC), "error": exc.strerror}))
            raise StepFailed(f"the cutover hook {name} could not start: {exc.strerror}") from None
        try:
            status: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            status = None
        output = tail(out)
    report = report.model_copy(update={"finished_at": datetime.now(UTC), "exit_status": status,
                                       "timed_out": status is None, "output": output})
    on_report(report)
    if status is None:
        raise StepFailed(f"the cutover hook {name} did not finish within {timeout:g}s and was stopped; it may have "
                         f"switched part of the app. Its last output: {' / '.join(output[-3:]) or 'none'}")
    if status != 0:
        raise StepFailed(f"the cutover hook {name} exited with status {status}: {' / '.join(output[-3:])}")
    progress(f"cutover hook {name} succeeded", output=output)
    return {"argv0": name, "exit_status": 0, "output": output}
