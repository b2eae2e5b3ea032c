"""Preflight: can this plan work? Reachability, versions, tools, databases and sizes, room on the target."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import psycopg

from pgmove.state import leftovers
from pgmove.state.errors import ConnectionFailed
from pgmove.state.models import Migration, PreflightReport
from pgmove.steps import freezerecord, prepared, readrate, subscriptions
from pgmove.steps.catalog import MAINTENANCE_DB, list_databases, selected, user_object_count
from pgmove.steps.connect import Endpoint, Progress, connect, connection, server_major
from pgmove.steps.tools import choose_toolset

HEADROOM = 1.2  # a restored database is about its source size; indexes rebuilt fresh are rarely larger


def run(
    src: Endpoint, dst: Endpoint | None, databases: list[str] | None, tool_dirs: list[str],
    work_dir: str | None, progress: Progress, created: dict[str, Migration] | None = None, planning: str = "",
) -> PreflightReport:
    """`created`: which target databases a recorded pgmove migration created there (state/leftovers.py), so a
    collision says whose it is and how to clear it; `planning`: the id of the migration being planned."""
    report = PreflightReport()
    src_conn = _reachable(src, report)
    if src_conn is None:
        return report
    with src_conn:
        source_major = _inspect_source(src_conn, src, databases, report)
    progress(f"{src.name}: PostgreSQL {report.source_version}, {len(report.databases)} databases to move")
    if report.databases:
        largest = max(report.databases, key=lambda d: d.size_bytes)
        report.read_bytes_per_second = readrate.measure(src, largest.name)
    if dst is None:
        return report
    dst_conn = _reachable(dst, report)
    if dst_conn is None:
        return report
    with dst_conn:
        target_major = _inspect_target(dst_conn, dst, src, source_major, report, created or {}, planning)
        _check_what_the_target_lacks(src, dst_conn, dst, report)
    toolset = choose_toolset(source_major, target_major, tool_dirs)
    if toolset is None:
        report.problems.append(f"no pg_dump/pg_restore of version {source_major} or newer was found; install "
                               f"postgresql-client-{source_major} or set tool_dirs in the configuration.")
    else:
        report.tools = {"pg_dump": toolset.describe(), "pg_restore": toolset.describe()}
    _check_work_dir(work_dir, report)
    progress(f"{dst.name}: PostgreSQL {report.target_version}; {len(report.problems)} problem(s)")
    return report


def _reachable(ep: Endpoint, report: PreflightReport) -> psycopg.Connection[Any] | None:
    try:
        return connect(ep)
    except ConnectionFailed as exc:
        report.problems.append(exc.message)
        return None


def _inspect_source(conn: psycopg.Connection[Any], src: Endpoint, databases: list[str] | None, report: PreflightReport) -> int:
    report.source_version = conn.info.parameter_status("server_version") or ""
    _check_superuser(conn, src, report)
    all_dbs = list_databases(conn)
    report.databases = selected(all_dbs, databases)
    missing = sorted(set(databases or []) - {d.name for d in all_dbs})
    if missing:
        report.problems.append(f"{src.name} has no database named {', '.join(missing)}.")
    _check_app_roles(conn, src, report)
    report.roles = [r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1")]
    _check_what_the_freeze_meets(conn, src, report)
    _check_tablespaces(conn, src, report)
    if databases is None and MAINTENANCE_DB in {d.name for d in all_dbs}:
        with connection(src, MAINTENANCE_DB) as maintenance:
            count = user_object_count(maintenance)
        if count:
            report.warnings.append(f"the {MAINTENANCE_DB} database on {src.name} holds {count} user relations; it is "
                                   "not copied unless named with --databases")
    return server_major(conn)


def _inspect_target(
    conn: psycopg.Connection[Any], dst: Endpoint, src: Endpoint, source_major: int, report: PreflightReport,
    created: dict[str, Migration], planning: str,
) -> int:
    report.target_version = conn.info.parameter_status("server_version") or ""
    target_major = server_major(conn)
    _check_target_privileges(conn, dst, report)
    if target_major < source_major:
        report.problems.append(f"{dst.name} runs PostgreSQL {target_major}, older than {src.name} ({source_major}); "
                               "pg_dump output cannot be restored into an older server.")
    taken = {d.name for d in list_databases(conn)} & {d.name for d in report.databases}
    for name in sorted(taken):
        report.problems.append(leftovers.collision(dst.name, name, created.get(name), planning))
    _check_disk(conn, dst, report)
    return target_major


# System collations (pg_catalog) that user columns, indexes or databases use; user-defined ones travel in the dump.
_USED_COLLATIONS = """
    SELECT DISTINCT c.collname FROM pg_collation c
    WHERE c.collnamespace = 'pg_catalog'::regnamespace AND c.collname NOT IN ('default', 'C', 'POSIX', 'ucs_basic')
      AND c.oid IN (SELECT a.attcollation FROM pg_attribute a JOIN pg_class r ON r.oid = a.attrelid
                    WHERE r.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
                    UNION SELECT unnest(i.indcollation)::oid FROM pg_index i)
"""


def _check_what_the_target_lacks(src: Endpoint, dst_conn: psycopg.Connection[Any], dst: Endpoint,
                                 report: PreflightReport) -> None:
    """Extensions and collations the moved databases use but the target cannot provide: refused now,
    named, rather than discovered halfway through a restore while the source is frozen."""
    available = {r[0] for r in dst_conn.execute("SELECT name FROM pg_available_extensions").fetchall()}
    collations = {r[0] for r in dst_conn.execute("SELECT collname FROM pg_collation").fetchall()}
    target_has_icu = bool(dst_conn.execute("SELECT count(*) FROM pg_collation WHERE collprovider = 'i'").fetchone()[0])  # type: ignore[index]
    major = server_major(dst_conn)
    for db in report.databases:
        with connection(src, db.name) as conn:
            extensions = [r[0] for r in conn.execute("SELECT extname FROM pg_extension ORDER BY 1").fetchall()]
            used = [r[0] for r in conn.execute(_USED_COLLATIONS).fetchall()]
            icu_database = conn.execute("SELECT datlocprovider = 'i' FROM pg_database WHERE datname = current_database()"
                                        ).fetchone()[0] if server_major(conn) >= 15 else False  # type: ignore[index]
        for name in extensions:
            if name not in available:
                report.problems.append(f"{dst.name} cannot install extension {name}, which database {db.name} uses: "
                                       f"install it there first (on Debian: the package providing it for PostgreSQL {major}).")
        for name in used:
            if name not in collations:
                report.problems.append(f"{dst.name} lacks collation \"{name}\", which database {db.name} uses: a server "
                                       "built with the same ICU/locale data is needed, or change those columns first.")
        if icu_database and not target_has_icu:
            report.problems.append(f"database {db.name} uses ICU as its locale provider, and {dst.name} has no ICU support.")


def _check_what_the_freeze_meets(conn: psycopg.Connection[Any], src: Endpoint, report: PreflightReport) -> None:
    """What writes past the guards unless the freeze deals with it, named now so nobody is surprised then."""
    found = freezerecord.read(conn, str(conn.info.dbname))
    if found is not None and found.record is not None and found.record.cut_over is not None:
        report.problems.append(freezerecord.refusal(found, src.name).message)
    elif found is not None:
        report.warnings.append(f"{freezerecord.refusal(found, src.name).message} (If pgmove lost that migration's "
                               "record, a freeze of this plan takes over the record kept on the server instead, so "
                               "that unfreeze restores the server as it was.)")
    xacts = prepared.pending(conn)
    if xacts:
        report.warnings.append(f"{len(xacts)} prepared transaction(s) on {src.name}: "
                               + "; ".join(prepared.describe(x) for x in xacts)
                               + ". The freeze gives them the grace period to be committed, then rolls them back.")
    subs = subscriptions.capture(conn)
    if subs:
        report.warnings.append(f"subscriptions on {src.name}: {subscriptions.describe(subs)}. The freeze disables the "
                               "enabled ones (nothing is applied while frozen); unfreeze enables them again.")


def _check_superuser(conn: psycopg.Connection[Any], ep: Endpoint, report: PreflightReport) -> None:
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if not row or not row[0]:
        report.problems.append(f"pgmove's role on {ep.name} ({ep.user or 'current user'}) is not a superuser; it needs "
                               "to read role passwords, change database settings and end sessions.")


def _check_target_privileges(conn: psycopg.Connection[Any], dst: Endpoint, report: PreflightReport) -> None:
    """A managed target (RDS, Cloud SQL, Azure) gives no superuser: say what needs it and what would work."""
    row = conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user").fetchone()
    if row and row[0]:
        return
    has = [name for name, on in zip(("CREATEROLE", "CREATEDB"), row[1:] if row else (), strict=False) if on]
    report.problems.append(
        f"pgmove's role on {dst.name} ({dst.user or 'current user'}) is not a superuser"
        f"{' (it has ' + ', '.join(has) + ')' if has else ''}: a managed service? The copy sets owners, restores "
        "privileges exactly (NULL ACLs through the catalog) and creates roles with their attributes, which needs "
        "superuser there. Options that work: a self-managed target, or the service's own import (pg_dump "
        "--no-owner --no-acl) with `copy_role_passwords = false` for roles, followed by /pgmove verify.")


def _check_app_roles(conn: psycopg.Connection[Any], ep: Endpoint, report: PreflightReport) -> None:
    if not ep.app_roles:
        return
    rows = conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(ep.app_roles),)).fetchall()
    missing = sorted(set(ep.app_roles) - {r[0] for r in rows})
    if missing:
        report.problems.append(f"app role(s) {', '.join(missing)} configured for {ep.name} do not exist there.")
    own = str(conn.execute("SELECT session_user").fetchone()[0])  # type: ignore[index]
    if own in ep.app_roles:
        # The guards on a frozen source, and on a logical target, let pgmove's own sessions through: an app logging
        # in as the same role would write past them.
        report.problems.append(f"app role {own} is the role pgmove connects to {ep.name} as: the freeze lets pgmove's "
                               "own sessions write, so it would let the app's too; give pgmove a role of its own.")


def _check_tablespaces(conn: psycopg.Connection[Any], ep: Endpoint, report: PreflightReport) -> None:
    rows = conn.execute("SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')").fetchall()
    if rows:
        report.problems.append(f"{ep.name} uses tablespaces ({', '.join(r[0] for r in rows)}); pgmove does not move "
                               "tablespaces yet.")


def _check_disk(conn: psycopg.Connection[Any], ep: Endpoint, report: PreflightReport) -> None:
    needed = int(report.total_bytes * HEADROOM)
    if not ep.is_local:
        report.warnings.append(f"free disk on {ep.name} cannot be checked from here; it needs about {_gb(needed)}.")
        return
    try:
        row = conn.execute("SELECT current_setting('data_directory')").fetchone()
        free = shutil.disk_usage(row[0]).free if row else None
    except (OSError, psycopg.errors.InsufficientPrivilege):  # no superuser there (reported on its own)
        free = None
    if free is None:
        report.warnings.append(f"free disk on {ep.name} unknown; it needs about {_gb(needed)}.")
    elif free < needed:
        report.problems.append(f"{ep.name} has {_gb(free)} free, the copy needs about {_gb(needed)}.")


def _check_work_dir(work_dir: str | None, report: PreflightReport) -> None:
    """Only schema dumps are staged (the data streams), so the directory must exist and be writable; size hardly matters."""
    where = work_dir or tempfile.gettempdir()
    if not os.path.isdir(where) or not os.access(where, os.W_OK):
        report.problems.append(f"the staging directory {where} does not exist or is not writable; "
                               "set work_dir in the config to one that is.")


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"
