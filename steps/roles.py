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
               rolbypassrls, rolconnlimit, rolvaliduntil::text AS rolvaliduntil, rolpassword, shobj_description(oid, 'pg_authid')
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
    src: psycopg.Connection[Any], dst: psycopg.Connection[Any], before_freeze: dict[str, dict[str, bool]],
    with_passwords: bool = True,
) -> dict[str, list[str]]:
    """Create on the target every source role it lacks, reconcile the ones it has, then grant missing memberships.

    `before_freeze` holds the attributes a freeze took (LOGIN in no-connect mode, CREATEDB, CREATEROLE),
    as they were: the target gets those, never the frozen ones.
    `with_passwords=False` (managed targets, or teams that reset passwords on the way) leaves hashes out.

    A role that already exists on the target gets the source's attributes but keeps its password, and
    the role pgmove logs in with is left alone: overwriting either could lock us (or the target's
    admins) out. What the target refuses (SUPERUSER on a managed service, say) is reported, not fatal.
    """
    existing = {r[0] for r in dst.execute("SELECT rolname FROM pg_roles").fetchall()}
    myself = dst.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
    created, kept, reconciled, refused = [], [], [], []
    for role in source_roles(src):
        name = role["rolname"]
        role.update(before_freeze.get(name, {}))
        if not with_passwords:
            role["rolpassword"] = None
        if name in existing:
            kept.append(name)
            if name != myself:
                try:
                    with dst.transaction():
                        dst.execute(_alter_role(role))
                    reconciled.append(name)
                except psycopg.Error as exc:
                    refused.append(f"{name}: {str(exc).strip().splitlines()[0]}")
            continue
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
    return {"created": created, "kept": kept, "reconciled": reconciled, "not_reconciled": refused,
            "memberships_granted": granted, "passwords": ["copied" if with_passwords else "left out"]}


def _alter_role(role: dict[str, Any]) -> sql.Composed:
    """The source's attributes on an existing role; its password stays the target's."""
    parts: list[sql.Composable] = [sql.SQL(on if role[col] else off) for col, on, off in _ATTRIBUTES]
    parts.append(sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(role["rolconnlimit"])))
    if role["rolvaliduntil"] is not None:  # as text: 'infinity' is a valid value no Python datetime holds
        parts.append(sql.SQL("VALID UNTIL {}").format(sql.Literal(role["rolvaliduntil"])))
    return sql.SQL("ALTER ROLE {} WITH {}").format(sql.Identifier(role["rolname"]), sql.SQL(" ").join(parts))


def _create_role(role: dict[str, Any]) -> sql.Composed:
    parts: list[sql.Composable] = [sql.SQL(on if role[col] else off) for col, on, off in _ATTRIBUTES]
    parts.append(sql.SQL("CONNECTION LIMIT {}").format(sql.Literal(role["rolconnlimit"])))
    if role["rolvaliduntil"] is not None:
        parts.append(sql.SQL("VALID UNTIL {}").format(sql.Literal(role["rolvaliduntil"])))
    if role["rolpassword"]:
        # The hash moves as is (SCRAM or md5): the app keeps its password, nobody sees it.
        parts.append(sql.SQL("PASSWORD {}").format(sql.Literal(role["rolpassword"])))
    return sql.SQL("CREATE ROLE {} WITH {}").format(sql.Identifier(role["rolname"]), sql.SQL(" ").join(parts))
