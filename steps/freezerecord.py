"""The freeze's record kept on the server itself, so a lost store neither hides a freeze nor loses its originals.

It is the comment on pgmove's guard schema (_pgmove_freeze), written in the maintenance database
before the freeze changes anything and in every database as its guards go in; it disappears with
the schema when unfreeze removes the guards, the maintenance database last. Any guard object, with
or without a record, tells a second freeze that the server is already frozen. The copy leaves the
schema and its comment behind (guards.RESTORE_EXCLUDE).

Once a cutover starts, the record is marked cut over in every database that holds it (steps/handover.py).
A freeze that finds such a mark is refused outright, never taken over: taking it over would let one
person's unfreeze give the old server writes again while the app may write to the new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from pydantic import ValidationError

from pgmove.state.errors import Refused
from pgmove.state.models import FreezeSnapshot
from pgmove.steps import guards

_FOUND = """
    SELECT (SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %(schema)s),
           EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s)
           OR EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = %(ddl)s)
           OR EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = %(guard)s AND NOT tgisinternal)
"""


@dataclass
class Found:
    """What one database says about an earlier freeze: its record if it kept one."""

    database: str
    record: FreezeSnapshot | None


class AlreadyFrozen(Refused):
    """The server carries another freeze's guards or record: freezing again would record the frozen state as the original."""

    def __init__(self, message: str, found: Found) -> None:
        super().__init__(message, database=found.database)
        self.found = found


class CutOver(Refused):
    """The server was cut over: it stays frozen, and no freeze of it (nor a takeover of its record) is allowed."""

    def __init__(self, message: str, found: Found) -> None:
        super().__init__(message, database=found.database)
        self.found = found


_OWN_MARK = """
    SELECT d.xmin::text::bigint, d.description FROM pg_description d JOIN pg_namespace n ON n.oid = d.objoid
    WHERE d.classoid = 'pg_namespace'::regclass AND d.objsubid = 0 AND n.nspname = %s
"""


def write(conn: psycopg.Connection[Any], snapshot: FreezeSnapshot) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(guards.SCHEMA)))
    conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
        sql.Identifier(guards.SCHEMA), sql.Literal(snapshot.model_dump_json())))


def read(conn: psycopg.Connection[Any], database: str) -> Found | None:
    """This database's trace of a freeze: None when it has no guard object at all."""
    row = conn.execute(_FOUND, {"schema": guards.SCHEMA, "ddl": guards.EVENT_TRIGGER, "guard": guards.TABLE_TRIGGER}
                       ).fetchone()
    if row is None or not row[1]:
        return None
    record = None
    if row[0]:
        try:
            record = FreezeSnapshot.model_validate_json(row[0])
        except ValidationError:
            record = None  # a comment someone else wrote: the guard objects alone still mean frozen
    return Found(database, record)


def mark_cut_over(conn: psycopg.Connection[Any], snapshot: FreezeSnapshot) -> None:
    """The record, now carrying its cut-over mark: one statement, so one transaction the quiet check can tell apart."""
    conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
        sql.Identifier(guards.SCHEMA), sql.Literal(snapshot.model_dump_json())))


def cut_over_xid(conn: psycopg.Connection[Any], migration_id: str) -> int | None:
    """The transaction that marked this database's record as cut over by `migration_id`, if one did."""
    row = conn.execute(_OWN_MARK, (guards.SCHEMA,)).fetchone()
    if row is None:
        return None
    try:
        record = FreezeSnapshot.model_validate_json(row[1])
    except ValidationError:
        return None
    return int(row[0]) if record.cut_over is not None and record.cut_over.migration_id == migration_id else None


def is_own(found: Found, snapshot: FreezeSnapshot) -> bool:
    """The trace is this very freeze's (a retried freeze finishes what it started, an undo removes its own)."""
    record = found.record
    return record is not None and record.freeze_id == snapshot.freeze_id and record.taken_at == snapshot.taken_at


def refusal(found: Found, server: str) -> AlreadyFrozen | CutOver:
    if found.record is not None and found.record.cut_over is not None:
        done = found.record.cut_over
        return CutOver(
            f"{server} was cut over to {done.target} by pgmove {done.migration_id} on {done.at:%Y-%m-%d %H:%M} UTC "
            f"and stays frozen for good, so the app never writes to two servers. pgmove will not freeze it again or "
            f"take over that freeze: its unfreeze would give the old server writes back on one person's word. If "
            f"{server} must really take writes again (the app moves back, or the server is reused), two people decide "
            f"it and follow \"Giving writes back to a cut-over server\" in pgmove's README.", found)
    if found.record is None:
        return AlreadyFrozen(
            f"{server} already carries pgmove freeze guards (in database {found.database}) with no record of what "
            f"they replaced; freezing again would record the frozen state as the original. Unfreeze it through the "
            f"migration that froze it; if that is lost, remove the guards by hand (DROP EVENT TRIGGER "
            f"{guards.EVENT_TRIGGER}; DROP SCHEMA {guards.SCHEMA} CASCADE, in each database) after checking the "
            f"read-only settings.", found)
    record = found.record
    return AlreadyFrozen(
        f"{server} is already frozen by pgmove {record.freeze_id or '(no migration id)'} since "
        f"{record.taken_at:%Y-%m-%d %H:%M:%S} UTC ({record.label or 'no label'}); a second freeze would record "
        f"the frozen state as the original. Unfreeze that one first.", found)
