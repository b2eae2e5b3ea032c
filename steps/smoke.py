"""The write test on the target: each app role can log in and write there (an INSERT of no rows, rolled back).

Verification runs it so a verified copy is one the app can use; cutover runs it again right before the switch.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.errors import StepFailed
from pgmove.steps.connect import Endpoint, Progress, connection, describe, each_in_parallel
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
        writable = []
        for db in databases:
            if db in read_only_by_design:
                checks.append(f"{db}: read-only by design on the source, kept read-only")
                continue
            if _defaults_to_read_only(settings, db, role):
                raise StepFailed(f"{db} on {dst.name} starts {role}'s sessions read-only; writes would fail.")
            writable.append(db)
        probed = each_in_parallel(partial(_probe_write, dst, role=role), writable)
        wrote = [f"{db}.{target}" for db, target in zip(writable, probed, strict=True) if target]
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
