"""Large objects compared by content: count, size and a hash per object, oid range by oid range, in parallel.

A large object is stored in pages of LOBLKSIZE bytes at pageno * LOBLKSIZE. A page its writer never
touched is a hole that reads as zeros, and a copy written front to back stores those zeros, so a page of
zeros counts as a hole on both sides. An object's size comes from its last page; its hash is the sum of
its other pages' hashes (page number included), and its owner, ACL and comment are part of it. Like the
tables' sums these add up, so each oid range is summed in one query on each side, and only a range whose
sums differ is read again object by object, to name the objects that differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

CHUNK_OBJECTS = 1000  # objects per oid range
OID_END = 1 << 32

# One row per object in [low, high): size, content hash, and what else about it must match.
_PER_OBJECT = """
    SELECT m.oid::bigint AS oid,
           coalesce(max(p.pageno::bigint * (current_setting('block_size')::int / 4) + length(p.data)), 0) AS size,
           coalesce(sum(hashtextextended(p.pageno::text || ':' || encode(p.data, 'hex'), 0))
                    FILTER (WHERE btrim(p.data, '\\x00'::bytea) <> ''::bytea), 0) AS content,
           pg_get_userbyid(m.lomowner) AS owner, m.lomacl::text AS acl, obj_description(m.oid, 'pg_largeobject') AS comment
    FROM pg_largeobject_metadata m LEFT JOIN pg_largeobject p ON p.loid = m.oid
    WHERE m.oid::bigint >= %(low)s AND m.oid::bigint < %(high)s
    GROUP BY m.oid, m.lomowner, m.lomacl
"""
_RANGE_SUMS = sql.SQL("""
    SELECT count(*), coalesce(sum(size), 0),
           coalesce(sum(hashtextextended(oid || ':' || size || ':' || content || ':' || owner || ':'
                                         || coalesce(acl, '-') || ':' || coalesce(comment, '-'), 0)), 0)
    FROM ({per_object}) o
""").format(per_object=sql.SQL(_PER_OBJECT))


@dataclass(frozen=True)
class LoObject:
    size: int
    content: int
    owner: str
    acl: str | None
    comment: str | None


def ranges(conn: psycopg.Connection[Any]) -> list[tuple[int, int]]:
    """oid ranges of about CHUNK_OBJECTS source objects each, together covering every possible oid (so an
    object only the target has falls in one of them too)."""
    oids = [int(r[0]) for r in conn.execute("SELECT oid::bigint FROM pg_largeobject_metadata ORDER BY 1").fetchall()]
    bounds = [0, *oids[CHUNK_OBJECTS::CHUNK_OBJECTS], OID_END]
    return list(zip(bounds, bounds[1:], strict=False))


def range_sums(conn: psycopg.Connection[Any], low: int, high: int) -> tuple[int, int, int]:
    """(objects, bytes, hash) of one oid range."""
    row = conn.execute(_RANGE_SUMS, {"low": low, "high": high}).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def objects(conn: psycopg.Connection[Any], low: int, high: int) -> dict[int, LoObject]:
    rows = conn.execute(_PER_OBJECT, {"low": low, "high": high}).fetchall()
    return {int(oid): LoObject(int(size), int(content), owner, acl, comment) for oid, size, content, owner, acl, comment in rows}


def differences(source: dict[int, LoObject], target: dict[int, LoObject]) -> list[str]:
    """Each object that differs, named by oid, with what differs."""
    found = []
    for oid in sorted(set(source) | set(target)):
        s, d = source.get(oid), target.get(oid)
        if s == d:
            continue
        if d is None:
            found.append(f"large object {oid} is missing on the target")
        elif s is None:
            found.append(f"large object {oid} exists only on the target")
        elif s.size != d.size:
            found.append(f"large object {oid}: {s.size} bytes on the source, {d.size} on the target")
        elif s.content != d.content:
            found.append(f"large object {oid}: same size ({s.size} bytes), different content")
        else:
            what = [name for name, a, b in (("owner", s.owner, d.owner), ("ACL", s.acl, d.acl),
                                            ("comment", s.comment, d.comment)) if a != b]
            found.append(f"large object {oid}: {', '.join(what)} differ(s) on the target")
    return found
