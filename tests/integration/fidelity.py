"""What "no difference" means for a copied server, measured from outside pgmove.

A normalized `pg_dump --schema-only` of every database (one pg_dump for both sides, so the dump's own
version cannot differ), and a content hash of every table and populated materialized view, plus each
sequence's position and each large object's bytes, owner, ACL and comment.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgmove.sandbox.servers import PgCluster

AWKWARD_SQL = Path(__file__).with_name("awkward.sql")

_RELATIONS = """
    SELECT n.nspname, c.relname, c.relkind, c.relispopulated FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_pgmove_freeze')
      AND n.nspname !~ '^pg_(toast|temp)' ORDER BY 1, 2
"""
_SEQUENCES = """
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2
"""
_LARGE_OBJECTS = """
    SELECT oid, pg_get_userbyid(lomowner), lomacl::text, md5(lo_get(oid)), obj_description(oid, 'pg_largeobject')
    FROM pg_largeobject_metadata ORDER BY oid
"""


def add_awkward_database(cluster: PgCluster, name: str = "awkward") -> None:
    cluster.psql("-c", f"CREATE DATABASE {name} OWNER app")
    cluster.psql("-f", str(AWKWARD_SQL), dbname=name)


def schema_dump(cluster: PgCluster, database: str, pg_dump: str) -> list[str]:
    return normalize(raw_schema(cluster, database, pg_dump))


def raw_schema(cluster: PgCluster, database: str, pg_dump: str) -> str:
    return subprocess.run([pg_dump, "--schema-only", "--no-sync", "-d", cluster.admin_dsn(database)],
                          capture_output=True, text=True, check=True).stdout


def reference_schema(dump: str, arbiter: PgCluster, database: str, pg_dump: str) -> list[str]:
    """A schema as the arbiter's server prints it: restored there by plain pg_dump | psql, then dumped.

    Across major versions the server's own deparser changes (view bodies, for one), so a target on a
    newer version is compared with what that version makes of the source's schema.
    """
    scratch = f"reference_{database}"
    arbiter.psql("-c", f"DROP DATABASE IF EXISTS {scratch}", "-c", f"CREATE DATABASE {scratch} TEMPLATE template0")
    # Without ON_ERROR_STOP: this build's pg_attver column option is refused by other servers, as it is
    # left out of the copy (and of the comparison) on purpose.
    subprocess.run([str(arbiter.bin_dir / "psql"), "-X", "-q", "-d", arbiter.admin_dsn(scratch)], input=dump,
                   capture_output=True, text=True, check=True)
    try:
        return schema_dump(arbiter, scratch, pg_dump)
    finally:
        arbiter.psql("-c", f"DROP DATABASE {scratch}")


def normalize(dump: str) -> list[str]:
    """Drop what differs between any two dumps (comments, psql's restrict keys, SETs) and the one option
    this build of PostgreSQL 15 adds to every column (pg_attver, unknown to other builds: left out on purpose)."""
    lines = []
    for line in dump.splitlines():
        if not line.strip() or line.startswith("--") or line.startswith("\\") or line.startswith("SET "):
            continue
        line = re.sub(r"pg_attver=[^,)]*(, )?", "", line)
        if re.search(r"ALTER COLUMN .* SET \(\);$", line):
            continue
        lines.append(line)
    return lines


def contents(cluster: PgCluster, database: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    with psycopg.connect(cluster.admin_dsn(database)) as conn:
        for schema, name, kind, populated in conn.execute(_RELATIONS).fetchall():
            ident = sql.Identifier(schema, name)
            if kind == "m" and not populated:
                found[f"{schema}.{name}"] = "not populated"
                continue
            found[f"{schema}.{name}"] = conn.execute(sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM ONLY {} t"
            ).format(ident)).fetchone()
        for schema, name in conn.execute(_SEQUENCES).fetchall():
            found[f"sequence {schema}.{name}"] = conn.execute(
                sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(schema, name))).fetchone()
        found["large objects"] = conn.execute(_LARGE_OBJECTS).fetchall()
    return found


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Human-readable differences between two snapshots {database: {"schema": [...], "contents": {...}}}."""
    problems = []
    for database in sorted(set(before) | set(after)):
        a, b = before.get(database), after.get(database)
        if a is None or b is None:
            problems.append(f"{database}: only on {'the target' if a is None else 'the source'}")
            continue
        if a["schema"] != b["schema"]:
            only_a = [ln for ln in a["schema"] if ln not in b["schema"]][:5]
            only_b = [ln for ln in b["schema"] if ln not in a["schema"]][:5]
            problems.append(f"{database}: schema differs; source only {only_a}, target only {only_b}")
        for key in sorted(set(a["contents"]) | set(b["contents"])):
            if a["contents"].get(key) != b["contents"].get(key):
                problems.append(f"{database}: {key}: {a['contents'].get(key)} != {b['contents'].get(key)}")
    return problems


def snapshot(cluster: PgCluster, databases: list[str], pg_dump: str) -> dict[str, Any]:
    return {db: {"schema": schema_dump(cluster, db, pg_dump), "contents": contents(cluster, db)} for db in databases}
