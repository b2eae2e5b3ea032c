"""A kept archive of the frozen source, for teams that want the restore drill: a directory-format dump
per database, a `pg_restore -l` listing of each, and a SHA-256 manifest of every file.

Nothing of the freeze may come back from the archive either: in each listing the guard objects are
commented out (pg_restore -L skips them), and `<db>.post-restore.sql` puts back the privileges the
freeze revoked, as recorded before it. Written while the source is still frozen, so it holds exactly
what was copied.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psycopg import sql

from pgmove.state.errors import StepFailed
from pgmove.state.models import FreezeSnapshot
from pgmove.steps import guards
from pgmove.steps.connect import Endpoint, Progress
from pgmove.steps.tools import ToolSet, file_name, run_tool

MANIFEST = "MANIFEST.sha256"
INCOMPLETE = ".pgmove-archive-incomplete"
MARKER = ".pgmove-archive.json"  # {"migration": id, "server": name}; in the manifest like every other file

README = """pgmove archive of {server}, taken while it was frozen for migration {migration}.

Per database: <name>/ (pg_dump directory format), <name>.list (pg_restore -l; the freeze's guard
objects are commented out), <name>.post-restore.sql (the privileges the freeze revoked, as they were).
Check:   sha256sum -c {manifest}
Restore: createdb DB && pg_restore -L <name>.list -d DB <name>/ && psql -d DB -f <name>.post-restore.sql
Roles are not in this archive (they are on the target, copied by pgmove).
Databases: {databases}
"""


def check_name(root: str, name: str, migration: str) -> None:
    """Refuse, changing nothing, a name already holding anything but this migration's own archive."""
    base = Path(root) / name
    if not base.exists():
        return
    owner = _owner(base)
    if owner == migration:
        return
    what = (f"the archive of migration {owner}" if owner else
            "an archive pgmove started" if (base / INCOMPLETE).exists() or (base / MANIFEST).exists() else
            "something pgmove did not write")
    raise StepFailed(f"the archive name {name} is taken: {base} holds {what}, not this migration's ({migration}); it is "
                     "left as it is. Plan again and freeze with another --archive name.")


def _owner(base: Path) -> str | None:
    try:
        return str(json.loads((base / MARKER).read_text())["migration"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write(src: Endpoint, databases: list[str], toolset: ToolSet, root: str, name: str, jobs: int,
          snapshot: FreezeSnapshot | None, migration: str, progress: Progress,
          should_stop: Callable[[], bool]) -> dict[str, Any]:
    base = Path(root) / name
    check_name(root, name, migration)  # again here: another migration may have taken the name since the freeze
    if base.exists():
        if (base / MANIFEST).exists() and not (base / INCOMPLETE).exists():
            progress(f"archive {base} was completed by an earlier attempt of this migration; kept as it is")
            return _summary(base, databases, 0.0)
        shutil.rmtree(base)  # this migration's earlier, unfinished attempt
    started = time.monotonic()
    base.mkdir(parents=True)
    (base / INCOMPLETE).touch()
    # Which migration this archive belongs to, before anything else is in it: a later migration reusing the
    # name must never take this one for its own.
    (base / MARKER).write_text(json.dumps({"migration": migration, "server": src.name}) + "\n")
    env = src.tool_env(dict(os.environ))
    for database in databases:
        if should_stop():
            raise StepFailed("the archive was stopped because the migration moved on")
        stem = file_name(database)
        run_tool([toolset.path("pg_dump"), "--format=directory", f"--jobs={max(1, jobs)}", f"--file={base / stem}",
                  f"--dbname={src.conninfo(database)}"], env, should_stop=should_stop)
        (base / f"{stem}.list").write_text(_listing(toolset, base / stem, env))
        (base / f"{stem}.post-restore.sql").write_text(_post_restore(snapshot, database))
        progress(f"archive: {database} dumped to {base / stem}", database=database)
    (base / "README.txt").write_text(README.format(server=src.name, migration=migration, manifest=MANIFEST,
                                                   databases=", ".join(f"{d} -> {file_name(d)}" for d in databases)))
    (base / INCOMPLETE).unlink()
    _write_manifest(base)
    summary = _summary(base, databases, time.monotonic() - started)
    progress(f"archive written to {base}: {summary['files']} files, {summary['bytes'] / 1e6:.1f} MB, "
             f"checked by {MANIFEST}", archive=summary)
    return summary


def _listing(toolset: ToolSet, dump: Path, env: dict[str, str]) -> str:
    done = subprocess.run([toolset.path("pg_restore"), "--list", str(dump)], capture_output=True, text=True, env=env,
                          check=False)
    if done.returncode != 0:
        raise StepFailed(f"pg_restore could not list the archive {dump}: {done.stderr.strip()[-300:]}")
    return "".join(f";{line} (a pgmove freeze guard: not restored)\n" if guards.RESTORE_EXCLUDE.match(line) else f"{line}\n"
                   for line in done.stdout.splitlines())


def _post_restore(snapshot: FreezeSnapshot | None, database: str) -> str:
    statements = ["-- The privileges pgmove's freeze revoked, as they were before it (NULL: the built-in default)."]
    for row in snapshot.acls if snapshot else []:
        if row.database != database:
            continue
        if row.kind == "sequence":
            query = "UPDATE pg_catalog.pg_class SET relacl = {}::aclitem[] WHERE oid = pg_catalog.to_regclass({});"
        else:
            query = "UPDATE pg_catalog.pg_proc SET proacl = {}::aclitem[] WHERE oid = pg_catalog.to_regprocedure({});"
        statements.append(sql.SQL(query).format(sql.Literal(row.acl), sql.Literal(row.name)).as_string(None))
    return "\n".join(statements) + "\n"


def _write_manifest(base: Path) -> None:
    lines = []
    for path in sorted(p for p in base.rglob("*") if p.is_file() and p.name != MANIFEST):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        lines.append(f"{digest.hexdigest()}  {path.relative_to(base).as_posix()}\n")
    (base / MANIFEST).write_text("".join(lines))


def _summary(base: Path, databases: list[str], seconds: float) -> dict[str, Any]:
    files = [p for p in base.rglob("*") if p.is_file()]
    return {"path": str(base), "databases": databases, "files": len(files),
            "bytes": sum(p.stat().st_size for p in files), "seconds": round(seconds, 2), "manifest": MANIFEST}
