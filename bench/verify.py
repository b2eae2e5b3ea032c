"""Full verification against the floor of its own work, on the reference dataset.

    .venv/bin/python -m bench.verify [--runs 3] [--scale 50]

The floor: one parallel pass on both servers that reads every row once and hashes it
(count(*), sum(hashtextextended(t::text, 0)) per table, all tables at once). The copy it is
measured against: pg_dump -Fc | pg_restore per database. Goals: pgmove at most 1.3x the floor and
at most a third of the copy time. Prints medians and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import dataset  # noqa: E402
from pgmove.sandbox.sampledata import Secrets  # noqa: E402
from pgmove.sandbox.servers import PgCluster, postgres_bin_dir, temp_base  # noqa: E402
from pgmove.steps import verify  # noqa: E402
from pgmove.steps.connect import Endpoint  # noqa: E402


def copy_pipe(source: PgCluster, target: PgCluster) -> float:
    """The plain copy: pg_dump -Fc | pg_restore, database by database."""
    started = time.monotonic()
    for db in dataset.DATABASES:
        target.psql("-c", f"CREATE DATABASE {db}")
        dump = subprocess.Popen([str(source.bin_dir / "pg_dump"), "-Fc", "-d", source.admin_dsn(db)], stdout=subprocess.PIPE)
        subprocess.run([str(target.bin_dir / "pg_restore"), "--no-owner", "-d", target.admin_dsn(db)], stdin=dump.stdout,
                       check=True, capture_output=True)
        dump.wait()
    return time.monotonic() - started


def floor_pass(clusters: list[PgCluster]) -> float:
    tasks = []
    for cluster in clusters:
        for db in dataset.DATABASES:
            with psycopg.connect(cluster.admin_dsn(db)) as conn:
                tables = conn.execute("""SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                         WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')""").fetchall()
            tasks += [(cluster, db, t) for t in tables]

    def one(task) -> None:  # type: ignore[no-untyped-def]
        cluster, db, (schema, table) = task
        with psycopg.connect(cluster.admin_dsn(db)) as conn:
            conn.execute(sql.SQL("SELECT count(*), sum(hashtextextended(t::text, 0)) FROM {} t").format(
                sql.Identifier(schema, table))).fetchone()

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        list(pool.map(one, tasks))
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=int, default=50)
    parser.add_argument("--doc-rows", type=int, default=2_000_000)
    args = parser.parse_args()
    base = temp_base("pgmove-bench-verify-")
    pw = Secrets()
    source = PgCluster(base / "src", postgres_bin_dir(), pw.superuser, "src").init().start()
    target = PgCluster(base / "dst", postgres_bin_dir(), pw.superuser, "dst").init().start()
    try:
        for cluster, secret in ((source, pw.source_pgmove), (target, pw.target_pgmove)):
            cluster.psql("-c", f"CREATE ROLE pgmove SUPERUSER LOGIN PASSWORD '{secret}'")
        t0 = time.monotonic()
        dataset.build(source, args.scale, args.doc_rows)
        print(f"dataset: {dataset.size_bytes(source) / 1e9:.2f} GB in {', '.join(dataset.DATABASES)} "
              f"(built in {time.monotonic() - t0:.0f}s)", flush=True)
        copy_seconds = copy_pipe(source, target)
        print(f"copy (pg_dump -Fc | pg_restore): {copy_seconds:.1f}s", flush=True)
        for cluster in (source, target):
            for db in dataset.DATABASES:
                cluster.psql("-c", "VACUUM ANALYZE", dbname=db)
        src = Endpoint("src", source.tcp_dsn("pgmove"), pw.source_pgmove)
        dst = Endpoint("dst", target.tcp_dsn("pgmove"), pw.target_pgmove)
        floors, ours = [], []
        for run in range(args.runs):
            floors.append(floor_pass([source, target]))
            started = time.monotonic()
            result = verify.run(src, dst, dataset.DATABASES, None, lambda *a, **k: None, jobs=2)
            ours.append(time.monotonic() - started)
            print(f"run {run + 1}: floor {floors[-1]:.1f}s, pgmove verify {ours[-1]:.1f}s "
                  f"(ok={result.ok}, {result.rows:,} rows)", flush=True)
        floor, mine = statistics.median(floors), statistics.median(ours)
        print(f"median: floor {floor:.1f}s, pgmove full verification {mine:.1f}s, copy {copy_seconds:.1f}s")
        print(f"ratio to the floor: {mine / floor:.2f}x (goal <= 1.3x); share of the copy time: "
              f"{mine / copy_seconds:.2f} (goal <= 0.33)")
    finally:
        source.stop()
        target.stop()


if __name__ == "__main__":
    main()
