"""Large objects: pgmove's copy against pg_dump | pg_restore, in one run, per kind of database.

    .venv/bin/python -m bench.large_objects [--runs 3] [--small 100000] [--big 3] [--big-mb 100] [--jobs 2]

Two databases, reported separately: `lo_small` holds many small objects (a few hundred bytes each, as an
app storing attachments or documents does), `lo_big` a few objects of a hundred megabytes. Each
contender starts from an empty target database; pgmove's time includes its schema work. Prints every
time, the medians and pgmove's ratio to the pipe. Asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pgmove.sandbox.sampledata import Secrets  # noqa: E402
from pgmove.sandbox.servers import PgCluster, postgres_bin_dir, temp_base  # noqa: E402
from pgmove.steps import copy  # noqa: E402
from pgmove.steps.connect import Endpoint  # noqa: E402
from pgmove.steps.tools import choose_toolset  # noqa: E402


def build(source: PgCluster, small: int, big: int, big_mb: int) -> None:
    source.psql("-c", "CREATE DATABASE lo_small")
    source.psql("-c", "CREATE DATABASE lo_big")
    with psycopg.connect(source.admin_dsn("lo_small"), autocommit=True) as conn:
        conn.execute("SELECT lo_from_bytea(0, convert_to(repeat(md5(g::text), 1 + g %% 20), 'UTF8')) "
                     "FROM generate_series(1, %s) g", (small,))
    with psycopg.connect(source.admin_dsn("lo_big"), autocommit=True) as conn:
        for _ in range(big):  # random bytes, so no layer of the path can compress them away
            oid = conn.execute("SELECT lo_create(0)").fetchone()[0]  # type: ignore[index]
            for mb in range(big_mb):
                conn.execute("SELECT lo_put(%s, %s, decode(string_agg(md5(random()::text), ''), 'hex')) "
                             "FROM generate_series(1, 65536)", (oid, mb << 20))


def pipe(source: PgCluster, target: PgCluster, db: str, jobs: int) -> None:
    target.psql("-c", f"CREATE DATABASE {db}")
    dump = subprocess.Popen([str(source.bin_dir / "pg_dump"), "-Fc", "-d", source.admin_dsn(db)], stdout=subprocess.PIPE)
    subprocess.run([str(target.bin_dir / "pg_restore"), "--exit-on-error", "-d", target.admin_dsn(db)],
                   stdin=dump.stdout, check=True, capture_output=True)
    assert dump.wait() == 0


def pgmove(source: PgCluster, target: PgCluster, db: str, jobs: int) -> None:
    toolset = choose_toolset(source.major, target.major)
    assert toolset is not None
    job = copy.CopyJob(Endpoint("src", source.admin_dsn()), Endpoint("dst", target.admin_dsn()), [db], jobs, toolset,
                       None, None, [])
    copy.run(job, lambda *a, **k: None, lambda name: None, lambda: False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--big", type=int, default=3)
    parser.add_argument("--big-mb", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    base = temp_base("pgmove-bench-lo-")
    pw = Secrets()
    source = PgCluster(base / "src", postgres_bin_dir(), pw.superuser, "src").init().start()
    target = PgCluster(base / "dst", postgres_bin_dir(), pw.superuser, "dst").init().start()
    try:
        t0 = time.monotonic()
        build(source, args.small, args.big, args.big_mb)
        print(f"lo_small: {args.small} objects; lo_big: {args.big} x {args.big_mb} MB (built in "
              f"{time.monotonic() - t0:.0f}s); {args.jobs} jobs", flush=True)
        for db in ("lo_small", "lo_big"):
            times: dict[str, list[float]] = {"pipe (pg_dump -Fc | pg_restore)": [], "pgmove": []}
            for run in range(args.runs):
                for name, contender in (("pipe (pg_dump -Fc | pg_restore)", pipe), ("pgmove", pgmove)):
                    target.psql("-c", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
                    started = time.monotonic()
                    contender(source, target, db, args.jobs)
                    times[name].append(time.monotonic() - started)
                    print(f"{db} run {run + 1}: {name}: {times[name][-1]:.1f}s", flush=True)
            ours, peer = statistics.median(times["pgmove"]), statistics.median(times["pipe (pg_dump -Fc | pg_restore)"])
            print(f"{db}: pgmove {ours:.1f}s, pipe {peer:.1f}s, pgmove / pipe: {ours / peer:.2f}x", flush=True)
    finally:
        source.stop()
        target.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
