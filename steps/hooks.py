"""The team's own programs pgmove runs at the runbook's edges (cutover, app pause and resume, snapshot): an argv
list, a deadline, an environment without passwords, and a report of what it did."""

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
from pgmove.steps.process import identify, kill_group, shown


def run_hook(
    what: str, server: Endpoint, argv: list[str], timeout: float, env_extra: dict[str, str], secret_env: set[str],
    progress: Progress, on_report: Callable[[HookReport], None] = lambda report: None,
) -> dict[str, Any]:
    """Run `argv` told where `server` is (PGHOST, PGPORT, PGDATABASE) and never given a password.

    libpq's PG* variables and every variable that holds a configured password are left out. Its output goes
    to a file and the deadline is on the process, not on the end of its output: a background child it leaves
    holding stdout cannot hold pgmove. `on_report` records the run before it starts, once it runs (its process
    group, for whoever finds this worker dead) and once it ended, so a later decision knows whether it may have
    done part of its work. `what` names it in every message.
    """
    params = server.params
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k not in secret_env}
    env.update({"PGHOST": str(params.get("host") or ""), "PGPORT": str(params.get("port") or "5432"),
                "PGDATABASE": str(params.get("dbname") or "postgres")})
    env.update(env_extra)
    name = argv[0]
    report = HookReport(argv0=name, started_at=datetime.now(UTC))
    on_report(report)
    progress(f"running the {what} {name}")
    with tempfile.TemporaryFile() as out:
        try:
            # Its own process group, so the time limit ends its children too.
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    process_group=0)
        except OSError as exc:
            on_report(report.model_copy(update={"finished_at": datetime.now(UTC), "error": exc.strerror}))
            raise StepFailed(f"the {what} {name} could not start: {exc.strerror}") from None
        # Its group, before it is waited for: a worker killed now leaves it running, and the reaper ends it.
        report = report.model_copy(update={"process": identify(proc.pid)})
        on_report(report)
        try:
            status: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            status = None
        output = shown(out, secret_env, server.password)
    report = report.model_copy(update={"finished_at": datetime.now(UTC), "exit_status": status,
                                       "timed_out": status is None, "output": output})
    on_report(report)
    if status is None:
        raise StepFailed(f"the {what} {name} did not finish within {timeout:g}s and was stopped; it may have done "
                         f"part of its work. Its last output: {' / '.join(output[-3:]) or 'none'}")
    if status != 0:
        raise StepFailed(f"the {what} {name} exited with status {status}: {' / '.join(output[-3:]) or 'no output'}")
    # The thread shows event messages, not their data: the output goes in the line people read.
    progress(f"{what} {name} succeeded (exit status 0): {' / '.join(output[-5:]) or 'no output'}", output=output)
    return {"argv0": name, "exit_status": 0, "output": output}

