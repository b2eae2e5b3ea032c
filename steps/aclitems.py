"""Privileges recorded by role oid, so an unfreeze can put them back after a role was renamed or dropped.

The text of an ACL names roles, and a name that changed no longer parses; each item is kept as
(grantee oid, grantor oid, privilege letters) and rebuilt from today's names. The copy restores on
another server, where oids differ, so it keeps using the text.
"""

from __future__ import annotations

from typing import Any

import psycopg

from pgmove.state.models import AclItem

# aclexplode's privilege names -> the letters of an aclitem's text form (utils/acl.h ACL_*_CHR).
LETTERS = {"INSERT": "a", "SELECT": "r", "UPDATE": "w", "DELETE": "d", "TRUNCATE": "D", "REFERENCES": "x",
           "TRIGGER": "t", "EXECUTE": "X", "USAGE": "U", "CREATE": "C", "TEMPORARY": "T", "CONNECT": "c",
           "SET": "s", "ALTER SYSTEM": "A", "MAINTAIN": "m"}

def items(exploded: list[list[Any]] | None) -> list[AclItem] | None:
    """Group aclexplode's rows (grantee, grantor, privilege, grantable; one per privilege) into items, in order."""
    if exploded is None:
        return None
    found: dict[tuple[int, int], str] = {}
    for grantee, grantor, privilege, grantable in exploded:
        found[(grantee, grantor)] = found.get((grantee, grantor), "") + LETTERS[privilege] + ("*" if grantable else "")
    return [AclItem(grantee=grantee, grantor=grantor, privileges=letters) for (grantee, grantor), letters in found.items()]


def rebuild(conn: psycopg.Connection[Any], recorded: list[AclItem], roles: dict[int, str]) -> str | None:
    """The ACL's text with today's role names; items of roles that are gone are left out."""
    texts = []
    for item in recorded:
        grantee = "" if item.grantee == 0 else roles.get(item.grantee)
        grantor = roles.get(item.grantor)
        if grantee is None or grantor is None:
            continue
        texts.append(f"{_quoted(grantee) if grantee else ''}={item.privileges}/{_quoted(grantor)}")
    row = conn.execute("SELECT %s::text[]::aclitem[]::text", (texts,)).fetchone()
    return str(row[0]) if row else None


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
