"""pgmove's copy against its peers, in one run, on the reference dataset.

    .venv/bin/python -m bench.copy [--runs 3] [--scale 50] [--jobs 2]

Each contender starts from the same empty target and ends at the same state: data, indexes,
constraints and planner statistics (ANALYZE) in all three databases.
  - pipe: pg_dump -Fc | pg_restore, database by database, then ANALYZE
  - directory: pg_dump -Fd -j N to a directory, pg_restore -j N, then ANALYZE
  - pgcopydb: `pgcopydb clone --table-jobs N --index-jobs N` per database (Debian's package; it runs
    VACUUM ANALYZE itself)
  - pgmove: the copy step (steps.copy.run) with N jobs
Prints every time, the medians and pgmove's ratios; asserts nothing. Goals on a 2-core machine:
pgmove at most 0.9x pgcopydb and at most 0.75x the pipe.

The floor, timed in the same run: the data streams alone (binary COPY to COPY, N at a time, largest
first, into tables with no index) plus the index and constraint builds alone (pg_restore -jN of the
post-data), schema time left out. Goal: pgmove at most 1.15x the floor.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from bench import dataset  # noqa: E402
from pgmove.sandbox.sampledata import Secrets  # noqa: E402
from pgmove.sandbox.servers import PgCluster, postgres_bin_dir, temp_base  # noqa: E402
from pgmove.steps import copy  # noqa: E402
from pgmove.steps.connect import Endpoint  # noqa: E402
from pgmove.steps.tools import choose_toolset  # noqa: E402


def reset(target: PgCluster) -> None:
    for db in dataset.DATABASES:
        target.psql("-c", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    target.psql("-c", "CHECKPOINT")


def analyze(target: PgCluster) -> None:
    for db in dataset.DATABASES:
        target.psql("-c", "ANALYZE", dbname=db)


def pipe(source: PgCluster, target: PgCluster, jobs: int) -> None:
    for db in dataset.DATABASES:
        target.psql("-c", f"CREATE DATABASE {db}")
        dump = subprocess.Popen([str(source.bin_dir / "pg_dump"), "-Fc", "-d", source.admin_dsn(db)], stdout=subprocess.PIPE)
        subprocess.run([str(target.bin_dir / "pg_restore"), "--exit-on-error", "-d", target.admin_dsn(db)], stdin=dump.stdout,
                       check=True, capture_output=True)
        assert dump.wait() == 0
    analyze(target)


def directory(source: PgCluster, target: PgCluster, jobs: int) -> None:
    staging = Path(tempfile.mkdtemp(prefix="pgmove-bench-dir-"))
    try:
        for db in dataset.DATABASES:
            target.psql("-c", f"CREATE DATABASE {db}")
            out = staging / db
            subprocess.run([str(source.bin_dir / "pg_dump"), "-Fd", f"-j{jobs}", "-f", str(out), "-d", source.admin_dsn(db)],
                           check=True, capture_output=True)
            subprocess.run([str(target.bin_dir / "pg_restore"), "--exit-on-error", f"-j{jobs}", "-d", target.admin_dsn(db),
                            str(out)], check=True, capture_output=True)
        analyze(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def pgcopydb(source: PgCluster, target: PgCluster, jobs: int) -> None:
    env = {**os.environ, "PATH": f"{source.bin_dir}{os.pathsep}{os.environ['PATH']}"}
    for db in dataset.DATABASES:
        target.psql("-c", f"CREATE DATABASE {db}")
        work = Path(tempfile.mkdtemp(prefix="pgmove-bench-pgcopydb-"))
        try:
            done = subprocess.run(["pgcopydb", "clone", "--source", source.admin_dsn(db), "--target", target.admin_dsn(db),
                                   "--table-jobs", str(jobs), "--index-jobs", str(jobs), "--dir", str(work)],
                                  env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"pgcopydb failed on {db}: {done.stderr[-2000:]}")
        finally:
            shutil.rmtree(work, ignore_errors=True)


def pgmove(source: PgCluster, target: PgCluster, jobs: int) -> None:
    toolset = choose_toolset(source.major, target.major)
    assert toolset is not None
    job = copy.CopyJob(Endpoint("src", source.admin_dsn()), Endpoint("dst", target.admin_dsn()), dataset.DATABASES,
                       jobs, toolset, None, None, [])
    copy.run(job, lambda *a, **k: None, lambda name: None, lambda: False)


def floor(source: PgCluster, target: PgCluster, jobs: int) -> tuple[float, float]:
    """(data streams alone, index builds alone), in seconds."""
    staging = Path(tempfile.mkdtemp(prefix="pgmove-bench-floor-"))
    tables: list[tuple[int, str, str]] = []
    try:
        for db in dataset.DATABASES:
            target.psql("-c", f"CREATE DATABASE {db}")
            dump = staging / f"{db}.dump"
            subprocess.run([str(source.bin_dir / "pg_dump"), "-Fc", "--section=pre-data", "--section=post-data",
                            "-f", str(dump), "-d", source.admin_dsn(db)], check=True, capture_output=True)
            subprocess.run([str(target.bin_dir / "pg_restore"), "--section=pre-data", "-d", target.admin_dsn(db), str(dump)],
                           check=True, capture_output=True)
            with psycopg.connect(source.admin_dsn(db)) as conn:
                tables += [(int(size), db, ident) for size, ident in conn.execute(
                    "SELECT pg_relation_size(c.oid), format('%I.%I', n.nspname, c.relname) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
                    "AND n.nspname NOT IN ('pg_catalog', 'information_schema')").fetchall()]

        def stream(db: str, ident: str) -> None:
            """psql to psql, binary, into an emptied table in the same transaction with FREEZE: the cheapest path."""
            out = subprocess.Popen([str(source.bin_dir / "psql"), "-X", "-q", "-d", source.admin_dsn(db),
                                    "-c", f"COPY {ident} TO STDOUT (FORMAT binary)"], stdout=subprocess.PIPE)
            subprocess.run([str(target.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target.admin_dsn(db),
                            "-c", "SET session_replication_role = replica", "-c", "BEGIN", "-c", f"TRUNCATE ONLY {ident}",
                            "-c", f"COPY {ident} FROM STDIN (FORMAT binary, FREEZE)", "-c", "COMMIT"],
                           stdin=out.stdout, check=True, capture_output=True)
            assert out.wait() == 0

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for f in [pool.submit(stream, db, ident) for _, db, ident in sorted(tables, reverse=True)]:
                f.result()
        data = time.monotonic() - started
        started = time.monotonic()
        for db in dataset.DATABASES:
            subprocess.run([str(target.bin_dir / "pg_restore"), "--section=post-data", f"-j{jobs}", "-d",
                            target.admin_dsn(db), str(staging / f"{db}.dump")], check=True, capture_output=True)
        return data, time.monotonic() - started
    finally:
        shutil.rmtree(staging, ignore_errors=True)


CONTENDERS: dict[str, Callable[[PgCluster, PgCluster, int], None]] = {
    "pipe (pg_dump -Fc | pg_restore)": pipe,
    "directory (pg_dump -Fd -jN / pg_restore -jN)": directory,
    "pgcopydb clone": pgcopydb,
    "pgmove": pgmove,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scale", type=int, default=50)
    parser.add_argument("--doc-rows", type=int, default=2_000_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", action="append", help="run only contenders whose name starts with this")
    args = parser.parse_args()
    if shutil.which("pgcopydb") is None:
        print("pgcopydb is not installed (Debian: apt-get install pgcopydb); it is left out", flush=True)
        CONTENDERS.pop("pgcopydb clone")
    contenders = {k: v for k, v in CONTENDERS.items() if not args.only or any(k.startswith(o) for o in args.only)}
    base = temp_base("pgmove-bench-copy-")
    pw = Secrets()
    source = PgCluster(base / "src", postgres_bin_dir(), pw.superuser, "src").init().start()
    target = PgCluster(base / "dst", postgres_bin_dir(), pw.superuser, "dst").init().start()
    try:
        t0 = time.monotonic()
        dataset.build(source, args.scale, args.doc_rows)
        print(f"dataset: {dataset.size_bytes(source) / 1e9:.2f} GB in {', '.join(dataset.DATABASES)} "
              f"(built in {time.monotonic() - t0:.0f}s); {args.jobs} jobs; {os.cpu_count()} cores", flush=True)
        times: dict[str, list[float]] = {name: [] for name in contenders}
        floors: list[float] = []
        for run in range(args.runs):
            if "pgmove" in contenders:
                reset(target)
                data, index = floor(source, target, args.jobs)
                floors.append(data + index)
                print(f"run {run + 1}: floor: data streams {data:.1f}s + index builds {index:.1f}s", flush=True)
            for name, contender in contenders.items():  # interleaved, so drift in the machine hits all alike
                reset(target)
                started = time.monotonic()
                contender(source, target, args.jobs)
                times[name].append(time.monotonic() - started)
                print(f"run {run + 1}: {name}: {times[name][-1]:.1f}s", flush=True)
        medians = {name: statistics.median(t) for name, t in times.items()}
        for name, median in medians.items():
            print(f"median {name}: {median:.1f}s")
        if "pgmove" in medians:
            ours = medians["pgmove"]
            for name, median in medians.items():
                if name != "pgmove":
                    print(f"pgmove / {name}: {ours / median:.2f}x")
            print(f"pgmove / floor (streams + index builds alone): {ours / statistics.median(floors):.2f}x")
            print("goals: <= 0.90x pgcopydb, <= 0.75x the pipe, <= 1.15x the floor")
    finally:
        source.stop()
        target.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
