"""The offline copy: roles, then every database with its definition, data (pg_dump -Fd | pg_restore -j) and settings.

Database and role settings come from the freeze snapshot, not the live (frozen) catalog, so nothing of
the freeze reaches the target, while a database that was read-only by design stays read-only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from state.errors import StepFailed
from state.models import FreezeSnapshot
from steps import guards
from steps.catalog import DatabaseDefinition, database_definition
from steps.connect import Endpoint, Progress, connection, describe
from steps.roles import copy_roles
from steps.settings import before_freeze, read_settings, set_statement
from steps.tools import ToolSet, psql_path, run_tool


@dataclass(frozen=True)
class CopyJob:
    src: Endpoint
    dst: Endpoint
    databases: list[str]
    jobs: int
    toolset: ToolSet
    snapshot: FreezeSnapshot | None
    work_dir: str | None
    created_before: list[str]  # target databases an earlier attempt of this migration created


def run(
    job: CopyJob, progress: Progress, will_create: Callable[[str], None], should_stop: Callable[[], bool]
) -> dict[str, Any]:
    """Copy everything; `will_create(db)` must persist the name before the database is created on the target."""
    started = time.monotonic()
    with connection(job.src) as src, connection(job.dst) as dst:
        roles = copy_roles(src, dst, set(job.snapshot.logins) if job.snapshot else set())
        progress(f"roles: {len(roles['created'])} created, {len(roles['kept'])} already on {job.dst.name}", roles=roles)
        settings = before_freeze(read_settings(src), job.snapshot)
        definitions = [database_definition(src, name) for name in job.databases]
        for definition in definitions:
            _prepare_target_database(dst, definition, job, will_create, progress)
    done = []
    for index, definition in enumerate(definitions, 1):
        if should_stop():
            raise StepFailed("the copy was stopped because the migration moved on")
        t0 = time.monotonic()
        progress(f"copying database {definition.name} ({index}/{len(definitions)})", database=definition.name,
                 index=index, total=len(definitions))
        _dump_and_restore(job, definition.name, progress, should_stop)
        with connection(job.dst) as dst:
            _apply_database_properties(job.src, dst, definition, settings)
        with connection(job.dst, definition.name) as conn:
            if job.snapshot is not None:  # the dump carries the freeze's revoked privileges: put the originals back
                guards.restore_acls(conn, [a for a in job.snapshot.acls if a.database == definition.name])
            conn.execute("ANALYZE")
        seconds = round(time.monotonic() - t0, 2)
        done.append({"database": definition.name, "seconds": seconds})
        progress(f"database {definition.name} copied in {seconds:.1f}s", database=definition.name, seconds=seconds)
    _apply_role_settings(job.dst, settings, set(job.databases))
    return {"roles": roles, "databases": done, "seconds": round(time.monotonic() - started, 2),
            "tools": job.toolset.describe()}


def _prepare_target_database(
    dst: psycopg.Connection[Any], definition: DatabaseDefinition, job: CopyJob,
    will_create: Callable[[str], None], progress: Progress,
) -> None:
    name = definition.name
    exists = dst.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
    if exists and name not in job.created_before:
        raise StepFailed(f"{job.dst.name} already has a database named {name} that pgmove did not create; "
                         "it is left untouched. Drop or rename it there, then retry.")
    if exists:
        # Ours from an earlier, interrupted attempt: a half-restored database must never pass as copied.
        progress(f"dropping {name} on {job.dst.name}, left half-copied by an earlier attempt")
        dst.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    will_create(name)
    dst.execute(_create_database(definition, int(dst.info.server_version) // 10000))


def _create_database(d: DatabaseDefinition, target_major: int) -> sql.Composed:
    parts = [
        sql.SQL("TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            sql.Literal(d.encoding), sql.Literal(d.collate), sql.Literal(d.ctype)),
        sql.SQL("OWNER {}").format(sql.Identifier(d.owner)),
        sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(d.connection_limit)),
    ]
    if d.locale_provider == "i" and d.icu_locale:
        locale_kw = "LOCALE" if target_major >= 17 else "ICU_LOCALE"
        parts.append(sql.SQL("LOCALE_PROVIDER icu {} {}").format(sql.SQL(locale_kw), sql.Literal(d.icu_locale)))
    return sql.SQL("CREATE DATABASE {} WITH {}").format(sql.Identifier(d.name), sql.SQL(" ").join(parts))


def _dump_and_restore(job: CopyJob, name: str, progress: Progress, should_stop: Callable[[], bool]) -> None:
    staging = tempfile.mkdtemp(prefix="pgmove-", dir=job.work_dir)
    archive = os.path.join(staging, "dump")
    jobs = str(max(1, job.jobs))
    try:
        # No compression: the staging copy lives for minutes, and gzip would spend the CPU the copy needs.
        # No statistics (pg_dump 18+ dumps them by default): ANALYZE rebuilds them on the target, from
        # the target's own data and version, instead of restoring a source version's numbers.
        no_stats = ["--no-statistics"] if job.toolset.major >= 18 else []
        run_tool(
            [job.toolset.path("pg_dump"), "--format=directory", f"--jobs={jobs}", "--no-sync", "--compress=0",
             *no_stats, f"--file={archive}", f"--dbname={job.src.conninfo(name)}"],
            job.src.tool_env(dict(os.environ)), should_stop=should_stop,
        )
        progress(f"{name}: dump finished, restoring with {jobs} jobs", database=name)
        listing = os.path.join(staging, "restore.list")
        _write_restore_list(job, archive, listing)
        env = job.dst.tool_env(dict(os.environ))
        restore = [job.toolset.path("pg_restore"), "--exit-on-error", "--no-password", f"--use-list={listing}"]
        # Pre-data (the schema) goes through a filter first: a source can carry column options its
        # target does not know, and one unknown option would stop the whole restore.
        pre_data = os.path.join(staging, "pre-data.sql")
        run_tool([*restore, "--section=pre-data", f"--file={pre_data}", archive], env, should_stop=should_stop)
        dropped = _keep_known_column_options(pre_data)
        if dropped:
            progress(f"{name}: column options the target does not know were left out: {', '.join(sorted(dropped))}",
                     database=name, options=sorted(dropped))
        run_tool([psql_path(job.toolset), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                  f"--dbname={job.dst.conninfo(name)}", f"--file={pre_data}"], env, should_stop=should_stop)
        run_tool([*restore, f"--jobs={jobs}", "--section=data", "--section=post-data",
                  f"--dbname={job.dst.conninfo(name)}", archive], env, should_stop=should_stop)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# The column options every supported PostgreSQL knows (ALTER TABLE ... ALTER COLUMN ... SET (...)).
KNOWN_COLUMN_OPTIONS = frozenset({"n_distinct", "n_distinct_inherited"})
_COLUMN_OPTIONS = re.compile(r"^(ALTER TABLE ONLY .+ ALTER COLUMN .+ SET \()(.*)(\);)$")


def _keep_known_column_options(path: str) -> set[str]:
    """Rewrite the pre-data script keeping only known column options; returns the names left out."""
    dropped: set[str] = set()
    kept_lines = []
    with open(path) as script:
        for line in script:
            match = _COLUMN_OPTIONS.match(line.rstrip("\n"))
            if match:
                options = [o.strip() for o in match.group(2).split(",") if o.strip()]
                known = [o for o in options if o.split("=", 1)[0].strip() in KNOWN_COLUMN_OPTIONS]
                dropped |= {o.split("=", 1)[0].strip() for o in options} - KNOWN_COLUMN_OPTIONS
                if not known:
                    continue
                line = f"{match.group(1)}{', '.join(known)}{match.group(3)}\n"
            kept_lines.append(line)
    with open(path, "w") as script:
        script.writelines(kept_lines)
    return dropped


def _write_restore_list(job: CopyJob, archive: str, listing: str) -> None:
    """The archive's table of contents minus the freeze's guards: nothing of the freeze reaches the target."""
    done = subprocess.run([job.toolset.path("pg_restore"), "--list", archive], capture_output=True, text=True,
                          env=job.dst.tool_env(dict(os.environ)), check=False)
    if done.returncode != 0:
        raise StepFailed(f"pg_restore could not read the dump of {archive}: {done.stderr.strip()[-300:]}")
    kept = [line for line in done.stdout.splitlines() if not guards.RESTORE_EXCLUDE.match(line)]
    with open(listing, "w") as out:
        out.write("\n".join(kept) + "\n")


def _apply_database_properties(
    src: Endpoint, dst: psycopg.Connection[Any], d: DatabaseDefinition, settings: list[Any]
) -> None:
    """ACL, comment and settings of the database, applied after its data (a read-only default would block the restore)."""
    with connection(src) as conn:
        acl = conn.execute(
            """
            SELECT a.privilege_type, coalesce(g.rolname, 'PUBLIC'), a.is_grantable
            FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a LEFT JOIN pg_roles g ON g.oid = a.grantee
            WHERE d.datname = %s
            """,
            (d.name,),
        ).fetchall()
    db = sql.Identifier(d.name)
    if acl:
        dst.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        dst.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, sql.Identifier(d.owner)))
        for privilege, grantee, grantable in acl:
            who = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.Identifier(grantee)
            statement = sql.SQL("GRANT {} ON DATABASE {} TO {}").format(sql.SQL(privilege), db, who)
            dst.execute(sql.SQL("{} WITH GRANT OPTION").format(statement) if grantable else statement)
    if d.comment:
        dst.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(d.comment)))
    for row in settings:
        if row.database == d.name and row.role is None:
            _execute_setting(dst, row)


def _apply_role_settings(dst_ep: Endpoint, settings: list[Any], databases: set[str]) -> None:
    with connection(dst_ep) as dst:
        roles = {r[0] for r in dst.execute("SELECT rolname FROM pg_roles").fetchall()}
        for row in settings:
            if row.role is None and row.database is not None:
                continue  # database-wide: applied with its database
            if row.role is not None and row.role not in roles:
                continue
            if row.database is not None and row.database not in databases:
                continue
            _execute_setting(dst, row)


def _execute_setting(dst: psycopg.Connection[Any], row: Any) -> None:
    try:
        dst.execute(set_statement(row, row.value))
    except psycopg.Error as exc:
        raise StepFailed(f"could not apply setting {row.name} on the target: {describe(exc)}") from None
