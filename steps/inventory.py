"""Object inventory of one database, source against target: what exists and how it is defined.

The freeze's own objects (schema, triggers, event trigger) are left out: the source carries them while
frozen and the target must not. NOT NULL is compared as part of each column: PostgreSQL 18 also
catalogs it as a constraint, older versions do not.

Objects that belong to an extension (pg_depend deptype 'e') are the extension's business: CREATE
EXTENSION on the target makes the version the target ships, whose members may differ (a view gaining
columns, a function gaining an argument) from a perfect copy's source. The extension itself is compared
by name and presence, and a version that differs is reported, not counted as a difference.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgmove.steps import guards

_USER = "n.nspname NOT IN ('pg_catalog', 'information_schema', %(freeze)s) AND n.nspname !~ '^pg_(toast|temp)'"


# Whether an object is an extension's member; each query names the checks it needs (_PARTS).
_MEMBER = ("EXISTS (SELECT 1 FROM pg_depend e WHERE e.deptype = 'e' AND e.classid = {catalog}::regclass "
           "AND e.objid = {oid})")


def _member(catalog: str, oid: str) -> sql.Composed:
    return sql.SQL(_MEMBER).format(catalog=sql.Literal(catalog), oid=sql.SQL(oid))


_QUERIES: dict[str, str] = {
    "schema": "SELECT n.nspname FROM pg_namespace n WHERE {user} AND NOT {schema_member}",
    "column": """
        SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.' || quote_ident(a.attname),
               format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped AND {user}
          AND NOT {class_member}""",
    "table": """SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relkind::text FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND {user}
                 AND NOT {class_member}""",
    "index": """
        SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN ''
               ELSE ' (INVALID)' END
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {user} AND NOT {class_member} AND NOT {table_member}""",
    "constraint": """
        SELECT quote_ident(n.nspname) || '.' || coalesce(quote_ident(r.relname) || '.', '') || quote_ident(k.conname),
               pg_get_constraintdef(k.oid) || CASE WHEN k.convalidated THEN '' ELSE ' (NOT VALID)' END
        FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace LEFT JOIN pg_class r ON r.oid = k.conrelid
        WHERE k.contype <> 'n' AND {user} AND NOT {constraint_member} AND NOT {constrained_member}
          AND NOT {domain_member}""",
    "function": """SELECT p.oid::regprocedure::text, p.prokind::text FROM pg_proc p
                    JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {user} AND NOT {function_member}""",
    "trigger": """
        SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.' || quote_ident(t.tgname), t.tgenabled::text FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND t.tgname <> %(guard)s AND {user} AND NOT {class_member}""",
    "event trigger": """SELECT evtname, evtevent FROM pg_event_trigger t WHERE evtname NOT IN (%(ddl_guard)s, %(new_tables)s)
                        AND NOT {event_member}""",
    "extension": "SELECT extname, extversion FROM pg_extension",
}
_PARTS = {
    "user": sql.SQL(_USER), "schema_member": _member("pg_namespace", "n.oid"), "class_member": _member("pg_class", "c.oid"),
    "table_member": _member("pg_class", "i.indrelid"), "constraint_member": _member("pg_constraint", "k.oid"),
    "constrained_member": _member("pg_class", "k.conrelid"), "domain_member": _member("pg_type", "k.contypid"),
    "function_member": _member("pg_proc", "p.oid"), "event_member": _member("pg_event_trigger", "t.oid"),
}
# The same "user objects only" predicate in every query, composed rather than pasted.
QUERIES: dict[str, sql.Composed] = {kind: sql.SQL(q).format(**{k: v for k, v in _PARTS.items() if "{" + k + "}" in q})
                                     for kind, q in _QUERIES.items()}
_PARAMS = {"freeze": guards.SCHEMA, "guard": guards.TABLE_TRIGGER, "ddl_guard": guards.EVENT_TRIGGER,
           "new_tables": guards.NEW_TABLE_TRIGGER}


def inventory(conn: psycopg.Connection[Any]) -> dict[str, dict[str, str]]:
    # One round trip for all kinds: inside a cutover window, on a busy server, each wait for a reply costs.
    with conn.pipeline():
        cursors = {kind: conn.execute(query, _PARAMS) for kind, query in QUERIES.items()}
    return {kind: {str(r[0]): (str(r[1]) if len(r) > 1 else "") for r in cur.fetchall()} for kind, cur in cursors.items()}


def compare(database: str, source: dict[str, dict[str, str]], target: dict[str, dict[str, str]],
            same_major: bool) -> tuple[list[str], list[str]]:
    """(problems, notes). Across major versions, definitions that the server prints differently are not compared."""
    problems, notes = [], []
    for kind in QUERIES:
        s, d = source.get(kind, {}), target.get(kind, {})
        for name in sorted(set(s) - set(d)):
            problems.append(f"{database}: {kind} {name} is missing on the target")
        for name in sorted(set(d) - set(s)):
            problems.append(f"{database}: {kind} {name} exists only on the target")
        for name in sorted(set(s) & set(d)):
            if s[name] == d[name]:
                continue
            if d[name].endswith("(INVALID)"):
                problems.append(f"{database}: {kind} {name} is invalid on the target")
            elif kind == "extension":
                notes.append(f"{database}: extension {name} is {s[name]} on the source, {d[name]} on the target")
            elif kind in ("index", "constraint") and not same_major:
                notes.append(f"{database}: {kind} {name} is printed differently by the target's version")
            else:
                problems.append(f"{database}: {kind} {name} differs: {s[name]!r} on the source, {d[name]!r} on the target")
    return problems, notes
