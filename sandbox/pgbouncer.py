"""A throwaway PgBouncer on a free local port, in front of the sandbox clusters, for the demo and the tests."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg import sql

from pgmove.sandbox.servers import PgCluster, _as_sandbox_user, free_port

ADMIN_USER = "pgmove_admin"


def pgbouncer_binary() -> str:
    # Debian installs it in /usr/sbin, which is not on every PATH.
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None)
    if not found:
        raise RuntimeError("pgbouncer is not installed (Debian package pgbouncer; `make deps` installs it)")
    return found


def scram_verifier(cluster: PgCluster, role: str) -> str:
    """The role's SCRAM secret as the cluster stores it: PgBouncer logs clients in with it and, having seen the
    client's proof, logs in to the server as that role (SCRAM pass-through), so no plaintext password is kept."""
    with psycopg.connect(cluster.admin_dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    if not row or not row[0] or not str(row[0]).startswith("SCRAM-SHA-256$"):
        raise RuntimeError(f"role {role} has no SCRAM password on {cluster.name}")
    return str(row[0])


SHOWABLE = frozenset({"CLIENTS", "CONFIG", "DATABASES", "POOLS", "SERVERS", "STATS", "VERSION"})


class PgBouncer:
    """One PgBouncer: its own ini in a directory, SCRAM auth from an auth_file, `[databases]` in an include file
    (`databases.ini`) that pgmove rewrites to repoint it, an admin user for pgmove's admin console sessions."""

    def __init__(self, base: Path, pool_mode: str = "transaction", query_wait_timeout: int = 120) -> None:
        self.base, self.pool_mode, self.query_wait_timeout = base, pool_mode, query_wait_timeout
        self.port = 0
        self.admin_password = "pgbadm-" + secrets.token_hex(12)
        self.proc: subprocess.Popen[bytes] | None = None
        self._drop, self._uid, self._gid = _as_sandbox_user()

    @property
    def ini(self) -> Path:
        return self.base / "pgbouncer.ini"

    @property
    def databases_file(self) -> Path:
        return self.base / "databases.ini"

    @property
    def log(self) -> Path:
        return self.base / "pgbouncer.log"

    def admin_dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={ADMIN_USER} dbname=pgbouncer"

    def dsn(self, user: str, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"

    def start(self, cluster: PgCluster, databases: list[str], users: dict[str, str]) -> PgBouncer:
        """Serve `databases` of `cluster` under the same names; `users` maps role -> secret (a SCRAM verifier)."""
        self.base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        lines = [f'"{name}" "{secret}"' for name, secret in {**users, ADMIN_USER: self.admin_password}.items()]
        (self.base / "userlist.txt").write_text("\n".join(lines) + "\n")
        self.databases_file.write_text("[databases]\n" + "".join(
            f"{db} = host=127.0.0.1 port={cluster.port} dbname={db}\n" for db in databases))
        self.ini.write_text(f"""[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {self.base}/userlist.txt
admin_users = {ADMIN_USER}
pool_mode = {self.pool_mode}
default_pool_size = 10
query_wait_timeout = {self.query_wait_timeout}
server_login_retry = 1
logfile = {self.log}
pidfile = {self.base}/pgbouncer.pid
%include {self.databases_file}
""")
        for path in (self.base, *self.base.iterdir()):
            os.chown(path, self._uid, self._gid)
        (self.base / "userlist.txt").chmod(0o600)
        # PgBouncer refuses to run as root: it runs as the sandbox user, like the clusters.
        self.proc = subprocess.Popen([pgbouncer_binary(), str(self.ini)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=self._drop, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited; see {self.log}: {self._log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not start within 20 s; see {self.log}")

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """An admin console session (simple query protocol only: autocommit, nothing prepared)."""
        return psycopg.connect(self.admin_dsn(), password=self.admin_password, autocommit=True, prepare_threshold=None)

    def show(self, what: str) -> list[dict[str, object]]:
        """SHOW <what> as rows of column -> value; `what` must be one of the console's own words."""
        if what not in SHOWABLE:
            raise ValueError(f"SHOW {what!r}: not one of {', '.join(sorted(SHOWABLE))}")
        with self.admin() as conn:
            cur = conn.execute(sql.SQL("SHOW {}").format(sql.SQL(what)))
            names = [d.name for d in cur.description or []]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def database(self, name: str) -> dict[str, object]:
        return next(row for row in self.show("DATABASES") if row["name"] == name)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # immediate before 1.23; newer ones wait for clients first
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "(no log)"
