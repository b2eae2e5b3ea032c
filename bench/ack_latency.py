"""Ack latency of the bot under load: 200 concurrent signed /pgmove commands while a copy runs.

    .venv/bin/python -m bench.ack_latency [--commands 200] [--rows 3000000]

Prints p50/p95/p99/max of the time from sending the request to Slack getting its HTTP 200 (the ack).
Target: p99 under 300 ms. Not a test: it asserts nothing, it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pgmove.sandbox.demo import _config, _listening  # noqa: E402
from pgmove.sandbox.fakeslack.driver import Driver, sign  # noqa: E402
from pgmove.sandbox.fakeslack.server import FakeSlack  # noqa: E402
from pgmove.sandbox.sampledata import Secrets, seed_source, seed_target  # noqa: E402
from pgmove.sandbox.servers import PgCluster, RedisServer, free_port, postgres_bin_dir, temp_base, wait_until  # noqa: E402
from pgmove.state.store import Store  # noqa: E402

SECRET = "bench-signing-secret"


def _signed_command(slack: FakeSlack, i: int) -> bytes:
    """A whole HTTP request, signed ahead of time as Slack does before it sends."""
    body = urllib.parse.urlencode({
        "team_id": "T_TEAM", "channel_id": "C_DBMIG", "user_id": "U_ALICE", "command": "/pgmove",
        "text": "status prod-old", "trigger_id": f"bench-{i}-{time.time()}",
        "response_url": f"http://127.0.0.1:{slack.port}/respond/U_ALICE%3AC_DBMIG"}).encode()
    headers = {**sign(SECRET, body), "Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(len(body)),
               "Host": "127.0.0.1", "Connection": "close"}
    head = "POST /slack/events HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + body


def burst_from_own_process(port: int, requests: list[bytes]) -> list[float]:
    """The load comes from a process of its own, as Slack's does: nothing else competes with its timing."""
    import json as _json
    import pickle

    code = (f"import asyncio, json, pickle, sys; sys.path.insert(0, {str(REPO)!r}); from bench.ack_latency import burst; "
            f"reqs = pickle.loads(sys.stdin.buffer.read()); print(json.dumps(asyncio.run(burst({port}, reqs))))")
    done = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(requests), capture_output=True, check=True)
    return list(_json.loads(done.stdout))


async def burst(port: int, requests: list[bytes]) -> list[float]:
    """All requests at once from one event loop (200 client threads would mostly measure themselves)."""

    async def one(request: bytes) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        writer.write(request)
        await writer.drain()
        status = await reader.readline()
        took = time.monotonic() - started
        assert b" 200 " in status, status
        writer.close()
        return took

    return list(await asyncio.gather(*(one(r) for r in requests)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=200)
    parser.add_argument("--rows", type=int, default=6_000_000, help="rows in a big table, so the copy lasts")
    parser.add_argument("--no-copy", action="store_true", help="measure with the migration idle, for comparison")
    parser.add_argument("--bursts", type=int, default=5, help="bursts spread over the copy (its phases differ)")
    args = parser.parse_args()
    base = temp_base("pgmove-bench-")
    pw = Secrets()
    source = PgCluster(base / "src", postgres_bin_dir(), pw.superuser, "src").init().start()
    target = PgCluster(base / "dst", postgres_bin_dir(), pw.superuser, "dst").init().start()
    redis_server = RedisServer(base / "redis").start()
    slack = FakeSlack().start()
    procs = []
    try:
        seed_source(source, pw, with_pagila=False)
        seed_target(target, pw)
        with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
            conn.execute("CREATE TABLE big AS SELECT g AS id, md5(g::text) AS payload FROM generate_series(1, %s) g",
                         (args.rows,))
        config = base / "pgmove.toml"
        config.write_text(_config(redis_server.url, source, target))
        port = free_port()
        env = {**os.environ, "PGMOVE_PROD_OLD_PASSWORD": pw.source_pgmove, "PGMOVE_PROD_NEW_PASSWORD": pw.target_pgmove,
               "SLACK_BOT_TOKEN": slack.bot_token, "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": slack.api_url}
        for extra in (["worker"], ["bot", "--port", str(port), "--host", "127.0.0.1"]):
            procs.append(subprocess.Popen([sys.executable, "-m", "pgmove.cli", "--config", str(config), *extra], env=env, cwd=REPO,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_until(lambda: _listening(port), 30, "the bot")
        store = Store.from_url(redis_server.url)
        drive = Driver(slack, SECRET, bot_url=f"http://127.0.0.1:{port}/slack/events")
        drive.command("U_ALICE", "plan prod-old prod-new")
        wait_until(lambda: (m := store.active_for("prod-old")) and m.state.value == "ready", 60, "ready")
        if args.no_copy:
            acks = burst_from_own_process(port, [_signed_command(slack, i) for i in range(args.commands)])
            acks = sorted(a * 1000 for a in acks)
            q = statistics.quantiles(acks, n=100)
            print(f"{len(acks)} concurrent /pgmove commands, nothing running")
            print(f"ack latency ms: p50 {q[49]:.1f}  p95 {q[94]:.1f}  p99 {q[98]:.1f}  max {acks[-1]:.1f}")
            return
        drive.command("U_ALICE", "freeze prod-old")
        request = wait_until(lambda: next((m for m in slack.channel_messages("C_DBMIG") if "Approve freeze" in m.all_text()), None),
                        30, "the approval request")
        drive.click("U_BOB", request, "pgmove_approve")
        def state() -> str | None:
            m = store.active_for("prod-old")
            return m.state.value if m else None

        wait_until(lambda: state() == "copying", 60, "the copy")

        rounds = []
        for n in range(args.bursts):
            if state() != "copying":
                break
            rounds.append(sorted(a * 1000 for a in burst_from_own_process(
                port, [_signed_command(slack, n * args.commands + i) for i in range(args.commands)])))
            time.sleep(1.0)
        for n, acks in enumerate(rounds):
            q = statistics.quantiles(acks, n=100)
            print(f"burst {n + 1}: {len(acks)} concurrent commands during the copy: p50 {q[49]:.1f}  p99 {q[98]:.1f}  max {acks[-1]:.1f} ms")
        every = sorted(a for acks in rounds for a in acks)
        q = statistics.quantiles(every, n=100)
        print(f"all {len(every)} acks while copying: p50 {q[49]:.1f}  p95 {q[94]:.1f}  p99 {q[98]:.1f}  max {every[-1]:.1f} ms "
              f"(target p99 < 300)")
    finally:
        for p in procs:
            p.terminate()
        slack.stop()
        for cluster in (source, target):
            cluster.stop()
        redis_server.stop()


if __name__ == "__main__":
    main()
