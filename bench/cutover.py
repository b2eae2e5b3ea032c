"""The logical method's one-approval cutover under load, without and with PgBouncer: the write gap the app sees.

    .venv/bin/python -m bench.cutover [--runs 3] [--scale 50] [--doc-rows 2000000] [--tps 100] [--window 60]

The reference dataset is built once on a stopped "golden" source; each run clones it, starts a fresh target,
Redis and worker, and runs a TPC-B-like load (threads on `bench`) and a probe (a timestamped row into appdb every
10 ms) from before the plan to after the switch. Then plan --method logical, sync, cutover --window, one approval.
  - pooler none: the app connects to the server named in a file; the cutover hook writes the target's host and
    port there (never a password); a client that gets any error waits 100 ms, as an app backs off, and reconnects
    to whatever the file names. (Without the back-off the reconnect storm of failed logins slowed the window 3x.)
  - pooler pgbouncer: the app connects through PgBouncer (transaction pooling), which pgmove pauses and repoints.
Per run: write gap (first acknowledged probe commit on the target minus the last on the source, client clocks),
client errors (probe + load, the whole run; each failed attempt counts), the p99 and max of the probe's attempts
(failed ones included) from the approval to the later of its return and the first commit on the target (a paused
probe makes one long attempt: the max shows it, not the p99), the switch step's seconds, the verification while
in sync (outside the window) and what of it was left to the window (the ranges still changing, read again), and the
switch's timeline from the migration's events. Medians of the runs per mode. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import dataset  # noqa: E402
from pgmove.sandbox.pgbouncer import PgBouncer, scram_verifier  # noqa: E402
from pgmove.sandbox.sampledata import Secrets, seed_source, seed_target  # noqa: E402
from pgmove.sandbox.servers import PgCluster, RedisServer, postgres_bin_dir, temp_base, wait_until  # noqa: E402
from pgmove.state.store import Store  # noqa: E402

PGMOVE = [sys.executable, "-m", "pgmove.cli"]
NOISE = ("ended session", "app can write", "poolers paused", "cutover hook", "a superuser", "recorded the settings")
DATABASES = ["appdb", "bench"]  # what the app uses: the probe's and the load's


class Client(threading.Thread):
    """One app connection that reconnects after any error, to the server the switch file names (or the pooler)."""

    def __init__(self, where: Path | str, db: str, password: str, every: float) -> None:
        super().__init__(daemon=True)
        self.where, self.db, self.password, self.every = where, db, password, every
        self.errors: list[tuple[float, float, str]] = []  # (attempt started, failed, the first line)
        self.stop = threading.Event()
        self.retry = 0.1

    def dsn(self) -> str:
        if isinstance(self.where, str):
            return self.where
        host, port = self.where.read_text().split()
        return f"host={host} port={port} user=app dbname={self.db}"

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                # Nothing prepared: transaction pooling hands each transaction any server connection.
                conn = conn or psycopg.connect(self.dsn(), password=self.password, autocommit=True, connect_timeout=3,
                                               prepare_threshold=None)
                self.work(conn, started)
            except psycopg.Error as exc:
                text = str(exc).strip()
                self.errors.append((started, time.monotonic(), text.splitlines()[0] if text else type(exc).__name__))
                if conn is not None:
                    conn.close()
                conn = None
            pause = self.retry if conn is None else self.every  # an app backs off before it reconnects
            time.sleep(max(0.0, pause - (time.monotonic() - started)))
        if conn is not None:
            conn.close()

    def work(self, conn: psycopg.Connection[Any], started: float) -> None:
        raise NotImplementedError


class Probe(Client):
    def __init__(self, where: Path | str, password: str) -> None:
        super().__init__(where, "appdb", password, 0.01)
        self.acked: list[tuple[float, float, int]] = []  # (attempt started, acknowledged, server port)

    def work(self, conn: psycopg.Connection[Any], started: float) -> None:
        row = conn.execute("INSERT INTO probe (port) VALUES (inet_server_port()) RETURNING port").fetchone()
        self.acked.append((started, time.monotonic(), int(row[0]) if row else 0))


class Load(Client):
    """pgbench's TPC-B transaction, at `tps` per thread."""

    def __init__(self, where: Path | str, password: str, tps: float, scale: int) -> None:
        super().__init__(where, "bench", password, 1.0 / tps)
        self.scale, self.done = scale, 0

    def work(self, conn: psycopg.Connection[Any], started: float) -> None:
        aid, tid, bid = random.randint(1, 100_000 * self.scale), random.randint(1, 10 * self.scale), \
            random.randint(1, self.scale)
        delta = random.randint(-5000, 5000)
        with conn.transaction():
            conn.execute("UPDATE pgbench_accounts SET abalance = abalance + %s WHERE aid = %s", (delta, aid))
            conn.execute("SELECT abalance FROM pgbench_accounts WHERE aid = %s", (aid,))
            conn.execute("UPDATE pgbench_tellers SET tbalance = tbalance + %s WHERE tid = %s", (delta, tid))
            conn.execute("UPDATE pgbench_branches SET bbalance = bbalance + %s WHERE bid = %s", (delta, bid))
            conn.execute("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (%s, %s, %s, %s, now())",
                         (tid, bid, aid, delta))
        self.done += 1


def golden(base: Path, pw: Secrets, scale: int, doc_rows: int) -> PgCluster:
    """The source every run clones: sample data, the reference dataset, the probe's table, the load's grants."""
    source = PgCluster(base / "golden", postgres_bin_dir(), pw.superuser, "golden").init().start()
    seed_source(source, pw, with_pagila=False)
    dataset.build(source, scale, doc_rows)
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("SET ROLE app")
        conn.execute("CREATE TABLE probe (id serial PRIMARY KEY, port int NOT NULL, "
                     "committed_at timestamptz NOT NULL DEFAULT clock_timestamp())")
    with psycopg.connect(source.admin_dsn(), autocommit=True) as conn:
        conn.execute("GRANT CONNECT ON DATABASE bench TO app")
    with psycopg.connect(source.admin_dsn("bench"), autocommit=True) as conn:
        conn.execute("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO app")
    print(f"dataset: {dataset.size_bytes(source) / 1e9:.2f} GB in {', '.join(dataset.DATABASES)} and appdb, "
          f"scale {scale}; {os.cpu_count()} cores", flush=True)
    source.stop()
    return source


def config_text(redis_url: str, source: PgCluster, target: PgCluster, hook: Path, bouncer: PgBouncer | None) -> str:
    users = json.dumps(["U_ALICE", "U_BOB"])
    text = f"""redis_url = "{redis_url}"
freeze_grace_seconds = 2
lease_seconds = 10

[access]
operators = ["U_ALICE", "U_BOB"]
approvers = ["U_BOB"]
channels = ["C_DBMIG"]

[access.cli_users]
{pwd.getpwuid(os.getuid()).pw_name} = {users}

[servers.prod-old]
dsn = "{source.tcp_dsn('pgmove')}"
password_env = "PGMOVE_PROD_OLD_PASSWORD"
app_roles = ["app"]

[servers.prod-new]
dsn = "{target.tcp_dsn('pgmove')}"
password_env = "PGMOVE_PROD_NEW_PASSWORD"
app_roles = ["app"]
cutover_hook = ["{hook}"]
"""
    if bouncer is not None:
        text += f"""
[poolers.app]
admin_dsn = "{bouncer.admin_dsn()}"
password_env = "PGMOVE_POOLER_PASSWORD"
databases = {json.dumps(DATABASES)}
databases_file = "{bouncer.databases_file}"
pause_timeout_seconds = 5
"""
    return text


def one_run(base: Path, gold: PgCluster, pw: Secrets, pooled: bool, args: argparse.Namespace) -> dict[str, float]:
    source = gold.clone(base / "src", "prod-old").start()
    target = PgCluster(base / "dst", gold.bin_dir, pw.superuser, "prod-new").init().start()
    redis_server = RedisServer(base / "redis").start()
    bouncer = PgBouncer(base / "pgbouncer") if pooled else None
    clients: list[Client] = []
    worker = None
    try:
        seed_target(target, pw)
        switch_file, hook = base / "app-server", base / "switch-app"
        switch_file.write_text(f"127.0.0.1 {source.port}\n")
        hook.write_text(f'#!/bin/sh\necho "$PGHOST $PGPORT" > {switch_file}.new && mv {switch_file}.new {switch_file}\n')
        hook.chmod(0o755)
        if bouncer is not None:
            bouncer.start(source, DATABASES, {"app": scram_verifier(source, "app")})
        config = base / "pgmove.toml"
        config.write_text(config_text(redis_server.url, source, target, hook, bouncer))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update({"PGMOVE_PROD_OLD_PASSWORD": pw.source_pgmove, "PGMOVE_PROD_NEW_PASSWORD": pw.target_pgmove,
                    "PYTHONPATH": str(REPO)})
        if bouncer is not None:
            env["PGMOVE_POOLER_PASSWORD"] = bouncer.admin_password

        def do(user: str, text: str, *flags: str, refusal_ok: bool = False) -> dict[str, Any]:
            done = subprocess.run([*PGMOVE, "--config", str(config), "do", "--as", user, "--json", *flags, text],
                                  env=env, capture_output=True, text=True, cwd=REPO, check=False)
            if done.returncode not in (0, 1) and refusal_ok:
                print(f"  refused, asking again: {(done.stdout + done.stderr).strip()[:200]}", flush=True)
                return {}
            if done.returncode not in (0, 1):
                raise SystemExit(f"`{text}` as {user} exited {done.returncode}: {done.stderr or done.stdout}")
            return dict(json.loads(done.stdout))

        worker = subprocess.Popen([*PGMOVE, "--config", str(config), "worker"], env=env, cwd=REPO,
                                  stdout=open(base / "worker.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        where: Path | str = switch_file
        if bouncer is not None:
            where = bouncer.dsn("app", "appdb")
        probe = Probe(where, pw.app)
        load_where = bouncer.dsn("app", "bench") if bouncer is not None else switch_file
        loads = [Load(load_where, pw.app, args.tps / args.load_threads, args.scale) for _ in range(args.load_threads)]
        clients = [probe, *loads]
        for client in clients:
            client.start()
        wait_until(lambda: len(probe.acked) >= 20, 30, "the probe's first commits")
        planned = do("U_ALICE", "plan prod-old prod-new --method logical", "--wait")
        if planned["state"] != "ready":
            raise SystemExit(f"plan ended {planned['state']}: {planned.get('failure')}")
        t0 = time.monotonic()
        synced = do("U_ALICE", "sync prod-old", "--wait", "--timeout", "3600")
        if synced["state"] != "in_sync":
            raise SystemExit(f"sync ended {synced['state']}: {synced.get('failure')}")
        sync_seconds = time.monotonic() - t0
        given_back = 0
        while True:
            # Right after in_sync the lag may still be above the threshold: the request is refused, and asked again.
            wait_until(lambda: do("U_ALICE", f"cutover prod-old --window {args.window}s", refusal_ok=True)
                       .get("state") == "awaiting_cutover_approval", 120, "a cutover request the lag allows", every=1)
            approved = time.monotonic()
            final = do("U_BOB", "approve prod-old", "--wait", "--timeout", "600")
            returned = time.monotonic()
            if final["state"] == "cut_over":
                break
            why = [s.get("message") for s in final["steps"] if s["name"] == "switch"][-1:]
            if final["state"] != "in_sync" or given_back == 2:
                raise SystemExit(f"the cutover ended {final['state']}: {final.get('failure') or why}")
            given_back += 1  # the window gave the source back and replication goes on: an operator asks again
            print(f"  the window gave the source back ({str(why)[:300]}); asking for the cutover again", flush=True)
        timeline = Store.from_url(redis_server.url).events(str(final["id"]))
        wait_until(lambda: sum(1 for a in probe.acked if a[2] == target.port) >= 50, 60, "the probe on the target")
        time.sleep(0.5)
    finally:
        for client in clients:
            client.stop.set()
        for client in clients:
            client.join()
        if worker is not None:
            worker.terminate()
            worker.wait()
        if bouncer is not None:
            bouncer.stop()
        source.stop()
        target.stop()
        redis_server.stop()
    on_source = [a for a in probe.acked if a[2] == source.port]
    first_on_target = min(a[1] for a in probe.acked if a[2] == target.port)
    gap = first_on_target - max(a[1] for a in on_source if a[1] < first_on_target)
    # During the switch: every probe attempt from the approval to the later of its return and the first commit on
    # the target, failed ones included (their time is what the caller waited for the error).
    end = max(returned, first_on_target)
    attempts = [(started, done) for started, done, _ in probe.acked] + [(started, done) for started, done, _ in probe.errors]
    during = sorted(done - started for started, done in attempts if approved <= started <= end)
    switch = [s for s in final["steps"] if s["name"] == "switch"][-1]
    result = switch.get("result") or {}
    verification = final.get("verification") or {}
    paused = [p.get("paused_seconds", 0.0) for p in (result.get("poolers") or {}).values()]
    began = datetime.fromisoformat(str(switch["started_at"]))
    print("  switch timeline: " + "; ".join(f"+{(e.at - began).total_seconds():.2f}s {e.message[:60]}"
                                            for e in timeline if e.at >= began and not e.message.startswith(NOISE)),
          flush=True)
    said = Counter(text.split(":")[0][:60] for c in clients for _, _, text in c.errors)
    if said:
        print("  client errors: " + "; ".join(f"{n} x {text}" for text, n in said.most_common(4)), flush=True)
    return {"gap": gap, "errors": float(sum(len(c.errors) for c in clients)),
            "errors_during": float(sum(1 for c in clients for e in c.errors if approved <= e[0] <= end)),
            "p99": during[min(len(during) - 1, int(len(during) * 0.99))], "max": during[-1],
            "switch": float(result.get("seconds", 0.0)), "verify": float(verification.get("seconds", 0.0)),
            "live": float(verification.get("live_seconds", 0.0)), "hot": float(verification.get("hot_ranges", 0)),
            "drain": float((result.get("drain") or {}).get("seconds", 0.0)),
            "paused": max(paused) if paused else 0.0, "sync": sync_seconds, "approve": returned - approved,
            "given_back": float(given_back), "probe_commits": float(len(probe.acked)), "load_commits": float(sum(load.done for load in loads))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=int, default=50)
    parser.add_argument("--doc-rows", type=int, default=2_000_000)
    parser.add_argument("--tps", type=float, default=100.0, help="the load's transactions per second, all threads")
    parser.add_argument("--load-threads", type=int, default=4)
    parser.add_argument("--window", type=int, default=60)
    parser.add_argument("--modes", default="none,pgbouncer", help="none, pgbouncer or both (the ratio needs both)")
    args = parser.parse_args()
    base = temp_base("pgmove-bench-cutover-")
    pw = Secrets()
    try:
        t0 = time.monotonic()
        gold = golden(base, pw, args.scale, args.doc_rows)
        print(f"built in {time.monotonic() - t0:.0f}s; load {args.tps:g} tps in {args.load_threads} threads, probe "
              f"every 10 ms, window {args.window}s", flush=True)
        results: dict[str, list[dict[str, float]]] = {mode: [] for mode in args.modes.split(",")}
        for run in range(args.runs):
            for mode in results:  # interleaved, so a slow spell of the shared machine hits both modes alike
                r = one_run(base / f"run{run + 1}-{mode}", gold, pw, mode == "pgbouncer", args)
                shutil.rmtree(base / f"run{run + 1}-{mode}", ignore_errors=True)
                results[mode].append(r)
                print(f"run {run + 1} pooler {mode}: gap {r['gap']:.3f}s, errors {r['errors']:.0f} "
                      f"({r['errors_during']:.0f} during the switch), probe p99 {r['p99']:.3f}s max {r['max']:.3f}s "
                      f"during the switch; switch step {r['switch']:.2f}s (drain {r['drain']:.2f}s, verification "
                      f"inside the window {r['verify']:.2f}s for {r['hot']:.0f} hot ranges, in sync before it "
                      f"{r['live']:.2f}s, pooler paused {r['paused']:.3f}s); approval to "
                      f"cut_over {r['approve']:.1f}s; sync {r['sync']:.1f}s; {r['probe_commits']:.0f} probe and "
                      f"{r['load_commits']:.0f} load commits; windows given back first: {r['given_back']:.0f}",
                      flush=True)
        medians = {mode: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for mode, rs in results.items()}
        for mode, m in medians.items():
            share = m["verify"] / m["switch"] if m["switch"] else 0.0
            inside = m["verify"] / (m["verify"] + m["live"]) if m["verify"] + m["live"] else 0.0
            print(f"median pooler {mode}: gap {m['gap']:.3f}s, errors {m['errors']:.0f}, probe p99 {m['p99']:.3f}s, "
                  f"switch step {m['switch']:.2f}s; verification in sync {m['live']:.2f}s, inside the window "
                  f"{m['verify']:.2f}s ({inside:.0%} of the verification fell inside the window, {share:.0%} of the "
                  "switch step)")
        if set(medians) != {"none", "pgbouncer"}:
            return
        none, bouncer = medians["none"], medians["pgbouncer"]
        print(f"pooler/no-pooler: gap {bouncer['gap'] / none['gap']:.2f}x, errors {bouncer['errors']:.0f} vs "
              f"{none['errors']:.0f}, probe p99 {bouncer['p99'] / none['p99']:.2f}x")
        print(f"cutover: gap {none['gap']:.2f}s errors {none['errors']:.0f} pooler: none")
        print(f"cutover: gap {bouncer['gap']:.2f}s errors {bouncer['errors']:.0f} pooler: pgbouncer")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
