"""Verification, first version: every database, table and role present, exact row counts, sequences not behind."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import sql

from state.models import FreezeSnapshot
from steps.connect import Endpoint, Progress, connection
from steps.settings import before_freeze, read_settings

_TABLES = """
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'm') AND c.relispopulated
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
    ORDER BY 1, 2
"""
_SEQUENCES = """
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2
"""


def run(
    src: Endpoint, dst: Endpoint, databases: list[str], snapshot: FreezeSnapshot | None, progress: Progress, jobs: int = 2
) -> dict[str, Any]:
    started = time.monotonic()
    problems: list[str] = []
    per_db: list[dict[str, Any]] = []
    with connection(src) as s, connection(dst) as d:
        problems += _compare_roles(s, d)
        problems += _compare_settings(s, d, snapshot, set(databases))
        present = {r[0] for r in d.execute("SELECT datname FROM pg_database").fetchall()}
    for name in databases:
        if name not in present:
            problems.append(f"database {name} is missing on {dst.name}")
            continue
        result = _verify_database(src, dst, name, jobs)
        per_db.append(result)
        problems += result["problems"]
        progress(f"{name}: {result['tables']} tables, {result['rows']} rows compared, "
                 f"{len(result['problems'])} difference(s)", database=name, rows=result["rows"])
    return {
        "ok": not problems, "problems": problems, "databases": per_db,
        "tables": sum(r["tables"] for r in per_db), "rows": sum(r["rows"] for r in per_db),
        "seconds": round(time.monotonic() - started, 2),
    }


def _verify_database(src: Endpoint, dst: Endpoint, name: str, jobs: int) -> dict[str, Any]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        left = pool.submit(_inventory, src, name, jobs)
        right = pool.submit(_inventory, dst, name, jobs)
        s_tables, s_seqs = left.result()
        d_tables, d_seqs = right.result()
    problems = []
    for table in sorted(set(s_tables) - set(d_tables)):
        problems.append(f"{name}: table {_q(table)} is missing on the target")
    for table in sorted(set(d_tables) - set(s_tables)):
        problems.append(f"{name}: table {_q(table)} exists only on the target")
    for table in sorted(set(s_tables) & set(d_tables)):
        if s_tables[table] != d_tables[table]:
            problems.append(f"{name}: {_q(table)} has {s_tables[table]} rows on the source, {d_tables[table]} on the target")
    for seq, value in sorted(s_seqs.items()):
        if seq not in d_seqs:
            problems.append(f"{name}: sequence {_q(seq)} is missing on the target")
        elif d_seqs[seq] < value:
            problems.append(f"{name}: sequence {_q(seq)} is behind on the target ({d_seqs[seq]} < {value})")
    counts = [{"table": _q(t), "source_rows": s_tables.get(t), "target_rows": d_tables.get(t)}
              for t in sorted(set(s_tables) | set(d_tables))]
    return {"database": name, "tables": len(s_tables), "rows": sum(s_tables.values()),
            "sequences": len(s_seqs), "problems": problems, "table_counts": counts}


Name = tuple[str, ...]


def _inventory(ep: Endpoint, name: str, jobs: int) -> tuple[dict[Name, int], dict[Name, int]]:
    with connection(ep, name) as conn:
        tables: list[Name] = [tuple(r) for r in conn.execute(_TABLES).fetchall()]
        sequences: dict[Name, int] = {tuple(r): _next_value(conn, tuple(r)) for r in conn.execute(_SEQUENCES).fetchall()}
    chunks = [tables[i::jobs] for i in range(max(1, jobs))]
    counts: dict[Name, int] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for part in pool.map(lambda c: _count(ep, name, c), chunks):
            counts.update(part)
    return counts, sequences


def _count(ep: Endpoint, name: str, tables: list[Name]) -> dict[Name, int]:
    if not tables:
        return {}
    with connection(ep, name) as conn:
        conn.execute("SET default_transaction_read_only = on")
        return {
            t: int(conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(sql.Identifier(*t))).fetchone()[0])  # type: ignore[index]
            for t in tables
        }


def _next_value(conn: psycopg.Connection[Any], seq: Name) -> int:
    """The value nextval() would return next, which is what 'not behind' must compare."""
    row = conn.execute(
        sql.SQL("SELECT last_value, is_called FROM {}").format(sql.Identifier(*seq))
    ).fetchone()
    assert row is not None
    last_value, is_called = row
    return int(last_value) + (1 if is_called else 0)


def _compare_roles(s: psycopg.Connection[Any], d: psycopg.Connection[Any]) -> list[str]:
    query = "SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_'"
    missing = {r[0] for r in s.execute(query).fetchall()} - {r[0] for r in d.execute(query).fetchall()}
    return [f"role {r} is missing on the target" for r in sorted(missing)]


def _compare_settings(
    s: psycopg.Connection[Any], d: psycopg.Connection[Any], snapshot: FreezeSnapshot | None, databases: set[str]
) -> list[str]:
    def key(rows: Any) -> dict[tuple[str | None, str | None, str], str | None]:
        return {(r.database, r.role, r.name): r.value for r in rows if r.database is None or r.database in databases}

    expected, actual = key(before_freeze(read_settings(s), snapshot)), key(read_settings(d))
    problems = []
    # Target-only settings outside the moved databases belong to the target's own admins.
    keys = set(expected) | {k for k in actual if k[0] in databases}
    for k in sorted(keys, key=lambda k: tuple(x or "" for x in k)):
        if expected.get(k) != actual.get(k):
            where = " ".join(filter(None, [f"database {k[0]}" if k[0] else None, f"role {k[1]}" if k[1] else None])) or "server-wide"
            problems.append(f"setting {k[2]} ({where}) is {actual.get(k)!r} on the target, {expected.get(k)!r} before the freeze")
    return problems


def _q(name: tuple[str, ...]) -> str:
    return ".".join(name)
