"""Cutover: prove the target takes writes from the app roles, then run the configured switch hook."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import psycopg
from psycopg import sql

from state.errors import StepFailed
from steps.connect import Endpoint, Progress, connection, describe
from steps.freeze import READ_ONLY
from steps.settings import read_settings

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
) -> dict[str, Any]:
    checks = smoke_test(dst, databases, progress)
    result: dict[str, Any] = {"checks": checks}
    if hook:
        result["hook"] = run_hook(dst, hook, hook_timeout, env_extra, secret_env, progress)
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
    dst: Endpoint, argv: list[str], timeout: float, env_extra: dict[str, str], secret_env: set[str], progress: Progress
) -> dict[str, Any]:
    """The team's own switch (DNS, pgbouncer, app config): told where the target is, never given a password.

    libpq's PG* variables and every variable that holds a configured password are left out.
    """
    params = dst.params
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k not in secret_env}
    env.update({"PGHOST": str(params.get("host") or ""), "PGPORT": str(params.get("port") or "5432"),
                "PGDATABASE": str(params.get("dbname") or "postgres"), "PGMOVE_TARGET_DSN": dst.dsn})
    env.update(env_extra)
    progress(f"running the cutover hook {argv[0]}")
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise StepFailed(f"the cutover hook {argv[0]} did not finish within {timeout:g}s") from None
    except OSError as exc:
        raise StepFailed(f"the cutover hook {argv[0]} could not start: {exc.strerror}") from None
    output = (done.stdout + done.stderr).strip().splitlines()[-20:]
    if done.returncode != 0:
        raise StepFailed(f"the cutover hook {argv[0]} exited with status {done.returncode}: {' / '.join(output[-3:])}")
    progress(f"cutover hook {argv[0]} succeeded", output=output)
    return {"argv0": argv[0], "exit_status": 0, "output": output}
