"""Connections to the servers being moved: the password travels as a parameter, never in a DSN string."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from contextvars import ContextVar, copy_context
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus

from pgmove.state.errors import ConnectionFailed, StepFailed

log = logging.getLogger("pgmove.steps")

T = TypeVar("T")
R = TypeVar("R")

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
    stop: StopToken | None = field(default=None, repr=False, compare=False)  # ends this step's sessions on demand

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


class StopToken:
    """Stops a step's database work from outside, within a second, wherever its threads are.

    Every session opened through an endpoint carrying the token is ended on its server when the token fires
    (a running COPY, checksum or REFRESH is rolled back there, a sleeping poll loop fails on its next query),
    and no new session opens after it. The worker fires it when the migration moved on (unfreeze, abort).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fired = False
        self._sessions: list[tuple[Endpoint, psycopg.Connection[Any]]] = []

    @property
    def fired(self) -> bool:
        return self._fired

    def check(self) -> None:
        if self._fired:
            raise StepFailed("the step was stopped: the migration moved on")

    def _register(self, endpoint: Endpoint, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            if not self._fired:
                self._sessions.append((endpoint, conn))
                return
        conn.close()
        self.check()

    def fire(self) -> None:
        with self._lock:
            if self._fired:
                return
            self._fired = True
            sessions, self._sessions = self._sessions, []
        servers: dict[str, tuple[Endpoint, list[int]]] = {}
        for endpoint, conn in sessions:
            if not conn.closed:
                servers.setdefault(endpoint.name, (replace(endpoint, stop=None), []))[1].append(conn.info.backend_pid)
        for endpoint, pids in servers.values():
            try:
                with connection(endpoint) as admin:  # a closed session's pid may be reused: only pgmove's are ended
                    ours = admin.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s) AND application_name = %s",
                                         (pids, APPLICATION_NAME)).fetchall()
                    end_backends(admin, [r[0] for r in ours])
            except (psycopg.Error, ConnectionFailed):
                log.warning("could not end the stopped step's sessions on %s", endpoint.name, exc_info=True)


EXIT_WAIT_SECONDS = 3.0


def end_backends(conn: psycopg.Connection[Any], pids: list[int], wait_seconds: float = EXIT_WAIT_SECONDS) -> set[int]:
    """End these sessions and return the ones signalled, once they have exited (or the wait ran out): whoever ends a
    session next counts sessions, drops the slot it held or reports it ended, and must not find it still there.
    All are signalled first and waited for together: a freeze ending a pool's hundred idle sessions waits once."""
    if not pids:
        return set()
    ended = {int(r[0]) for r in conn.execute(
        "SELECT pid FROM unnest(%s::int[]) AS pid WHERE pg_terminate_backend(pid)", (pids,)).fetchall()}
    deadline = time.monotonic() + wait_seconds
    while ended and time.monotonic() < deadline:
        conn.execute("SELECT pg_stat_clear_snapshot()")  # a transaction's view of the activity is cached
        if conn.execute("SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s))",
                        (list(ended),)).fetchone() == (True,):
            break
        time.sleep(0.01)
    return ended


def connect(endpoint: Endpoint, dbname: str | None = None, autocommit: bool = True) -> psycopg.Connection[Any]:
    params = endpoint.params
    options = " ".join(filter(None, [str(params.get("options") or ""), OWN_SESSION_OPTIONS]))
    if endpoint.stop is not None:
        endpoint.stop.check()
    try:
        conn = psycopg.connect(
            endpoint.dsn, dbname=dbname or params.get("dbname") or "postgres", password=endpoint.password,
            application_name=APPLICATION_NAME, options=options, connect_timeout=int(params.get("connect_timeout") or 10),
            autocommit=autocommit,
        )
    except psycopg.Error as exc:
        raise ConnectionFailed(
            f"Cannot connect to {endpoint.name}{f' database {dbname}' if dbname else ''}: {describe(exc)}",
            server=endpoint.name,
        ) from None
    if endpoint.stop is not None:
        endpoint.stop._register(endpoint, conn)
    return conn


class IdleSessions:
    """A step's finished sessions, handed out again instead of opening new ones.

    Opening a session costs a fork and a SCRAM exchange (tens of milliseconds on a busy server), and a step
    that walks every database opens dozens in a row: inside a cutover window that was a third of the write
    gap. A session comes back only clean (no transaction, DISCARD ALL: settings, role, temp tables and
    advisory locks as at login) and is proven alive before reuse, since the freeze ends sessions born before it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str, str, int], list[psycopg.Connection[Any]]] = {}

    @staticmethod
    def _key(endpoint: Endpoint, dbname: str) -> tuple[str, str, str, int]:
        return endpoint.name, endpoint.dsn, dbname, id(endpoint.stop)

    def take(self, endpoint: Endpoint, dbname: str) -> psycopg.Connection[Any] | None:
        if endpoint.stop is not None:
            endpoint.stop.check()
        while True:
            with self._lock:
                idle = self._idle.get(self._key(endpoint, dbname))
                conn = idle.pop() if idle else None
            if conn is None:
                return None
            try:
                conn.execute("SELECT 1")
                return conn
            except psycopg.Error:
                conn.close()  # ended meanwhile (a freeze ends sessions older than itself): try the next

    def give_back(self, endpoint: Endpoint, dbname: str, conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.broken:
            return
        try:
            if conn.info.transaction_status != TransactionStatus.IDLE:
                conn.rollback()
            conn.autocommit = True
            conn.read_only = conn.isolation_level = conn.deferrable = None  # psycopg's own, which DISCARD cannot reset
            conn.execute("DISCARD ALL")
        except psycopg.Error:
            conn.close()
            return
        with self._lock:
            self._idle.setdefault(self._key(endpoint, dbname), []).append(conn)

    def pids(self, endpoint: Endpoint) -> list[int]:
        with self._lock:
            return [c.info.backend_pid for key, idle in self._idle.items() if key[0] == endpoint.name
                    for c in idle if not c.closed]

    def close(self) -> None:
        with self._lock:
            taken, self._idle = [c for idle in self._idle.values() for c in idle], {}
        for conn in taken:
            conn.close()


_IDLE_SESSIONS: ContextVar[IdleSessions | None] = ContextVar("pgmove_idle_sessions", default=None)


@contextmanager
def reusing_sessions() -> Iterator[IdleSessions]:
    """Within this block (this thread), `connection` reuses finished sessions; all are closed at its end."""
    sessions = IdleSessions()
    token = _IDLE_SESSIONS.set(sessions)
    try:
        yield sessions
    finally:
        _IDLE_SESSIONS.reset(token)
        sessions.close()


def idle_pids(endpoint: Endpoint) -> list[int]:
    """The backends of this step's idle sessions on `endpoint`'s server: pgmove's own, however old."""
    idle = _IDLE_SESSIONS.get()
    return idle.pids(endpoint) if idle is not None else []


@contextmanager
def connection(endpoint: Endpoint, dbname: str | None = None) -> Iterator[psycopg.Connection[Any]]:
    idle = _IDLE_SESSIONS.get()
    if idle is None:
        conn = connect(endpoint, dbname)
        try:
            yield conn
        finally:
            conn.close()  # not psycopg's `with`: that would commit what a caller left open
        return
    database = dbname or str(endpoint.params.get("dbname") or "postgres")
    conn = idle.take(endpoint, database) or connect(endpoint, dbname)
    try:
        yield conn
    finally:
        idle.give_back(endpoint, database, conn)


class ThreadConnections:
    """One session per thread, server and database, reused across a step's many small tasks (a copy's tables,
    a verification's checksum ranges), all closed together when the step's pool is done.

    Sessions open through their endpoint, so its stop token ends them on the server when it fires; after
    that, asking for one (cached or not) raises, so no task keeps working on a session that was ended.
    `setup` prepares each new session (read-only for checks, bulk-load settings for the copy's target).
    """

    def __init__(self, setup: Callable[[psycopg.Connection[Any]], None] | None = None) -> None:
        self._setup = setup
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[tuple[Endpoint, str, psycopg.Connection[Any]]] = []
        self._idle = _IDLE_SESSIONS.get()  # the creating thread's: the pool's threads start without it

    def get(self, endpoint: Endpoint, dbname: str) -> psycopg.Connection[Any]:
        if endpoint.stop is not None:
            endpoint.stop.check()
        cache: dict[tuple[str, str], psycopg.Connection[Any]] = self._local.__dict__.setdefault("cache", {})
        conn = cache.get((endpoint.name, dbname))
        if conn is None or conn.closed:
            conn = (self._idle.take(endpoint, dbname) if self._idle is not None else None) or connect(endpoint, dbname)
            with self._lock:
                self._all.append((endpoint, dbname, conn))
            if self._setup is not None:
                self._setup(conn)
            cache[(endpoint.name, dbname)] = conn
        return conn

    def close(self) -> None:
        with self._lock:
            taken, self._all = self._all, []
        for endpoint, dbname, conn in taken:
            if self._idle is None:
                conn.close()
            else:
                self._idle.give_back(endpoint, dbname, conn)


def describe(exc: BaseException) -> str:
    """A one-line account of a database error for the channel (psycopg's text, first line, no query)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"password=\S+", "password=***", text)


def server_major(conn: psycopg.Connection[Any]) -> int:
    return int(conn.info.server_version) // 10000


def each_in_parallel(work: Callable[[T], R], items: list[T], threads: int = 4) -> list[R]:
    """`work` on every item at once, in threads that reuse this step's sessions as the caller does, results in
    order. Every item runs to its end even when one fails; then the first failure is raised: a caller that
    undoes on failure (a freeze) never undoes while some part is still being done."""
    if len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        futures = [pool.submit(copy_context().run, work, item) for item in items]
        wait(futures)
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error
    return [future.result() for future in futures]
