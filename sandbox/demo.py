"""`pgmove demo`: the whole flow on throwaway local servers: a live writer on the source, a worker, the
Slack bot against the local Slack stand-in, alice and bob in #db-migrations. Exit 0 on success.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from pgmove.sandbox.demohooks import pause_files, with_hooks, write_hooks
from pgmove.sandbox.fakeslack.driver import Driver
from pgmove.sandbox.fakeslack.server import FakeSlack
from pgmove.sandbox.fakeslack.transcript import as_html, as_text
from pgmove.sandbox.pgbouncer import PgBouncer, scram_verifier
from pgmove.sandbox.sampledata import PAGILA, Secrets, seed_source, seed_target
from pgmove.sandbox.servers import PgCluster, RedisServer, free_port, postgres_bin_dir, temp_base, wait_until
from pgmove.state.store import Store

SIGNING_SECRET = "demo-signing-secret"


class LiveWriter(threading.Thread):
    """The app, still writing (through PgBouncer) while the team works: it must lose nothing it was told was saved,
    and see no error but the frozen source's refusals, not even while the pooler switches it to prod-new. Its
    pause_app_hook stops it before the freeze and the resume_app_hook starts it again on prod-new."""

    def __init__(self, dsn: str, password: str, pause: tuple[Path, Path] | None = None) -> None:
        super().__init__(daemon=True)
        self.dsn, self.password = dsn, password
        self.pause = pause  # (flag, ack): the pause_app_hook raises the flag, the writer answers once idle
        self.paused_seconds = 0.0
        self.acked: list[tuple[int, int]] = []  # (id, the port of the server that took it)
        self.refused = 0  # read-only: the freeze, refusing loudly as it should
        self.errors: list[str] = []  # anything else: what the app would have to retry or report
        self.stop = threading.Event()

    def run(self) -> None:
        conn = None
        paused_at: float | None = None
        while not self.stop.is_set():
            if self.pause is not None and self.pause[0].exists():  # checked between inserts: none is in flight
                if paused_at is None:
                    paused_at = time.monotonic()
                    self.pause[1].write_text(f"{len(self.acked)} inserts acknowledged so far, none in flight")
                time.sleep(0.05)
                continue
            if paused_at is not None:
                self.paused_seconds += time.monotonic() - paused_at
                paused_at = None
            try:
                # Nothing prepared: PgBouncer's transaction pooling hands each transaction any server connection.
                conn = conn or psycopg.connect(self.dsn, password=self.password, autocommit=True, connect_timeout=3,
                                               prepare_threshold=None)
                row = conn.execute("INSERT INTO orders (customer, total) VALUES ('live', 1) "
                                   "RETURNING id, inet_server_port()").fetchone()
                self.acked.append((row[0], row[1]) if row else (0, 0))
            except psycopg.Error as exc:
                if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
                    self.refused += 1
                else:
                    self.errors.append(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                if conn is not None and (conn.closed or conn.broken):
                    conn = None
                time.sleep(0.1)
            time.sleep(0.02)


def run_demo(keep: bool = False) -> int:
    base = temp_base("pgmove-demo-")
    servers: list[PgCluster] = []
    processes: list[subprocess.Popen[bytes]] = []
    redis_server = RedisServer(base / "redis")
    bouncer = PgBouncer(base / "pgbouncer")
    slack = FakeSlack()
    writer: LiveWriter | None = None
    try:
        # Pagila sits beside a checkout (../shared/fixtures); an installed package moves the app databases alone.
        with_pagila = (PAGILA / "pagila-schema.sql").exists()
        say(f"starting throwaway PostgreSQL servers (prod-old{' with Pagila' if with_pagila else ''}, prod-new), "
            "PgBouncer in front of prod-old's appdb, Redis and a local Slack ...")
        pw = Secrets()
        source = PgCluster(base / "src", postgres_bin_dir(), pw.superuser, "prod-old").init().start()
        servers.append(source)
        target = PgCluster(base / "dst", postgres_bin_dir(), pw.superuser, "prod-new").init().start()
        servers.append(target)
        seed_source(source, pw, with_pagila=with_pagila)
        seed_target(target, pw)
        bouncer.start(source, ["appdb"], {"app": scram_verifier(source, "app")})
        redis_server.start()
        slack.start()
        config = base / "pgmove.toml"
        # The watch after cutover lasts seconds here, not the quarter of an hour a real move gets.
        config.write_text(with_hooks(_config(redis_server.url, source, target, bouncer), write_hooks(base)).replace(
            "lease_seconds = 10\n", "lease_seconds = 10\nwatch_minutes = 0.1\nwatch_sample_seconds = 2\n"))
        port = free_port()
        env = {**os.environ, "PGMOVE_PROD_OLD_PASSWORD": pw.source_pgmove, "PGMOVE_PROD_NEW_PASSWORD": pw.target_pgmove,
               "PGMOVE_POOLER_PASSWORD": bouncer.admin_password,
               "SLACK_BOT_TOKEN": slack.bot_token, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": slack.api_url}
        env.pop("SLACK_APP_TOKEN", None)
        for args, log in ((["worker"], "worker.log"), (["bot", "--port", str(port), "--host", "127.0.0.1"], "bot.log")):
            processes.append(subprocess.Popen([sys.executable, "-m", "pgmove.cli", "--config", str(config), "--log-level", "INFO", *args],
                                              env=env, cwd=base, stdout=open(base / log, "ab"), stderr=subprocess.STDOUT))  # noqa: SIM115
        store = Store.from_url(redis_server.url)
        drive = Driver(slack, SIGNING_SECRET, bot_url=f"http://127.0.0.1:{port}/slack/events")
        wait_until(lambda: _listening(port), 30, "the bot")
        writer = LiveWriter(bouncer.dsn("app", "appdb"), pw.app, pause_files(base))
        writer.start()
        say(f"logs: {base}/worker.log, {base}/bot.log; the app keeps inserting into appdb through PgBouncer "
            f"(port {bouncer.port}), which sends it to prod-old\n")

        ok = _play(drive, slack, store)
        if ok:  # the app's next writes, through the same pooler session, now land on prod-new
            seen = len(writer.acked)
            wait_until(lambda: len(writer.acked) >= seen + 10, 30, "the app's writes after the cutover")
            ok = _watched(slack, source, pw)
        writer.stop.set()
        writer.join()
        with psycopg.connect(target.admin_dsn("appdb")) as conn:
            on_target = {r[0] for r in conn.execute("SELECT id FROM orders WHERE customer = 'live'").fetchall()}
        lost = {i for i, _ in writer.acked} - on_target
        after = sum(1 for _, port in writer.acked if port == target.port)
        time.sleep(1.0)  # let the notifier post the last report
        transcript = as_text(slack, "C_DBMIG")
        print(transcript)
        Path("demo-transcript.txt").write_text(transcript)
        Path("demo-transcript.html").write_text(as_html(slack, "C_DBMIG"))
        say(f"the app's writer, through PgBouncer: {len(writer.acked) - after} inserts acknowledged by prod-old, "
            f"{after} by prod-new after the switch, {len(lost)} of them missing on prod-new; paused by the "
            f"pause_app_hook for {writer.paused_seconds:.1f}s (freeze to cutover); {writer.refused} refused while "
            f"frozen (read-only, by design); {len(writer.errors)} other client errors"
            + (f": {writer.errors[:3]}" if writer.errors else ""))
        if slack.errors:
            say(f"Slack would have refused {len(slack.errors)} call(s): {slack.errors[:3]}")
        say(f"transcript: {Path('demo-transcript.html').resolve()}")
        success = ok and not lost and not slack.errors and not writer.errors and after > 0
        say("demo " + ("succeeded" if success else "FAILED"))
        return 0 if success else 1
    finally:
        if writer is not None:
            writer.stop.set()
        for proc in processes:
            proc.terminate()
            proc.wait(timeout=30)
        slack.stop()
        if keep:
            say(f"servers left running under {base}")
        else:
            bouncer.stop()
            for cluster in servers:
                cluster.stop()
            redis_server.stop()
            shutil.rmtree(base, ignore_errors=True)


def _play(drive: Any, slack: Any, store: Store) -> bool:
    def state() -> str | None:
        m = store.active_for("prod-old")
        return m.state.value if m else None

    def until(*states: str) -> bool:
        wait_until(lambda: state() in (*states, "failed", "verify_failed"), 600, f"state {states}")
        say(f"   ... prod-old is now {state()}")
        return state() in states

    def request(needle: str) -> Any:
        return wait_until(lambda: next((m for m in reversed(slack.channel_messages("C_DBMIG")) if needle in m.all_text()), None),
                     30, needle)

    say("alice announces the maintenance window to the channel")
    drive.command("U_ALICE", "/pgmove announce prod-old now 1h")
    request("Maintenance of prod-old")
    say("alice plans the move")
    drive.command("U_ALICE", "/pgmove plan prod-old prod-new --jobs 2")
    if not until("ready"):
        return False
    wait_until(lambda: any("pgmove mig-" in m.all_text() for m in slack.channel_messages("C_DBMIG")), 30, "the status message")
    say("alice asks to freeze prod-old, then tries to approve her own request")
    drive.command("U_ALICE", "/pgmove freeze prod-old")
    freeze = request("Approve freeze")
    drive.click("U_ALICE", freeze, "pgmove_approve")
    wait_until(lambda: slack.ephemerals_for("U_ALICE"), 10, "alice's refusal")
    say("bob approves: freeze, copy, verification")
    drive.click("U_BOB", freeze, "pgmove_approve")
    if not until("verified"):
        return False
    say("alice asks for cutover; bob approves")
    drive.command("U_ALICE", "/pgmove cutover prod-old")
    drive.click("U_BOB", request("Approve cutover"), "pgmove_approve")
    return until("cut_over")


def _watched(slack: Any, source: PgCluster, pw: Secrets) -> bool:
    """The watch after cutover, with a nightly report job nobody switched: it still connects to prod-old directly,
    and the summary in the thread must name it."""
    say("a nightly report job, never switched, connects to prod-old directly; pgmove watches both servers")
    with psycopg.connect(source.tcp_dsn("reporter", "appdb"), password=pw.reporter, application_name="nightly-report"):
        summary = wait_until(lambda: next((m.all_text() for m in slack.messages if "still on prod-old" in m.all_text()),
                                          None), 60, "the watch summary")
    say("the watch's summary in the thread: " + _first_line(summary))
    return "reporter (nightly-report)" in summary


def _first_line(text: str) -> str:
    found = re.search(r"prod-new took [^\n\"]*", text)
    return found.group(0) if found else text.splitlines()[0]


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def _config(redis_url: str, source: PgCluster, target: PgCluster, bouncer: PgBouncer | None = None) -> str:
    """The demo's configuration; the benchmarks take it without a pooler."""
    return _servers(redis_url, source, target) + (_pooler(bouncer) if bouncer is not None else "")


def _servers(redis_url: str, source: PgCluster, target: PgCluster) -> str:
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


def _pooler(bouncer: PgBouncer) -> str:
    return f"""
[poolers.app]
admin_dsn = "{bouncer.admin_dsn()}"
password_env = "PGMOVE_POOLER_PASSWORD"
databases = ["appdb"]
databases_file = "{bouncer.databases_file}"
pause_timeout_seconds = 5
"""
