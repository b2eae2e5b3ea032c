"""The server's shared objects as a whole: its databases and roles, recorded when the freeze holds and compared later.

Event triggers do not fire for databases or roles, so the freeze's guards cannot stop a role that may
create databases or roles, or change its own password, from doing so. What cannot be stopped must be
seen: the record names every database (owner, encoding, template and connection flags, ACL), every role
(attributes, memberships) and, when the copy carries them, a digest of each password hash (never the
hash itself). Anything that differs later is a change made during the freeze and is named.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg

_DATABASES = """
    SELECT datname, pg_get_userbyid(datdba) || ' ' || pg_encoding_to_char(encoding) || ' template=' || datistemplate
           || ' allowconn=' || datallowconn || ' connlimit=' || datconnlimit || ' acl=' || coalesce(datacl::text, '-')
    FROM pg_database
"""
_ROLES = """
    SELECT rolname, concat_ws(' ', CASE WHEN rolsuper THEN 'SUPERUSER' END, CASE WHEN rolinherit THEN 'INHERIT' END,
                              CASE WHEN rolcreaterole THEN 'CREATEROLE' END, CASE WHEN rolcreatedb THEN 'CREATEDB' END,
                              CASE WHEN rolcanlogin THEN 'LOGIN' END, CASE WHEN rolreplication THEN 'REPLICATION' END,
                              CASE WHEN rolbypassrls THEN 'BYPASSRLS' END, 'CONNECTION LIMIT ' || rolconnlimit,
                              'VALID UNTIL ' || rolvaliduntil::text),
           rolpassword
    FROM pg_authid WHERE rolname !~ '^pg_'
"""
_MEMBERSHIPS = """
    SELECT m.rolname, r.rolname, am.admin_option FROM pg_auth_members am
    JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member
    WHERE r.rolname !~ '^pg_' OR m.rolname !~ '^pg_'
"""


def record(conn: psycopg.Connection[Any], with_passwords: bool) -> dict[str, str]:
    """What the server's shared objects are now, keyed by what each is ("database appdb", "role app", ...)."""
    found = {f"database {name}": str(what) for name, what in conn.execute(_DATABASES).fetchall()}
    for name, attributes, password in conn.execute(_ROLES).fetchall():
        found[f"role {name}"] = str(attributes)
        if with_passwords:
            # Equality is all that is needed: a short digest, so no hash that could be attacked leaves the server.
            found[f"password {name}"] = hashlib.sha256((password or "").encode()).hexdigest()[:12]
    for member, group, admin in conn.execute(_MEMBERSHIPS).fetchall():
        found[f"membership {member} in {group}"] = "with admin option" if admin else "member"
    return found


def changes(before: dict[str, str], now: dict[str, str]) -> list[str]:
    """Each shared object created, dropped or changed since `before`, named; a rename shows as both."""
    found = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key), now.get(key)
        if old == new:
            continue
        kind, _, name = key.partition(" ")
        if kind == "password":
            if old is not None and new is not None:
                found.append(f"the password of role {name} was changed")
            continue  # a role created or dropped is reported as such
        if old is None:
            found.append(f"{kind} {name} was created" if kind != "membership" else f"membership {name} was granted")
        elif new is None:
            found.append(f"{kind} {name} was dropped or renamed" if kind != "membership" else f"membership {name} was revoked")
        else:
            found.append(f"{kind} {name} was changed: {old} -> {new}")
    return found
