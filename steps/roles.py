"""Roles and memberships, read from the source catalog and created on the target (existing ones kept)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

_ATTRIBUTES = [
    ("rolsuper", "SUPERUSER", "NOSUPERUSER"),
    ("rolinherit", "INHERIT", "NOINHERIT"),
    ("rolcreaterole", "CREATEROLE", "NOCREATEROLE"),
    ("rolcreatedb", "CREATEDB", "NOCREATEDB"),
    ("rolcanlogin", "LOGIN", "NOLOGIN"),
    ("rolreplication", "REPLICATION", "NOREPLICATION"),
    ("rolbypassrls", "BYPASSRLS", "NOBYPASSRLS"),
]


def source_roles(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every non-system role with its attributes. Password hashes are read but never logged or stored."""
    cur = conn.execute(
        """
        SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,
               rolbypassrls, rolconnlimit, rolvaliduntil, rolpassword, shobj_description(oid, 'pg_authid')
        FROM pg_authid WHERE rolname !~ '^pg_' ORDER BY rolname
        """
    )
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def memberships(conn: psycopg.Connection[Any]) -> set[tuple[str, str, bool]]:
    rows = conn.execute(
        """
        SELECT r.rolname, m.rolname, am.admin_option FROM pg_auth_members am
        JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
        WHERE r.rolname !~ '^pg_' OR m.rolname !~ '^pg_'
        """
    ).fetchall()
    return {(role, member, bool(admin)) for role, member, admin in rows}


def copy_roles(
    src: psycopg.Connection[Any], dst: psycopg.Connection[Any], logins_before_freeze: set[str]
) -> dict[str, list[str]]:
    """Create on the target every source role it lacks, then the memberships it lacks.

    `logins_before_freeze` are roles a no-connect freeze turned NOLOGIN: they get LOGIN back on the target.

    A role that already exists on the target is kept as it is: it may be the very role pgmove logs in
    with there, and overwriting its password would lock us (or the target's admins) out.
    """
    existing = {r[0] for r in dst.execute("SELECT rolname FROM pg_roles").fetchall()}
    created, kept = [], []
    for role in source_roles(src):
        name = role["rolname"]
        if name in existing:
            kept.append(name)
            continue
        if name in logins_before_freeze:
            role["rolcanlogin"] = True
        dst.execute(_create_role(role))
        if role["shobj_description"]:
            dst.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(name), sql.Literal(role["shobj_description"])))
        created.append(name)
    target_members = memberships(dst)
    granted = []
    for group, member, admin in sorted(memberships(src)):
        if (group, member, admin) in target_members or (group, member, True) in target_members:
            continue
        statement = sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(member))
        if admin:
            statement = sql.SQL("{} WITH ADMIN OPTION").format(statement)
        dst.execute(statement)
        granted.append(f"{group} to {member}")
    return {"created": created, "kept": kept, "memberships_granted": granted}


def _create_role(role: dict[str, Any]) -> sql.Composed:
    parts: list[sql.Composable] = [sql.SQL(on if role[col] else off) for col, on, off in _ATTRIBUTES]
    parts.append(sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(role["rolconnlimit"])))
    if role["rolvaliduntil"] is not None:
        parts.append(sql.SQL("VALID UNTIL {}").format(sql.Literal(role["rolvaliduntil"].isoformat())))
    if role["rolpassword"]:
        # The hash moves as is (SCRAM or md5): the app keeps its password, nobody sees it.
        parts.append(sql.SQL("PASSWORD {}").format(sql.Literal(role["rolpassword"])))
    return sql.SQL("CREATE ROLE {} WITH {}").format(sql.Identifier(role["rolname"]), sql.SQL(" ").join(parts))
