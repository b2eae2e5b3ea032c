"""Which tables a database's publication can carry, which it cannot, and a fingerprint of the schema it carries.

A published table needs a replica identity the source can log for UPDATE and DELETE: its primary key, an
index marked REPLICA IDENTITY, or FULL. Without one the source itself refuses those statements once the
table is published, so such a table is left out (copied inside the freeze window) or set to FULL on request.
Unlogged tables write no WAL: replication never sees them, so they are always left out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.replication import KeylessTable, SyncDatabase
from pgmove.steps import guards

_TABLES = """
    SELECT n.nspname, c.relname, c.relpersistence = 'u', c.relreplident::text, pg_table_size(c.oid),
           EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident)
                   AND i.indisvalid),
           EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                   AND d.deptype = 'e'),
           EXISTS (SELECT 1 FROM pg_extension e WHERE c.oid = ANY(e.extconfig))
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', %s)
      AND n.nspname !~ '^pg_(toast|temp)'
    ORDER BY n.nspname, c.relname
"""

# Tables and their columns as a client sees them: a change here is DDL the subscription does not carry.
# Column order, not attnum (a copy has no dropped columns); extension tables are the extension's business.
_SHAPE = """
    SELECT n.nspname, c.relname, c.relkind::text,
           coalesce(string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                               || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY a.attnum), '')
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema', %s) AND n.nspname !~ '^pg_(toast|temp)'
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype = 'e')
    GROUP BY n.nspname, c.relname, c.relkind
    ORDER BY 1, 2
"""


# What replication carries exactly, per database: the tables the source's publication lists now, except those whose
# rows the target finds by equality of every column (REPLICA IDENTITY FULL without a primary key): that equality is
# looser than the row text the verification hashes (1.0 = 1.00, jsonb, -0 = 0), so an UPDATE or DELETE may hit another twin.
_PUBLISHED = """
    SELECT p.schemaname, p.tablename FROM pg_publication_tables p
    JOIN pg_namespace n ON n.nspname = p.schemaname JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename
    WHERE p.pubname = %s
      AND NOT (c.relreplident = 'f' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
"""
# A trigger enabled ALWAYS or REPLICA fires in the apply worker too: the source's firing arrives as its own change,
# and the target's firing writes once more.
_APPLY_TRIGGERS = "SELECT 1 FROM pg_trigger WHERE NOT tgisinternal AND tgenabled IN ('A', 'R') LIMIT 1"
# ... and that the subscription on the target applies (a table it does not know is skipped, silently).
_SUBSCRIBED = """
    SELECT n.nspname, c.relname FROM pg_subscription s JOIN pg_subscription_rel r ON r.srsubid = s.oid
    JOIN pg_class c ON c.oid = r.srrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE s.subname = %s AND r.srsubstate = 'r'
"""

@dataclass(frozen=True)
class Classified:
    publishable: list[tuple[str, str]]  # (schema, table) with a usable replica identity
    keyless: list[KeylessTable]  # logged, no usable identity
    unlogged: list[KeylessTable]
    extension_config: list[KeylessTable]  # an extension's configuration tables: copied like the offline copy does


def classify(conn: psycopg.Connection[Any], database: str) -> Classified:
    publishable: list[tuple[str, str]] = []
    keyless, unlogged, config = [], [], []
    for schema, name, is_unlogged, identity, size, has_key, member, is_config in conn.execute(
            _TABLES, (guards.SCHEMA,)).fetchall():
        table = KeylessTable(database=database, schema_name=schema, name=name, size_bytes=int(size),
                             identity=identity, unlogged=bool(is_unlogged))
        if member:
            if is_config:
                config.append(table)
            continue  # CREATE EXTENSION makes it on the target
        if is_unlogged:
            unlogged.append(table)
        elif identity == "f" or (identity in ("d", "i") and has_key):
            publishable.append((schema, name))
        else:
            keyless.append(table)
    return Classified(publishable, keyless, unlogged, config)


def fingerprint(conn: psycopg.Connection[Any]) -> str:
    """A hash of every user table's name, kind and columns (name, type, not null) in order."""
    digest = hashlib.sha256()
    for row in conn.execute(_SHAPE, (guards.SCHEMA,)).fetchall():
        digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()[:16]


def shape(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """table -> its columns: to name what differs when two fingerprints do."""
    return {f"{s}.{t}": cols for s, t, _, cols in conn.execute(_SHAPE, (guards.SCHEMA,)).fetchall()}


def set_identity(conn: psycopg.Connection[Any], table: KeylessTable, identity: str) -> None:
    """REPLICA IDENTITY FULL ('f'), back to DEFAULT ('d') or NOTHING ('n'); a table gone meanwhile is skipped."""
    clause = {"f": "FULL", "d": "DEFAULT", "n": "NOTHING"}[identity]
    if conn.execute("SELECT to_regclass(%s)", (sql.Identifier(table.schema_name, table.name).as_string(conn),)
                    ).fetchone() in (None, (None,)):
        return
    conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY {}").format(
        sql.Identifier(table.schema_name, table.name), sql.SQL(clause)))


def carried(s: psycopg.Connection[Any], d: psycopg.Connection[Any], entry: SyncDatabase) -> set[tuple[str, str]]:
    """The tables of one database whose every change replication carries exactly to the target: a match while in
    sync stays a match. Any other table (left out, made since the sync began, keyless) is hashed in the window;
    all of them where a trigger on the target fires for applied changes: what it writes, and where, is its own."""
    if d.execute(_APPLY_TRIGGERS).fetchone() is not None:
        return set()
    listed = {(r[0], r[1]) for r in s.execute(_PUBLISHED, (entry.publication,)).fetchall()}
    return listed & {(r[0], r[1]) for r in d.execute(_SUBSCRIBED, (entry.subscription,)).fetchall()}
