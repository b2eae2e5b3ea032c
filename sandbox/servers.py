"""Throwaway PostgreSQL clusters and Redis servers on free local ports, for the demo and the tests."""

from __future__ import annotations

import glob
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SANDBOX_USER = os.environ.get("PGMOVE_SANDBOX_USER", "postgres")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll until `predicate` returns something truthy, and return it; TimeoutError names what never came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out waiting for {what}")


# Below Linux's ephemeral range (32768+), so no outgoing connection holds the port between the pick and the bind;
# random, so parallel test processes rarely pick alike (and servers retry on a port taken meanwhile).
_PORTS = range(20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    for _ in range(200):
        port = random.choice(_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free local port found in 20000-31999")


def postgres_bin_dir(major: int | None = None) -> Path:
    """Debian keeps each major's server binaries apart; take the one asked for, or the newest."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name))
    if major is not None:
        dirs = [d for d in dirs if Path(d).parent.name == str(major)]
    for d in reversed(dirs):
        if (Path(d) / "initdb").exists():
            return Path(d)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError("no PostgreSQL server binaries found (install Debian's postgresql package)")


def _as_sandbox_user() -> tuple[Callable[[], None] | None, int, int]:
    """initdb and postgres refuse to run as root: drop to an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return None, os.getuid(), os.getgid()
    entry = pwd.getpwnam(SANDBOX_USER)

    def drop() -> None:
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return drop, entry.pw_uid, entry.pw_gid


class PortTaken(RuntimeError):
    """A server could not listen on the port it was given."""


class PgCluster:
    """One PostgreSQL cluster in a temporary directory: TCP with SCRAM passwords, the local socket trusted."""

    def __init__(self, base: Path, bin_dir: Path, superuser_password: str, name: str = "pg") -> None:
        self.base, self.bin_dir, self.name = base, bin_dir, name
        self.data, self.sockets, self.log = base / "data", base / "sock", base / "postgres.log"
        self.superuser_password = superuser_password
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._drop, self._uid, self._gid = _as_sandbox_user()

    @property
    def major(self) -> int:
        out = subprocess.run([str(self.bin_dir / "postgres"), "--version"], capture_output=True, text=True).stdout
        return int(out.split()[-1].split(".")[0])

    def init(self) -> PgCluster:
        self.base.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(exist_ok=True)
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        for path in (self.base, self.sockets, pwfile):
            os.chown(path, self._uid, self._gid)
        done = subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
             "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
            capture_output=True, text=True, preexec_fn=self._drop,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed for {self.name}: {done.stderr.strip()[-1000:]}")
        pwfile.unlink()
        return self

    def start(self, port: int | None = None, settings: dict[str, str] | None = None) -> PgCluster:
        """`settings` override the defaults below (a later -c wins), e.g. {"wal_level": "replica"}."""
        for attempt in range(3):
            try:
                return self._start(port or free_port(), settings)
            except PortTaken:
                if port is not None or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _start(self, port: int, settings: dict[str, str] | None) -> PgCluster:
        self.port = port
        extra = [arg for name, value in (settings or {}).items() for arg in ("-c", f"{name}={value}")]
        log = open(self.log, "ab")  # noqa: SIM115 -- stays open for the server's lifetime
        os.chown(self.log, self._uid, self._gid)
        self.proc = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.sockets),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=100", "-c", "shared_buffers=64MB",
             "-c", "wal_level=logical", "-c", "max_wal_senders=10", "-c", "max_replication_slots=10",
             # a subscriber needs one worker per subscription plus its table-sync workers (default 4 in all)
             "-c", "max_logical_replication_workers=8", "-c", "max_worker_processes=16", *extra],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, preexec_fn=self._drop, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready = subprocess.run([str(self.bin_dir / "pg_isready"), "-h", str(self.sockets), "-p", str(self.port)],
                                   capture_output=True)
            if ready.returncode == 0:
                return self
            if self.proc.poll() is not None:
                said = self.log.read_text()[-2000:]
                if "Address already in use" in said:  # another process took the port after free_port checked it
                    raise PortTaken(said)
                raise RuntimeError(f"postgres {self.name} exited; see {self.log}: {said}")
            time.sleep(0.1)
        raise RuntimeError(f"postgres {self.name} did not start within 60 s; see {self.log}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def clone(self, base: Path, name: str) -> PgCluster:
        """A copy of this (stopped) cluster's files: a second server with the same contents, in a second."""
        other = PgCluster(base, self.bin_dir, self.superuser_password, name)
        base.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.data, other.data, symlinks=True)
        other.sockets.mkdir(exist_ok=True)
        for path in (base, other.sockets):
            os.chown(path, self._uid, self._gid)
        subprocess.run(["chown", "-R", f"{self._uid}:{self._gid}", str(other.data)], check=True)
        return other

    def admin_dsn(self, dbname: str = "postgres") -> str:
        """Superuser over the local socket (trusted): for fixtures, never for pgmove itself."""
        return f"host={self.sockets} port={self.port} user=postgres dbname={dbname}"

    def tcp_dsn(self, user: str, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={user} dbname={dbname}"

    def psql(self, *args: str, dbname: str = "postgres", check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.admin_dsn(dbname), *args],
            capture_output=True, text=True, check=check,
        )


class RedisServer:
    def __init__(self, base: Path) -> None:
        self.base, self.port = base, 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.base.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-server")
        if not binary:
            raise RuntimeError("redis-server is not installed (Debian package redis-server)")
        for _ in range(3):
            try:
                return self._start(binary, free_port())
            except PortTaken:
                continue
        raise RuntimeError("redis-server found its port taken three times")

    def _start(self, binary: str, port: int) -> RedisServer:
        self.port = port
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.base), "--logfile", str(self.base / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                if self.proc.poll() is not None:  # it exits when it cannot listen
                    raise PortTaken(f"redis-server exited on port {self.port}") from None
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def temp_base(prefix: str, in_memory_gb: float = 0) -> Path:
    """A directory the sandbox user can reach. With `in_memory_gb`, in /dev/shm when it has that much room: every
    test copies a cluster's files (100 MB) and the servers run with fsync off, so nothing here needs a disk."""
    shm = Path("/dev/shm")
    in_memory = in_memory_gb > 0 and shm.is_dir() and os.access(shm, os.W_OK) and \
        shutil.disk_usage(shm).free >= in_memory_gb * 2**30
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=shm if in_memory else None))
    base.chmod(0o755)  # the sandbox user must reach the clusters below it
    return base
