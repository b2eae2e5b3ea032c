"""The copy streams: the worker (with the client programs it starts) stays under 300 MB with a table bigger than that,
while it also hashes that table on both sides for the verification."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.slow

LIMIT = 300 * 1024 * 1024
BIG_ROWS = 330_000
WAIT = 900  # seconds: a bound for a broken test, never a synchronisation
# A table the copy cannot finish while the role gate_closed exists on the target (its CHECK waits for it to go, for
# pgmove there only): it holds the copy open until the test has seen the big table hashed on the target.
_GATE = """
CREATE FUNCTION public.gate_ok(x integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    WHILE coalesce(pg_catalog.current_setting('pgmove_test.gate', true), '') <> ''
          AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'gate_closed') LOOP
        PERFORM pg_catalog.pg_sleep(0.05);
    END LOOP;
    RETURN true;
END $$;
CREATE TABLE public.gate (id integer PRIMARY KEY CHECK (public.gate_ok(id)));
INSERT INTO public.gate VALUES (1);
"""


def _rss_of_tree(root: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            total += int((Path(f"/proc/{pid}/statm")).read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
        todo += children.get(pid, [])
    return total


def _rows_read(server) -> int:  # type: ignore[no-untyped-def]
    try:
        with psycopg.connect(server.admin_dsn("appdb"), autocommit=True) as conn:
            row = conn.execute("SELECT seq_tup_read FROM pg_stat_user_tables WHERE relid = 'public.big'::regclass").fetchone()
    except psycopg.Error:  # appdb or its tables not there yet
        return 0
    return int(row[0]) if row else 0


def _hashed_on_both_sides(source, target) -> bool:  # type: ignore[no-untyped-def]
    """The big table was read whole twice on each side: on the target by its primary key's build, then the hash; on
    the source by the copy's slices, then the hash (nothing else reads all its rows before the verification)."""
    return _rows_read(target) >= 2 * BIG_ROWS and _rows_read(source) >= 2 * BIG_ROWS


def _open_the_gate_once_hashed(source, target, seen: list[bool]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and not _hashed_on_both_sides(source, target):
        time.sleep(0.2)  # polling the servers' statistics, which a backend reports when it can
    seen.append(_hashed_on_both_sides(source, target))
    with psycopg.connect(target.admin_dsn("postgres"), autocommit=True) as conn:
        conn.execute("DROP ROLE gate_closed")


def test_a_table_bigger_than_the_bound_streams_through_a_worker_that_stays_under_it(pgmove, source, target):  # type: ignore[no-untyped-def]
    """A table larger than 300 MB is copied, and hashed on both sides while the copy still runs, by a worker whose
    process tree never holds 300 MB: the data streams, it is not buffered, and the hashing sums on the servers."""
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.big (id int PRIMARY KEY, payload text NOT NULL)")
        conn.execute("INSERT INTO public.big SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, %s) g", (BIG_ROWS,))
        size = conn.execute("SELECT pg_relation_size('public.big')").fetchone()[0]
        conn.execute(_GATE)
    assert size > LIMIT
    with psycopg.connect(target.admin_dsn("postgres"), autocommit=True) as conn:
        conn.execute("CREATE ROLE gate_closed")
        conn.execute("ALTER ROLE pgmove SET pgmove_test.gate = 'on'")
    seen: list[bool] = []
    opener = threading.Thread(target=_open_the_gate_once_hashed, args=(source, target, seen), daemon=True)
    worker = pgmove.start_worker()
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.wait(0.02):
            peak[0] = max(peak[0], _rss_of_tree(worker.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        assert pgmove.do("U_ALICE", "plan prod-old prod-new --databases appdb", "--wait").returncode == 0
        assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
        opener.start()
        done = json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json", timeout=WAIT + 300).stdout)
        opener.join()
        assert seen == [True], "the big table was not hashed on both sides while the copy ran"
        assert done["state"] == "verified", done.get("failure")
        copied = [s for s in done["steps"] if s["name"] == "copy"][-1]["result"]
        assert copied["source_tables_hashed"] >= 2 and copied["target_tables_hashed"] >= 2, copied
        high_water = int(next(line.split()[1] for line in Path(f"/proc/{worker.pid}/status").read_text().splitlines()
                              if line.startswith("VmHWM:"))) * 1024
    finally:
        stop.set()
        sampler.join()
    assert peak[0] > 0
    print(f"table {size / 2**20:.0f} MB; worker tree peak {peak[0] / 2**20:.0f} MB, worker high-water {high_water / 2**20:.0f} MB")
    assert max(peak[0], high_water) < LIMIT, f"worker peaked at {max(peak[0], high_water) / 2**20:.0f} MB"
