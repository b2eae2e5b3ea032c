"""`pgmove demo`: the whole flow on throwaway local servers, alice and bob in a simulated channel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from cli.sampledata import Secrets, seed_source, seed_target
from cli.sandbox import PgCluster, RedisServer, postgres_bin_dir, temp_base
from handlers import views
from handlers.commands import Deps, handle
from state.config import Config
from state.store import Store
from worker.queue import enqueuer, make_queue

PEOPLE = {"U_ALICE": "alice", "U_BOB": "bob"}


class Channel:
    """Prints the conversation as a person in #db-migrations would read it, and keeps a transcript."""

    def __init__(self, transcript: Path) -> None:
        self.transcript = transcript
        self.lines: list[str] = []

    def say(self, who: str, text: str, only_for: str | None = None) -> None:
        prefix = f"[only {only_for} sees this] " if only_for else ""
        block = [f"{who:>8} | {prefix}{text.splitlines()[0]}"] + [f"{'':>8} | {line}" for line in text.splitlines()[1:]]
        for line in block:
            print(line, flush=True)
        self.lines += block

    def thread(self, text: str) -> None:
        line = f"{'':>8} |   └ {text}"
        print(line, flush=True)
        self.lines.append(line)

    def save(self) -> None:
        self.transcript.write_text("\n".join(self.lines) + "\n")


class LiveWriter(threading.Thread):
    """The app, still writing while the team works: it must lose nothing it was told was saved."""

    def __init__(self, dsn: str, password: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.password = dsn, password
        self.acked: list[int] = []
        self.refused = 0
        self.stop = threading.Event()

    def run(self) -> None:
        conn = None
        while not self.stop.is_set():
            try:
                conn = conn or psycopg.connect(self.dsn, password=self.password, autocommit=True, connect_timeout=3)
                row = conn.execute("INSERT INTO orders (customer, total) VALUES ('live', 1) RETURNING id").fetchone()
                self.acked.append(row[0] if row else 0)
            except psycopg.Error:
                self.refused += 1
                if conn is not None and (conn.closed or conn.broken):
                    conn = None
                time.sleep(0.1)
            time.sleep(0.02)


def run_demo(keep: bool = False) -> int:
    base = temp_base("pgmove-demo-")
    channel = Channel(Path.cwd() / "demo-transcript.txt")
    servers: list[PgCluster] = []
    redis_server = RedisServer(base / "redis")
    worker: subprocess.Popen[bytes] | None = None
    writer: LiveWriter | None = None
    try:
        print("Starting throwaway servers: PostgreSQL source and target, Redis ...", flush=True)
        pw = Secrets()
        bin_dir = postgres_bin_dir()
        source = PgCluster(base / "src", bin_dir, pw.superuser, "prod-old").init().start()
        servers.append(source)
        target = PgCluster(base / "dst", bin_dir, pw.superuser, "prod-new").init().start()
        servers.append(target)
        seed_source(source, pw)
        seed_target(target, pw)
        redis_server.start()
        config_path = base / "pgmove.toml"
        config_path.write_text(_config(redis_server.url, source, target))
        env = {**os.environ, "PGMOVE_PROD_OLD_PASSWORD": pw.source_pgmove, "PGMOVE_PROD_NEW_PASSWORD": pw.target_pgmove}
        os.environ.update({k: env[k] for k in ("PGMOVE_PROD_OLD_PASSWORD", "PGMOVE_PROD_NEW_PASSWORD")})
        log = open(base / "worker.log", "ab")  # noqa: SIM115
        worker = subprocess.Popen([sys.executable, "-m", "cli", "--config", str(config_path), "--log-level", "INFO", "worker"],
                                  env=env, stdout=log, stderr=log, cwd=Path(__file__).resolve().parents[1])
        from state.config import load_config

        config: Config = load_config(config_path)
        store = Store.from_url(config.redis_url)
        deps = Deps(config=config, store=store, enqueue=enqueuer(make_queue(store.redis, config.queue_name)))
        writer = LiveWriter(source.tcp_dsn("app", "appdb"), pw.app)
        writer.start()
        print(f"Source {source.tcp_dsn('pgmove')} (Pagila, appdb with a live writer, read-only archive)")
        print(f"Target {target.tcp_dsn('pgmove')}; worker log {base / 'worker.log'}\n", flush=True)
        print("#db-migrations\n", flush=True)

        ok = _play(channel, deps, store)
        writer.stop.set()
        writer.join()
        with psycopg.connect(target.admin_dsn("appdb")) as conn:
            on_target = {r[0] for r in conn.execute("SELECT id FROM orders WHERE customer = 'live'").fetchall()}
        lost = set(writer.acked) - on_target
        summary = (f"live writer: {len(writer.acked)} inserts acknowledged by prod-old, {len(lost)} missing on prod-new; "
                   f"{writer.refused} refused while frozen")
        channel.say("demo", summary)
        channel.save()
        print(f"\nTranscript: {channel.transcript}")
        return 0 if ok and not lost else 1
    finally:
        if writer is not None:
            writer.stop.set()
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        if not keep:
            for cluster in servers:
                cluster.stop()
            redis_server.stop()
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"Servers left running under {base}")


def _play(channel: Channel, deps: Deps, store: Store) -> bool:
    from cli.main import wait_until_resting

    def command(user: str, text: str, wait: bool = False) -> bool:
        channel.say(PEOPLE[user], f"/pgmove {text}")
        reply = handle(deps, user, text, channel="C_DBMIG")
        channel.say("pgmove", reply.text, only_for=None if reply.visibility == "channel" else PEOPLE[user])
        if wait and reply.migration is not None:
            cursor = store.events(reply.migration.id)[-1].id or "0-0"
            m = wait_until_resting(store, reply.migration, 600, echo=False)
            for event in store.events(reply.migration.id, after=cursor):
                channel.thread(views.event_line(event))
            if m is not None:
                channel.say("pgmove", views.status_text(m))
            return m is not None and m.state.value not in ("failed", "verify_failed")
        return reply.ok

    steps = [
        command("U_ALICE", "plan prod-old prod-new --jobs 2", wait=True),
        command("U_ALICE", "freeze prod-old"),
        not command("U_ALICE", "approve prod-old"),  # the two-person rule says no
        command("U_BOB", "approve prod-old", wait=True),
        command("U_ALICE", "cutover prod-old"),
        command("U_BOB", "approve prod-old", wait=True),
    ]
    return all(steps)


def _config(redis_url: str, source: PgCluster, target: PgCluster) -> str:
    return f"""redis_url = "{redis_url}"
freeze_grace_seconds = 3
lease_seconds = 10

[access]
operators = ["U_ALICE", "U_BOB"]
approvers = ["U_BOB"]
channels = ["C_DBMIG"]

[servers.prod-old]
dsn = "{source.tcp_dsn('pgmove')}"
password_env = "PGMOVE_PROD_OLD_PASSWORD"
app_roles = ["app"]

[servers.prod-new]
dsn = "{target.tcp_dsn('pgmove')}"
password_env = "PGMOVE_PROD_NEW_PASSWORD"
app_roles = ["app"]
"""
