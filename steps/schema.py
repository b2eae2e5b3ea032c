"""A database's schema, in pg_dump's own words: dumped once without data, restored in pieces around the data.

pre-data goes first (through a filter, in one transaction); each plain table's indexes and key
constraints are handed out one by one so they can be built in parallel as soon as that table's data
is in; the rest of post-data (foreign keys, triggers, attachments, rules, policies) is restored by
pg_restore -j once every table is in. Every piece is pg_dump's text, so what the target gets is what
pg_restore would have given it, only in a different order.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from pgmove.state.errors import StepFailed
from pgmove.steps import guards
from pgmove.steps.connect import Endpoint
from pgmove.steps.tools import ToolSet, file_name, psql_path, run_tool

_TOC_LINE = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
_ENTRY_HEADER = re.compile(r"^--\n-- TOC entry (\d+) \(class \d+ OID \d+\)\n", re.MULTILINE)
_SESSION_DEFAULT = re.compile(r"^SET default_(tablespace|table_access_method) = .*;$")
PG_CLASS, PG_CONSTRAINT = 1259, 2606


@dataclass(frozen=True)
class TableItem:
    """One index or key constraint of a plain table, with the SQL pg_dump wrote for it."""

    key: str  # stable across attempts: the source catalog's identity of the object
    table_oid: int
    name: str
    sql: str


@dataclass
class Schema:
    archive: str
    listing: list[str]  # the archive's table of contents without the freeze's guards
    table_items: dict[int, list[TableItem]]  # source table oid -> its indexes and key constraints

    def remainder_listing(self) -> list[str]:
        handed_out = {item.key for items in self.table_items.values() for item in items}
        return [line for line in self.listing if _item_key(line) not in handed_out]


def dump(src: Endpoint, database: str, toolset: ToolSet, staging: str, should_stop: Callable[[], bool]) -> str:
    """pre-data and post-data of one database, no data: small, so it may be a file."""
    archive = os.path.join(staging, f"{file_name(database)}.schema")
    # No statistics (pg_dump 18+ dumps them by default): ANALYZE rebuilds them from the target's data.
    no_stats = ["--no-statistics"] if toolset.major >= 18 else []
    # Large objects are pgmove's to copy (steps/objects.py); up to pg_dump 16 their creation is pre-data, one lock
    # each in the one transaction that restores it, and a few thousand of them exhaust the target's lock table.
    no_large_objects = "--no-large-objects" if toolset.major >= 16 else "--no-blobs"
    run_tool([toolset.path("pg_dump"), "--format=custom", "--section=pre-data", "--section=post-data", "--no-sync",
              no_large_objects, *no_stats, f"--file={archive}", f"--dbname={src.conninfo(database)}"],
             src.tool_env(dict(os.environ)), should_stop=should_stop)
    return archive


def load(archive: str, toolset: ToolSet, src_conn: psycopg.Connection[Any], env: dict[str, str]) -> Schema:
    listing = _listing(archive, toolset, env)
    wanted = _table_items(src_conn, listing)
    texts = _entry_texts(archive, toolset, env, [line for line in listing if _item_key(line) in wanted], wanted)
    items: dict[int, list[TableItem]] = {}
    for key, (table_oid, name) in wanted.items():
        items.setdefault(table_oid, []).append(TableItem(key, table_oid, name, texts[key]))
    return Schema(archive, listing, items)


def restore_pre_data(schema: Schema, toolset: ToolSet, dst: Endpoint, database: str, staging: str,
                     should_stop: Callable[[], bool], cross_version: bool = False) -> set[str]:
    """Restore pre-data in one transaction; returns the column options left out (unknown to the target).

    Only a move across major versions filters anything, and only the table definitions: the rest of the
    script (function bodies, comments, string literals) is pg_dump's text, restored as it was written."""
    env = dst.tool_env(dict(os.environ))
    listing = _write_listing(staging, f"{file_name(database)}.all.list", schema.listing)
    script = os.path.join(staging, f"{file_name(database)}.pre-data.sql")
    verbose = ["--verbose"] if cross_version else []  # TOC entry headers: where each table's definition starts
    run_tool([toolset.path("pg_restore"), *verbose, "--section=pre-data", f"--use-list={listing}", f"--file={script}",
              schema.archive], env, should_stop=should_stop)
    dropped = _keep_known_column_options(script, _table_entries(schema.listing)) if cross_version else set()
    run_tool([psql_path(toolset), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
              f"--dbname={dst.conninfo(database)}", f"--file={script}"], env, should_stop=should_stop)
    return dropped


def restore_remainder(schema: Schema, toolset: ToolSet, dst: Endpoint, database: str, staging: str, jobs: int,
                      should_stop: Callable[[], bool]) -> None:
    """post-data minus what was built table by table: foreign keys, triggers, rules, attachments, policies."""
    listing = _write_listing(staging, f"{file_name(database)}.post.list", schema.remainder_listing())
    run_tool([toolset.path("pg_restore"), "--exit-on-error", "--no-password", "--section=post-data",
              f"--jobs={max(1, jobs)}", f"--use-list={listing}", f"--dbname={dst.conninfo(database)}", schema.archive],
             dst.tool_env(dict(os.environ)), should_stop=should_stop)


def _listing(archive: str, toolset: ToolSet, env: dict[str, str]) -> list[str]:
    done = subprocess.run([toolset.path("pg_restore"), "--list", archive], capture_output=True, text=True, env=env,
                          check=False)
    if done.returncode != 0:
        raise StepFailed(f"pg_restore could not read the schema dump {archive}: {done.stderr.strip()[-300:]}")
    return [line for line in done.stdout.splitlines()
            if line and not line.startswith(";") and not guards.RESTORE_EXCLUDE.match(line)]


def _item_key(line: str) -> str | None:
    match = _TOC_LINE.match(line)
    if not match or int(match.group(2)) not in (PG_CLASS, PG_CONSTRAINT):
        return None
    kind = match.group(4)
    if not (kind.startswith("INDEX ") or kind.startswith("CONSTRAINT ")) or kind.startswith("INDEX ATTACH"):
        return None
    return f"{match.group(2)}:{match.group(3)}"


# Indexes of plain tables (partitions included) and their primary key, unique and exclusion constraints.
# Partitioned parents' indexes stay in post-data: they attach to the partitions' indexes built before them.
_ITEMS = """
    SELECT 1259, i.indexrelid, i.indrelid, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_class t ON t.oid = i.indrelid
    WHERE i.indexrelid = ANY(%(indexes)s) AND t.relkind = 'r'
    UNION ALL
    SELECT 2606, k.oid, k.conrelid, k.conname FROM pg_constraint k JOIN pg_class t ON t.oid = k.conrelid
    WHERE k.oid = ANY(%(constraints)s) AND k.contype IN ('p', 'u', 'x') AND t.relkind = 'r'
"""


def _table_items(conn: psycopg.Connection[Any], listing: list[str]) -> dict[str, tuple[int, str]]:
    keys = [k for k in map(_item_key, listing) if k]
    indexes = [int(k.split(":")[1]) for k in keys if k.startswith(f"{PG_CLASS}:")]
    constraints = [int(k.split(":")[1]) for k in keys if k.startswith(f"{PG_CONSTRAINT}:")]
    rows = conn.execute(_ITEMS, {"indexes": indexes, "constraints": constraints}).fetchall()
    return {f"{kind}:{oid}": (int(table), str(name)) for kind, oid, table, name in rows}


def _entry_texts(archive: str, toolset: ToolSet, env: dict[str, str], lines: list[str],
                 wanted: dict[str, tuple[int, str]]) -> dict[str, str]:
    """The SQL of each listed entry, cut out of one verbose pg_restore script at its TOC entry header."""
    if not lines:
        return {}
    by_dump_id = {int(line.split(";")[0]): _item_key(line) for line in lines}
    listing = "\n".join(lines) + "\n"
    done = subprocess.run([toolset.path("pg_restore"), "--verbose", "--use-list=/dev/stdin", "--file=-", archive],
                          input=listing, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise StepFailed(f"pg_restore could not print the index definitions: {done.stderr.strip()[-300:]}")
    script = done.stdout
    headers = list(_ENTRY_HEADER.finditer(script))
    texts: dict[str, str] = {}
    carried: list[str] = []  # SET default_tablespace etc. printed before an entry's header belong to that entry
    for n, header in enumerate(headers):
        end = headers[n + 1].start() if n + 1 < len(headers) else len(script)
        statements, trailing = _statements(script[header.end():end])
        key = by_dump_id.get(int(header.group(1)))
        if key is not None:
            texts[key] = "\n".join([*carried, statements])
        carried = trailing or carried
    missing = set(wanted) - set(texts)
    if missing:
        raise StepFailed(f"pg_restore printed no definition for {len(missing)} index(es), e.g. {sorted(missing)[0]}")
    return texts


def _statements(chunk: str) -> tuple[str, list[str]]:
    """An entry's SQL without comments or psql commands, and the session defaults printed after it."""
    lines = [ln for ln in chunk.splitlines() if not ln.startswith("--") and not ln.startswith("\\")]
    trailing: list[str] = []
    while lines and (not lines[-1].strip() or _SESSION_DEFAULT.match(lines[-1])):
        line = lines.pop()
        if line.strip():
            trailing.insert(0, line)
    return "\n".join(lines).strip(), trailing


def _write_listing(staging: str, name: str, lines: list[str]) -> str:
    path = os.path.join(staging, name)
    with open(path, "w") as out:
        out.write("\n".join(lines) + "\n")
    return path


# The column options every supported PostgreSQL knows (ALTER TABLE ... ALTER COLUMN ... SET (...)).
KNOWN_COLUMN_OPTIONS = frozenset({"n_distinct", "n_distinct_inherited"})
_IDENT = r'(?:"(?:[^"]|"")*"|[^\s."(;]+)'  # a quoted identifier may hold newlines: match the whole statement
_COLUMN_OPTIONS = re.compile(
    rf"^(ALTER (?:FOREIGN )?TABLE ONLY {_IDENT}(?:\.{_IDENT})? ALTER COLUMN {_IDENT} SET \()([^)\n]*)(\);)\n", re.M)


_RELATIONS = ("TABLE ", "FOREIGN TABLE ", "MATERIALIZED VIEW ", "VIEW ")  # whose definitions carry column options


def _table_entries(listing: list[str]) -> list[tuple[int, bool]]:
    """(dump id, is a relation's definition) for each listed entry."""
    found = []
    for line in listing:
        match = _TOC_LINE.match(line)
        if match:
            kind = match.group(4)
            found.append((int(match.group(1)), int(match.group(2)) == PG_CLASS and kind.startswith(_RELATIONS)))
    return found


def _keep_known_column_options(path: str, entries: list[tuple[int, bool]]) -> set[str]:
    """Rewrite the table definitions of a verbose pre-data script keeping only known column options; returns the
    names left out. A script whose entry headers are not the listing's, each once (a header's text inside a
    function body, say), is left as it is: user text is never rewritten on a guess."""
    dropped: set[str] = set()

    def keep_known(match: re.Match[str]) -> str:
        options = [o.strip() for o in match.group(2).split(",") if o.strip()]
        names = {o.split("=", 1)[0].strip() for o in options}
        dropped.update(names - KNOWN_COLUMN_OPTIONS)
        known = [o for o in options if o.split("=", 1)[0].strip() in KNOWN_COLUMN_OPTIONS]
        return f"{match.group(1)}{', '.join(known)}{match.group(3)}\n" if known else ""

    with open(path) as script:
        text = script.read()
    headers = list(_ENTRY_HEADER.finditer(text))
    tables = {dump_id for dump_id, is_table in entries if is_table}
    seen = [int(h.group(1)) for h in headers]
    if len(set(seen)) != len(seen) or not set(seen) <= {dump_id for dump_id, _ in entries}:
        return dropped
    pieces = [text[:headers[0].start()] if headers else text]
    for n, header in enumerate(headers):
        entry = text[header.start():headers[n + 1].start() if n + 1 < len(headers) else len(text)]
        pieces.append(_COLUMN_OPTIONS.sub(keep_known, entry) if int(header.group(1)) in tables else entry)
    with open(path, "w") as script:
        script.write("".join(pieces))
    return dropped
