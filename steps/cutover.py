"""Cutover: prove the target takes writes from the app roles, then run the configured switch hook."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

import psycopg
from psycopg import sql

from pgmove.state.errors import StepFailed
from pgmove.state.models import HookReport
from pgmove.steps.connect import Endpoint, Progress, connection, describe
from pgmove.steps.freeze import READ_ONLY
from pgmove.steps.settings import read_settings

_WRITABLE_COLUMN = """
    SELECT n.nspname, c.relname, a.attname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE c.relkind IN ('r', 'p') AND a.attgenerated = '' AND a.attidentity <> 'a'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND has_column_privilege(%(role)s, c.oid, a.attnum, 'INSERT')
    ORDER BY (pg_get_userbyid(c.relowner) = %(role)s) DESC, c.relname LIMIT 1
"""


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


def smoke_test(dst: Endpoint, databases: list[str], progress: Progress) -> list[str]:
    """Each app role can log in and write on the target. A database whose own default is read-only is
    read-only by design (the freeze's setting never reaches the target: verification compares every
    setting with its value before the freeze), so it is reported and skipped, not failed."""
    checks: list[str] = []
    with connection(dst) as conn:
        if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:  # type: ignore[index]
            raise StepFailed(f"{dst.name} is a standby (in recovery); it cannot take writes.")
        settings = read_settings(conn)
    read_only_by_design = {s.database for s in settings if s.role is None and s.database and s.name == READ_ONLY
                           and str(s.value).lower() in ("on", "true", "yes", "1")}
    with connection(dst) as conn:
        for role in dst.app_roles:
            row = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if row is None or not row[0]:
                raise StepFailed(f"app role {role} cannot log in on {dst.name}.")
    for role in dst.app_roles:
        wrote = []
        for db in databases:
            if db in read_only_by_design:
                checks.append(f"{db}: read-only by design on the source, kept read-only")
                continue
            if _defaults_to_read_only(settings, db, role):
                raise StepFailed(f"{db} on {dst.name} starts {role}'s sessions read-only; writes would fail.")
            target = _probe_write(dst, db, role)
            if target:
                wrote.append(f"{db}.{target}")
        if not wrote:
            raise StepFailed(f"app role {role} could not write to any table on {dst.name}.")
        checks.append(f"{role} can write on {dst.name} ({', '.join(wrote)})")
        progress(checks[-1], role=role)
    return checks


def _defaults_to_read_only(settings: list[Any], db: str, role: str) -> bool:
    # The precedence PostgreSQL applies at login: database+role, role, database, then ALTER ROLE ALL.
    for want in ((db, role), (None, role), (db, None), (None, None)):
        for s in settings:
            if (s.database, s.role) == want and s.name == READ_ONLY:
                return str(s.value).lower() in ("on", "true", "yes", "1")
    return False


def _probe_write(dst: Endpoint, db: str, role: str) -> str | None:
    """An INSERT of no rows as the app role, rolled back: checks privilege and that writes are accepted."""
    with connection(dst, db) as conn:
        row = conn.execute(_WRITABLE_COLUMN, {"role": role}).fetchone()
        if row is None:
            return None
        schema, table, column = row
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
                conn.execute(sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {t} WHERE false").format(
                    t=sql.Identifier(schema, table), c=sql.Identifier(column)))
        except psycopg.Error as exc:
            raise StepFailed(f"{role} cannot write to {db}.{schema}.{table} on {dst.name}: {describe(exc)}") from None
    return f"{schema}.{table}"


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
            _kill_group(proc)
            status = None
        output = _tail(out)
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


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _tail(out: IO[bytes], lines: int = 20, limit: int = 64 * 1024) -> list[str]:
    """The last lines of what the hook wrote; a chatty hook cannot make pgmove read megabytes."""
    size = out.seek(0, os.SEEK_END)
    out.seek(max(0, size - limit))
    return out.read().decode(errors="replace").strip().splitlines()[-lines:]
