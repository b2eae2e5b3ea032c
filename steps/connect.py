"""Connections to the servers being moved: the password travels as a parameter, never in a DSN string."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from state.errors import ConnectionFailed

# A step reports what it is doing through this: (message, structured data).
Progress = Callable[..., None]

# pgmove's own sessions must be able to write even while the server is frozen (to unfreeze it), and
# see only pg_catalog on the search path so regclass/regprocedure text is always schema-qualified.
OWN_SESSION_OPTIONS = (
    "-c default_transaction_read_only=off -c statement_timeout=0 -c lock_timeout=30s -c search_path=pg_catalog"
)
APPLICATION_NAME = "pgmove"


@dataclass(frozen=True)
class Endpoint:
    """A server as a step sees it: the configured DSN, the password kept out of every repr."""

    name: str
    dsn: str
    password: str | None = field(default=None, repr=False)
    app_roles: tuple[str, ...] = ()

    def conninfo(self, dbname: str | None = None) -> str:
        """The DSN for one database, without the password: safe on a command line."""
        return make_conninfo(self.dsn, dbname=dbname) if dbname else self.dsn

    @property
    def params(self) -> dict[str, Any]:
        return conninfo_to_dict(self.dsn)

    @property
    def user(self) -> str:
        return str(self.params.get("user") or "")

    @property
    def is_local(self) -> bool:
        host = str(self.params.get("host") or "")
        return host in ("", "localhost", "127.0.0.1", "::1") or host.startswith("/")

    def tool_env(self, base: dict[str, str]) -> dict[str, str]:
        """The environment for a client program talking to this server: password via PGPASSWORD."""
        env = {k: v for k, v in base.items() if not k.startswith("PG")}
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        env["PGAPPNAME"] = APPLICATION_NAME
        env["PGOPTIONS"] = OWN_SESSION_OPTIONS
        env["PGCONNECT_TIMEOUT"] = "10"
        return env


def connect(endpoint: Endpoint, dbname: str | None = None, autocommit: bool = True) -> psycopg.Connection[Any]:
    params = endpoint.params
    options = " ".join(filter(None, [str(params.get("options") or ""), OWN_SESSION_OPTIONS]))
    try:
        return psycopg.connect(
            endpoint.dsn, dbname=dbname or params.get("dbname") or "postgres", password=endpoint.password,
            application_name=APPLICATION_NAME, options=options, connect_timeout=int(params.get("connect_timeout") or 10),
            autocommit=autocommit,
        )
    except psycopg.Error as exc:
        raise ConnectionFailed(
            f"Cannot connect to {endpoint.name}{f' database {dbname}' if dbname else ''}: {describe(exc)}",
            server=endpoint.name,
        ) from None


@contextmanager
def connection(endpoint: Endpoint, dbname: str | None = None) -> Iterator[psycopg.Connection[Any]]:
    conn = connect(endpoint, dbname)
    try:
        yield conn
    finally:
        conn.close()


def describe(exc: BaseException) -> str:
    """A one-line account of a database error for the channel (psycopg's text, first line, no query)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"password=\S+", "password=***", text)


def server_major(conn: psycopg.Connection[Any]) -> int:
    return int(conn.info.server_version) // 10000
