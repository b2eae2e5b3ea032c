"""Role attributes the freeze takes away and gives back exactly, and the names of things by oid.

No event trigger fires for databases or roles, so a role with CREATEDB could create (and write into)
a database no guard knows of, and one with CREATEROLE could create, rename or re-password roles. The
freeze takes both from every non-superuser role but pgmove's own. Everything is recorded with its
oid: unfreeze restores a role or database renamed meanwhile under its new name and reports one dropped.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.models import FreezeSnapshot, RoleGrant

_GRANTS = """
    SELECT oid::bigint, rolname, rolcreatedb, rolcreaterole FROM pg_roles
    WHERE (rolcreatedb OR rolcreaterole) AND NOT rolsuper AND rolname <> session_user ORDER BY rolname
"""


def capture_grants(conn: psycopg.Connection[Any]) -> list[RoleGrant]:
    return [RoleGrant(oid=oid, name=name, createdb=db, createrole=role)
            for oid, name, db, role in conn.execute(_GRANTS).fetchall()]


def oids(conn: psycopg.Connection[Any], kind: str, names: set[str]) -> dict[str, int]:
    """Name -> oid for the roles (kind 'role') or databases named in a snapshot."""
    query = ("SELECT rolname, oid::bigint FROM pg_roles WHERE rolname = ANY(%s)" if kind == "role"
             else "SELECT datname, oid::bigint FROM pg_database WHERE datname = ANY(%s)")
    return {name: oid for name, oid in conn.execute(query, (sorted(names),)).fetchall()}


def take_grants(conn: psycopg.Connection[Any], grants: list[RoleGrant]) -> None:
    for grant in grants:
        conn.execute(sql.SQL("ALTER ROLE {} NOCREATEDB NOCREATEROLE").format(sql.Identifier(grant.name)))


class Names:
    """Today's names of what the snapshot named at freeze time, found by oid; None for what is gone."""

    def __init__(self, conn: psycopg.Connection[Any], snapshot: FreezeSnapshot) -> None:
        self.snapshot = snapshot
        self.roles = {oid: name for oid, name in conn.execute("SELECT oid::bigint, rolname FROM pg_roles").fetchall()}
        self.databases = {oid: name for oid, name in conn.execute(
            "SELECT oid::bigint, datname FROM pg_database").fetchall()}
        self.changes: list[str] = []

    def role(self, name: str, oid: int | None = None) -> str | None:
        oid = oid if oid is not None else self.snapshot.role_oids.get(name)
        return self._now("role", name, oid, self.roles)

    def database(self, name: str, oid: int | None = None) -> str | None:
        oid = oid if oid is not None else self.snapshot.database_oids.get(name)
        return self._now("database", name, oid, self.databases)

    def _now(self, kind: str, name: str, oid: int | None, current: dict[int, str]) -> str | None:
        if oid is None:  # a record from before oids were kept: the name is all there is
            found: str | None = name if name in current.values() else None
        else:
            found = current.get(oid)
        note = (f"{kind} {name} was dropped during the freeze: what the freeze changed on it is gone with it"
                if found is None else f"{kind} {name} was renamed to {found} during the freeze: restored under its new name"
                if found != name else None)
        if note and note not in self.changes:
            self.changes.append(note)
        return found


def give_back(conn: psycopg.Connection[Any], snapshot: FreezeSnapshot, names: Names) -> None:
    """LOGIN (no-connect mode) and CREATEDB/CREATEROLE, exactly as they were, on whatever the roles are called now."""
    for role in snapshot.logins:
        current = names.role(role)
        if current is not None:
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(current)))
    for grant in snapshot.role_grants:
        current = names.role(grant.name, grant.oid)
        if current is None:
            continue
        conn.execute(sql.SQL("ALTER ROLE {} {} {}").format(
            sql.Identifier(current), sql.SQL("CREATEDB" if grant.createdb else "NOCREATEDB"),
            sql.SQL("CREATEROLE" if grant.createrole else "NOCREATEROLE")))


def before_freeze(snapshot: FreezeSnapshot | None) -> dict[str, dict[str, bool]]:
    """Role name -> the attributes the freeze took from it, as they were: what the copy and verification must carry."""
    found: dict[str, dict[str, bool]] = {}
    if snapshot is None:
        return found
    for role in snapshot.logins:
        found.setdefault(role, {})["rolcanlogin"] = True
    for grant in snapshot.role_grants:
        found.setdefault(grant.name, {}).update(rolcreatedb=grant.createdb, rolcreaterole=grant.createrole)
    return found
