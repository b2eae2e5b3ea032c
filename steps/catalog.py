"""Catalog facts both preflight and copy need: which databases move and how each was created."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.models import DatabaseInfo

# `postgres` exists on every server; it moves only when asked for by name.
MAINTENANCE_DB = "postgres"


@dataclass(frozen=True)
class DatabaseDefinition:
    name: str
    owner: str
    encoding: str
    collate: str
    ctype: str
    locale_provider: str  # 'c' libc, 'i' icu, 'b' builtin
    icu_locale: str | None
    connection_limit: int
    comment: str | None


def list_databases(conn: psycopg.Connection[Any]) -> list[DatabaseInfo]:
    rows = conn.execute(
        """
        SELECT datname, pg_database_size(oid), pg_get_userbyid(datdba)
        FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY datname
        """
    ).fetchall()
    return [DatabaseInfo(name=n, size_bytes=s, owner=o) for n, s, o in rows]


def selected(all_dbs: list[DatabaseInfo], wanted: list[str] | None) -> list[DatabaseInfo]:
    if wanted is None:
        return [d for d in all_dbs if d.name != MAINTENANCE_DB]
    return [d for d in all_dbs if d.name in wanted]


def user_object_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        """
        SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
        """
    ).fetchone()
    return int(row[0]) if row else 0


def database_definition(conn: psycopg.Connection[Any], name: str) -> DatabaseDefinition:
    major = int(conn.info.server_version) // 10000
    # The locale columns moved between versions: datlocprovider (15+), daticulocale (15-16), datlocale (17+).
    provider = sql.Identifier("datlocprovider") if major >= 15 else sql.Literal("c")
    icu = sql.Identifier("datlocale" if major >= 17 else "daticulocale") if major >= 15 else sql.SQL("NULL")
    query = sql.SQL(
        """
        SELECT datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype,
               {provider}::text, {icu}, datconnlimit, shobj_description(oid, 'pg_database')
        FROM pg_database WHERE datname = %s
        """
    ).format(provider=provider, icu=icu)
    row = conn.execute(query, (name,)).fetchone()
    if row is None:
        raise LookupError(name)
    return DatabaseDefinition(*row)
