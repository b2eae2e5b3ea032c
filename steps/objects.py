"""The data that does not live in tables (sequence positions, large objects, materialized views) and
the statistics of what ANALYZE on a plain table does not cover (partitioned and inheritance parents)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

LO_CHUNK = 1 << 20

_SEQUENCES = """
    SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
"""


def copy_sequences(src: psycopg.Connection[Any], dst: psycopg.Connection[Any]) -> int:
    """Every sequence's position, is_called included (nextval's next answer is the source's)."""
    count = 0
    for schema, name in src.execute(_SEQUENCES).fetchall():
        ident = sql.Identifier(schema, name)
        row = src.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(ident)).fetchone()
        assert row is not None
        dst.execute("SELECT pg_catalog.setval(%s::regclass, %s, %s)", (ident.as_string(dst), row[0], row[1]))
        count += 1
    return count


# Objects of up to this many pages (LOBLKSIZE, 2 kB by default) travel whole, many to a transaction and
# pipelined: 100,000 small objects cost a few hundred round trips, not a million. Bigger ones stream.
SMALL_LO_PAGES = 512
SMALL_LO_BATCH_BYTES = 16 << 20
SMALL_LO_BATCH_OBJECTS = 200  # a lock each until the batch commits: well inside the target's shared lock table
_LARGE_OBJECTS = """
    SELECT m.oid, pg_get_userbyid(m.lomowner), m.lomacl::text, obj_description(m.oid, 'pg_largeobject'),
           (SELECT coalesce(max(p.pageno), -1) FROM pg_largeobject p WHERE p.loid = m.oid)
    FROM pg_largeobject_metadata m WHERE m.oid::bigint >= %s AND m.oid::bigint < %s ORDER BY m.oid
"""


def copy_large_objects(src: psycopg.Connection[Any], dst: psycopg.Connection[Any], low: int = 0,
                       high: int = 1 << 32) -> tuple[int, int]:
    """The large objects with oids in [low, high): each with its owner, ACL and comment, and its bytes.

    Done here rather than by pg_dump: a dump without its data section leaves large objects out
    altogether from pg_dump 17 on, and the bytes must stream anyway.
    """
    objects, total = 0, 0
    small: list[tuple[Any, ...]] = []
    for oid, owner, acl, comment, last_page in src.execute(_LARGE_OBJECTS, (low, high)).fetchall():
        if last_page < SMALL_LO_PAGES:
            small.append((oid, owner, acl, comment, last_page))
            if sum(r[4] + 1 for r in small) * 2048 >= SMALL_LO_BATCH_BYTES or len(small) >= SMALL_LO_BATCH_OBJECTS:
                total += _copy_small(src, dst, small)
                small = []
        else:
            total += _copy_streamed(src, dst, oid, owner, acl, comment)
        objects += 1
    if small:
        total += _copy_small(src, dst, small)
    return objects, total


def _copy_small(src: psycopg.Connection[Any], dst: psycopg.Connection[Any], batch: list[tuple[Any, ...]]) -> int:
    """One transaction for a batch of small objects read whole in one query: created through one prepared
    statement, then, pipelined, an owner where it is not pgmove's and ACLs and comments where there are any.
    An object an earlier attempt left is replaced. (Created as pgmove, not as their owners: during the copy the
    target carries the frozen source's function privileges, which may not let an owner call lo_from_bytea.)"""
    oids = [r[0] for r in batch]
    data = dict(src.execute("SELECT oid, pg_catalog.lo_get(oid) FROM pg_catalog.pg_largeobject_metadata "
                            "WHERE oid = ANY(%s)", (oids,)).fetchall())
    with dst.transaction():
        with dst.cursor() as cur:
            cur.execute("SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata WHERE oid = ANY(%s)",
                        (oids,))
            cur.executemany("SELECT pg_catalog.lo_from_bytea(%s, %s)", [(oid, data[oid]) for oid in oids])
            me = cur.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
        with dst.pipeline():
            for oid, owner, acl, comment, _ in batch:
                if owner != me:
                    dst.execute(sql.SQL("ALTER LARGE OBJECT {} OWNER TO {}").format(sql.Literal(oid), sql.Identifier(owner)))
                if acl is not None:  # byte for byte, as _describe does
                    dst.execute("UPDATE pg_catalog.pg_largeobject_metadata SET lomacl = %s::aclitem[] WHERE oid = %s",
                                (acl, oid))
                if comment is not None:
                    dst.execute(sql.SQL("COMMENT ON LARGE OBJECT {} IS {}").format(sql.Literal(oid), sql.Literal(comment)))
    return sum(len(data[oid]) for oid in oids)


def _copy_streamed(src: psycopg.Connection[Any], dst: psycopg.Connection[Any], oid: int, owner: str, acl: str | None,
                   comment: str | None) -> int:
    """A big object, a chunk at a time, in its own transaction."""
    with dst.transaction():
        if dst.execute("SELECT 1 FROM pg_largeobject_metadata WHERE oid = %s", (oid,)).fetchone() is None:
            dst.execute("SELECT pg_catalog.lo_create(%s)", (oid,))
        _describe(dst, oid, owner, acl, comment)
        dst.execute("SELECT pg_catalog.lo_truncate(pg_catalog.lo_open(%s, 131072), 0)", (oid,))  # INV_WRITE
        offset = 0
        while True:
            row = src.execute("SELECT pg_catalog.lo_get(%s, %s, %s)", (oid, offset, LO_CHUNK)).fetchone()
            data = row[0] if row else b""
            if not data:
                return offset
            dst.execute("SELECT pg_catalog.lo_put(%s, %s, %s)", (oid, offset, data))
            offset += len(data)


def _describe(dst: psycopg.Connection[Any], oid: int, owner: str, acl: str | None, comment: str | None) -> None:
    dst.execute(sql.SQL("ALTER LARGE OBJECT {} OWNER TO {}").format(sql.Literal(oid), sql.Identifier(owner)))
    # The ACL byte for byte, NULL included (GRANT cannot return it to NULL): the value is the source server's.
    dst.execute("UPDATE pg_catalog.pg_largeobject_metadata SET lomacl = %s::aclitem[] WHERE oid = %s", (acl, oid))
    dst.execute(sql.SQL("COMMENT ON LARGE OBJECT {} IS {}").format(sql.Literal(oid), sql.Literal(comment)))


_VIEW_DEPENDENCIES = """
    SELECT DISTINCT v.oid, v.relkind, v.relispopulated, r.ev_class <> d.refobjid AND ref.relkind IN ('v', 'm'),
           d.refobjid
    FROM pg_class v JOIN pg_rewrite r ON r.ev_class = v.oid
    JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
    JOIN pg_class ref ON ref.oid = d.refobjid
    WHERE v.relkind IN ('v', 'm')
"""


def populated_matviews_in_order(src: psycopg.Connection[Any]) -> list[str]:
    """The source's populated materialized views, each after every materialized view it reads (through views too)."""
    kinds: dict[int, tuple[str, bool]] = {}
    reads: dict[int, set[int]] = {}
    for oid, kind, populated, is_view_ref, ref in src.execute(_VIEW_DEPENDENCIES).fetchall():
        kinds[oid] = (kind, populated)
        reads.setdefault(oid, set())
        if is_view_ref:
            reads[oid].add(ref)
    ordered: list[int] = []
    seen: set[int] = set()

    def visit(oid: int) -> None:
        if oid in seen:
            return
        seen.add(oid)
        for ref in sorted(reads.get(oid, ())):
            visit(ref)
        if kinds.get(oid) == ("m", True):
            ordered.append(oid)

    for oid in sorted(kinds):
        visit(oid)
    names = dict(src.execute("SELECT oid, oid::regclass::text FROM pg_class WHERE oid = ANY(%s)", (ordered,)).fetchall())
    return [names[oid] for oid in ordered]


def refresh(dst: psycopg.Connection[Any], matviews: list[str]) -> None:
    for name in matviews:
        dst.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}").format(sql.SQL(name)))


def analyze_parents_and_matviews(dst: psycopg.Connection[Any]) -> None:
    """Plain tables were analyzed as they arrived; these need their own pass (autovacuum never does parents)."""
    rows = dst.execute(
        """
        SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
          AND (c.relkind IN ('p', 'm') OR EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid))
          AND (c.relkind <> 'm' OR c.relispopulated)
        """
    ).fetchall()
    for (name,) in rows:
        dst.execute(sql.SQL("ANALYZE {}").format(sql.SQL(name)))
