"""Initial sync by logical replication against pgmove's offline copy, on the reference dataset.

    .venv/bin/python -m bench.sync [--runs 1] [--scale 50] [--jobs 2]

  - copy: the offline copy step (steps.copy.run), N jobs: what a copy_data=false subscription would add to
  - subscription: steps.replication.setup.start (roles, schema, publications, subscriptions with copy_data=true)
    until status says every table is ready and the lag is under 64 kB; then cleanup
  - snapshot: the same with initial_copy="snapshot": pgmove copies at the slot's exported snapshot, then
    subscribes with copy_data=false
Prints every time and the medians; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import dataset  # noqa: E402
from bench.copy import reset  # noqa: E402
from pgmove.sandbox.sampledata import Secrets  # noqa: E402
from pgmove.sandbox.servers import PgCluster, postgres_bin_dir, temp_base, wait_until  # noqa: E402
from pgmove.steps import copy  # noqa: E402
from pgmove.steps.connect import Endpoint  # noqa: E402
from pgmove.steps.replication import cleanup, setup, status  # noqa: E402
from pgmove.steps.tools import choose_toolset  # noqa: E402


def offline(src: Endpoint, dst: Endpoint, jobs: int) -> float:
    toolset = choose_toolset(15, 15)
    assert toolset is not None
    started = time.monotonic()
    copy.run(copy.CopyJob(src, dst, dataset.DATABASES, jobs, toolset, None, None, []), lambda *a, **k: None,
             lambda name: None, lambda: False)
    return time.monotonic() - started


def subscription(src: Endpoint, dst: Endpoint, jobs: int, initial_copy: str) -> tuple[float, float]:
    toolset = choose_toolset(15, 15)
    assert toolset is not None
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="pgmove-bench-sync-")
    try:
        done = setup.start(src, dst, dataset.DATABASES, "bench", replica_identity_full=False, toolset=toolset,
                           work_dir=work, jobs=jobs, record=lambda s: None, progress=lambda *a, **k: None,
                           should_stop=lambda: False, initial_copy=initial_copy)
        schema_done = time.monotonic() - started
        wait_until(lambda: status.read(src, dst, done, max_retained_wal_bytes=1 << 40).in_sync(64 * 1024), 3600,
                   "in sync", every=0.5)
        total = time.monotonic() - started
        cleanup.run(src, dst, "bench", done, lambda *a, **k: None)
        return schema_done, total
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--scale", type=int, default=50)
    parser.add_argument("--doc-rows", type=int, default=2_000_000)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    base = temp_base("pgmove-bench-sync-")
    pw = Secrets()
    source = PgCluster(base / "src", postgres_bin_dir(15), pw.superuser, "src").init().start()
    target = PgCluster(base / "dst", postgres_bin_dir(15), pw.superuser, "dst").init().start()
    src = Endpoint("src", source.tcp_dsn("postgres"), pw.superuser)
    dst = Endpoint("dst", target.tcp_dsn("postgres"), pw.superuser)
    try:
        t0 = time.monotonic()
        dataset.build(source, args.scale, args.doc_rows)
        print(f"dataset: {dataset.size_bytes(source) / 1e9:.2f} GB in {', '.join(dataset.DATABASES)} "
              f"(built in {time.monotonic() - t0:.0f}s); {args.jobs} jobs; {os.cpu_count()} cores", flush=True)
        copies: list[float] = []
        syncs: dict[str, list[float]] = {"subscription": [], "snapshot": []}
        for run in range(args.runs):
            reset(target)
            copies.append(offline(src, dst, args.jobs))
            print(f"run {run + 1}: offline copy: {copies[-1]:.1f}s", flush=True)
            for mode in syncs:
                reset(target)
                schema_done, total = subscription(src, dst, args.jobs, mode)
                syncs[mode].append(total)
                print(f"run {run + 1}: initial copy by {mode}: setup returned after {schema_done:.1f}s, in sync after "
                      f"{total:.1f}s", flush=True)
        print(f"median offline copy: {statistics.median(copies):.1f}s")
        for mode, times in syncs.items():
            print(f"median in sync, initial copy by {mode}: {statistics.median(times):.1f}s")
    finally:
        source.stop()
        target.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
