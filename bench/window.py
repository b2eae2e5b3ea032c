"""The offline write-downtime window end to end, through the real worker, on the reference dataset.

    .venv/bin/python -m bench.window [--runs 3] [--scale 50] [--jobs 2]

One run: `freeze` approved -> frozen -> copied -> verified, timed from the approval to `verified` as the
CLI sees it, then `unfreeze` (not timed) so the next run starts from a writable source and copies afresh.
Beside the window it prints the copy step alone and the verify step alone, from the same run's step
records, and how many tables the copy hashed on each side for the verification (the source's, and the
target's as each table landed, of which the verification reused those proven unchanged). Goal on a 2-core
machine: window/copy <= 1.2. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import dataset  # noqa: E402
from pgmove.sandbox.demo import _config  # noqa: E402
from pgmove.sandbox.sampledata import Secrets, seed_source, seed_target  # noqa: E402
from pgmove.sandbox.servers import PgCluster, RedisServer, postgres_bin_dir, temp_base  # noqa: E402

PGMOVE = [sys.executable, "-m", "pgmove.cli"]


def seconds(step: dict[str, object]) -> float:
    started = datetime.fromisoformat(str(step["started_at"]))
    finished = datetime.fromisoformat(str(step["finished_at"]))
    return (finished - started).total_seconds()


def last(steps: list[dict[str, object]], name: str) -> dict[str, object]:
    return [s for s in steps if s["name"] == name][-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=int, default=50)
    parser.add_argument("--doc-rows", type=int, default=2_000_000)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    base = temp_base("pgmove-bench-window-")
    pw = Secrets()
    source = PgCluster(base / "src", postgres_bin_dir(), pw.superuser, "src").init().start()
    target = PgCluster(base / "dst", postgres_bin_dir(), pw.superuser, "dst").init().start()
    redis_server = RedisServer(base / "redis").start()
    worker = None
    try:
        seed_source(source, pw, with_pagila=False)
        seed_target(target, pw)
        t0 = time.monotonic()
        dataset.build(source, args.scale, args.doc_rows)
        print(f"dataset: {dataset.size_bytes(source) / 1e9:.2f} GB in {', '.join(dataset.DATABASES)} and the sample "
              f"databases (built in {time.monotonic() - t0:.0f}s); {args.jobs} jobs; {os.cpu_count()} cores", flush=True)
        config = base / "pgmove.toml"
        config.write_text(_config(redis_server.url, source, target).replace("freeze_grace_seconds = 3",
                                                                             "freeze_grace_seconds = 3\nlease_seconds = 60", 1)
                          .replace("lease_seconds = 10\n", "", 1)
                          # both people on this one OS user: a bench rig, never a deployment
                          + f'\n[access.cli_users]\n{pwd.getpwuid(os.getuid()).pw_name} = ["U_ALICE", "U_BOB"]\n')
        env = {**os.environ, "PGMOVE_PROD_OLD_PASSWORD": pw.source_pgmove, "PGMOVE_PROD_NEW_PASSWORD": pw.target_pgmove}

        def do(user: str, text: str, *flags: str) -> dict[str, object]:
            done = subprocess.run([*PGMOVE, "--config", str(config), "do", "--as", user, "--json", *flags, text],
                                  env=env, capture_output=True, text=True, cwd=REPO, check=False)
            if done.returncode not in (0, 1):
                raise SystemExit(f"`{text}` as {user} exited {done.returncode}: {done.stderr or done.stdout}")
            return dict(json.loads(done.stdout))

        worker = subprocess.Popen([*PGMOVE, "--config", str(config), "worker"], env=env, cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        do("U_ALICE", f"plan prod-old prod-new --jobs {args.jobs}", "--wait")
        windows, copies, verifies = [], [], []
        for run in range(args.runs):
            do("U_ALICE", "freeze prod-old")
            started = time.monotonic()
            done = do("U_BOB", "approve prod-old", "--wait", "--timeout", "3600")
            window = time.monotonic() - started
            if done["state"] != "verified":
                raise SystemExit(f"run {run + 1} ended {done['state']}: {done.get('failure')}")
            steps = list(done["steps"])  # type: ignore[call-overload]
            windows.append(window)
            copies.append(seconds(last(steps, "copy")))
            verifies.append(seconds(last(steps, "verify")))
            copied, verified = dict(last(steps, "copy")["result"]), dict(last(steps, "verify")["result"])  # type: ignore[call-overload]
            print(f"run {run + 1}: window {window:.1f}s (freeze {seconds(last(steps, 'freeze')):.1f}s, copy "
                  f"{copies[-1]:.1f}s, verify {verifies[-1]:.1f}s); hashed during the copy: source "
                  f"{copied.get('source_tables_hashed', 0)}, target {copied.get('target_tables_hashed', 0)} of "
                  f"{verified.get('tables', 0)} tables; the verification reused source {verified.get('source_hashed_during_copy', 0)}, "
                  f"target {verified.get('target_hashed_during_copy', 0)} (target changed since: "
                  f"{verified.get('target_changed_since_hashed', 0)})", flush=True)
            do("U_ALICE", "unfreeze prod-old", "--wait")
        window, copy, verify = (statistics.median(x) for x in (windows, copies, verifies))
        print(f"median: copy {copy:.1f}s, verify {verify:.1f}s; goal window/copy <= 1.2")
        print(f"window: {window:.1f}s copy: {copy:.1f}s window/copy: {window / copy:.2f}")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait()
        source.stop()
        target.stop()
        redis_server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
