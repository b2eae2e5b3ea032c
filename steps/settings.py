"""Per-database and per-role settings (pg_db_role_setting): reading them and writing them back exactly."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.models import FreezeSnapshot, SettingRow

# Settings whose value is a list: pg_dump writes each element as its own literal (makeAlterConfigCommand).
LIST_SETTINGS = frozenset(
    {"search_path", "temp_tablespaces", "session_preload_libraries", "shared_preload_libraries",
     "local_preload_libraries", "unix_socket_directories"}
)


def read_settings(conn: psycopg.Connection[Any]) -> list[SettingRow]:
    """Every (database, role, name, value) row of pg_db_role_setting, as names rather than OIDs."""
    rows = conn.execute(
        """
        SELECT d.datname, r.rolname, s.setconfig
        FROM pg_db_role_setting s
        LEFT JOIN pg_database d ON d.oid = s.setdatabase
        LEFT JOIN pg_roles r ON r.oid = s.setrole
        WHERE (s.setdatabase = 0 OR d.oid IS NOT NULL) AND (s.setrole = 0 OR r.oid IS NOT NULL)
        """
    ).fetchall()
    found = []
    for database, role, config in rows:
        for item in config or []:
            name, _, value = item.partition("=")
            found.append(SettingRow(database=database, role=role, name=name, value=value))
    return found


def before_freeze(live: Iterable[SettingRow], snapshot: FreezeSnapshot | None) -> list[SettingRow]:
    """The settings as they were before pgmove's freeze: what the copy must carry, and nothing of the freeze."""
    if snapshot is None:
        return list(live)
    touched = {(s.database, s.role, s.name): s for s in snapshot.settings}
    kept = [s for s in live if (s.database, s.role, s.name) not in touched]
    kept += [s for s in snapshot.settings if s.value is not None]
    return sorted(kept, key=lambda s: (s.database or "", s.role or "", s.name))


def split_list_value(value: str) -> list[str]:
    """Split a stored list setting ('"$user", public') into its elements, as the server's SplitGUCList does."""
    items, current, quoted, i = [], "", False, 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == '"' and value[i + 1 : i + 2] == '"':
                current += '"'
                i += 1
            elif ch == '"':
                quoted = False
            else:
                current += ch
        elif ch == '"':
            quoted = True
        elif ch == ",":
            items.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    if current.strip() or items:
        items.append(current.strip())
    return items


def set_statement(row: SettingRow, value: str | None) -> sql.Composed:
    """ALTER DATABASE / ALTER ROLE [IN DATABASE] ... SET name = value, or RESET name when value is None."""
    if row.role is None and row.database is not None:
        target = sql.SQL("ALTER DATABASE {}").format(sql.Identifier(row.database))
    else:
        role = sql.Identifier(row.role) if row.role else sql.SQL("ALL")
        target = sql.SQL("ALTER ROLE {}").format(role)
        if row.database is not None:
            target = sql.SQL("{} IN DATABASE {}").format(target, sql.Identifier(row.database))
    name = sql.Identifier(row.name)
    if value is None:
        return sql.SQL("{} RESET {}").format(target, name)
    literal: sql.Composable
    if row.name in LIST_SETTINGS:
        literal = sql.SQL(", ").join(sql.Literal(v) for v in split_list_value(value))
    else:
        literal = sql.Literal(value)
    return sql.SQL("{} SET {} = {}").format(target, name, literal)
