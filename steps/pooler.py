"""PgBouncer's admin console: what a pooler serves, PAUSE with a deadline, RESUME, RELOAD, who holds a pause up.

The console speaks the simple query protocol only: sessions are autocommit with nothing prepared, and no
query carries parameters (database names go in as quoted identifiers, which the console unquotes).
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict

from pgmove.state.errors import ConnectionFailed, StepFailed
from pgmove.state.models import PoolerBackend
from pgmove.steps.connect import describe


@dataclass(frozen=True)
class Pooler:
    """A pooler as a step sees it: its admin console, the databases the app uses, how it is repointed."""

    name: str
    admin_dsn: str
    databases: tuple[str, ...]
    password: str | None = field(default=None, repr=False)
    databases_file: str | None = None
    repoint_command: tuple[str, ...] | None = None
    repoint_timeout: float = 30.0
    pause_timeout: float = 10.0
    password_env: str | None = None  # the variable `password` was read from, to name it when it is unset


@dataclass(frozen=True)
class Holder:
    """A client whose open transaction kept a PAUSE from completing."""

    user: str
    application: str
    addr: str
    port: int
    database: str
    since: str

    def describe(self) -> str:
        app = f"application {self.application!r}" if self.application else "no application_name"
        return f"{self.user} ({app}) from {self.addr}:{self.port} on {self.database}, in its transaction since {self.since}"


class PauseTimedOut(StepFailed):
    """PAUSE did not complete in time: a transaction through the pooler stayed open."""

    def __init__(self, message: str, holders: list[Holder]) -> None:
        super().__init__(message)
        self.holders = holders


def console(p: Pooler) -> psycopg.Connection[Any]:
    params = conninfo_to_dict(p.admin_dsn)
    try:
        return psycopg.connect(p.admin_dsn, password=p.password, autocommit=True, prepare_threshold=None,
                               connect_timeout=int(params.get("connect_timeout") or 10))
    except psycopg.Error as exc:
        raise ConnectionFailed(f"Cannot reach pooler {p.name}'s admin console: {describe(exc)}", server=p.name) from None


def show(conn: psycopg.Connection[Any], what: str) -> list[dict[str, Any]]:
    """SHOW <what>, rows by column name (PgBouncer adds columns between versions; names stay)."""
    cur = conn.execute(sql.SQL("SHOW {}").format(sql.SQL(what)))  # `what` is one of our own console keywords
    names = [d.name for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def version(conn: psycopg.Connection[Any]) -> str:
    rows = show(conn, "VERSION")
    return str(rows[0]["version"]) if rows else "unknown"


def settings(conn: psycopg.Connection[Any]) -> dict[str, str]:
    return {str(r["key"]): str(r["value"]) for r in show(conn, "CONFIG")}


def databases(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    return {str(r["name"]): r for r in show(conn, "DATABASES")}


def backends(conn: psycopg.Connection[Any], names: tuple[str, ...] | list[str]) -> dict[str, PoolerBackend]:
    """Where each of `names` sends its clients now; a name the pooler does not serve is left out."""
    found = databases(conn)
    return {n: PoolerBackend(host=str(found[n]["host"] or ""), port=int(found[n]["port"] or 5432),
                             dbname=str(found[n]["database"] or n)) for n in names if n in found}


def paused_by_others(conn: psycopg.Connection[Any], names: tuple[str, ...] | list[str]) -> list[str]:
    """Those of `names` already PAUSEd (by an operator, another tool): pgmove takes none of them over."""
    return [n for n, row in databases(conn).items() if n in names and int(row.get("paused") or 0)]


def already_paused(pooler: str, names: list[str]) -> str:
    return (f"pooler {pooler}'s {', '.join(names)} {'is' if len(names) == 1 else 'are'} already paused by someone "
            f"else: RESUME {'it' if len(names) == 1 else 'them'} or wait until they do, then retry; pgmove "
            "pauses and resumes only what it paused itself")


def waiting(conn: psycopg.Connection[Any], names: tuple[str, ...] | list[str]) -> int:
    """Clients queued in the pooler for `names` right now (what a pause costs them: latency, not errors)."""
    return sum(int(r["cl_waiting"] or 0) for r in show(conn, "POOLS") if r["database"] in names)


def holders(conn: psycopg.Connection[Any], dbname: str) -> list[Holder]:
    """The clients linked to a server connection of `dbname`: in transaction pooling, those inside a transaction."""
    linked = {str(s["link"]) for s in show(conn, "SERVERS") if s["database"] == dbname and s["link"]}
    return [Holder(user=str(c["user"]), application=str(c.get("application_name") or ""), addr=str(c["addr"]),
                   port=int(c["port"] or 0), database=dbname, since=str(c.get("request_time") or ""))
            for c in show(conn, "CLIENTS") if str(c["ptr"]) in linked]


def command(conn: psycopg.Connection[Any], verb: str, dbname: str | None = None) -> None:
    query = sql.SQL(verb) if dbname is None else sql.SQL("{} {}").format(sql.SQL(verb), sql.Identifier(dbname))
    conn.execute(query)


def resume(conn: psycopg.Connection[Any], dbname: str) -> bool:
    """RESUME one database; False when it was not paused (a second RESUME changes nothing)."""
    try:
        command(conn, "RESUME", dbname)
    except psycopg.errors.ProtocolViolation as exc:
        if "is not paused" in str(exc):
            return False
        raise
    return True


def pause(p: Pooler, dbname: str, timeout: float) -> float:
    """PAUSE one database, waiting at most `timeout` seconds; returns how long it took.

    PAUSE returns once every server connection of the database is released, which in transaction pooling
    is when the transactions running through it have ended. It has no timeout of its own, so it runs on a
    session of its own that is abandoned at the deadline; the database stays marked paused in the pooler
    until RESUME, which the caller owes it either way. On timeout the clients holding it are named.
    """
    conn = console(p)
    started = time.monotonic()
    try:
        raw = conn.pgconn
        raw.send_query(sql.SQL("PAUSE {}").format(sql.Identifier(dbname)).as_bytes(conn))
        while True:
            raw.consume_input()
            if not raw.is_busy():
                break
            left = started + timeout - time.monotonic()
            if left <= 0:
                with console(p) as other:
                    held = holders(other, dbname)
                who = "; ".join(h.describe() for h in held) or "a client that has since let go"
                raise PauseTimedOut(f"pooler {p.name} could not pause {dbname} within {timeout:g}s: a transaction "
                                    f"stayed open through it, held by {who}", held)
            select.select([raw.socket], [], [], min(left, 0.2))
        errors = []
        while (result := raw.get_result()) is not None:
            if result.status != pq.ExecStatus.COMMAND_OK:
                errors.append((result.error_message or b"").decode(errors="replace").strip())
        if errors:
            raise StepFailed(f"pooler {p.name} refused PAUSE {dbname}: {errors[0]}")
        return time.monotonic() - started
    except psycopg.Error as exc:
        raise StepFailed(f"pooler {p.name} failed during PAUSE {dbname}: {describe(exc)}") from None
    finally:
        conn.close()
