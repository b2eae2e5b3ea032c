"""The copy streams: the worker (with the client programs it starts) stays under 300 MB with a table bigger than that."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.slow

LIMIT = 300 * 1024 * 1024


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


def test_a_table_bigger_than_the_bound_streams_through_a_worker_that_stays_under_it(pgmove, source):  # type: ignore[no-untyped-def]
    """A table larger than 300 MB is copied by a worker whose process tree never holds 300 MB: the data streams, it
    is not buffered."""
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.big (id int PRIMARY KEY, payload text NOT NULL)")
        conn.execute("INSERT INTO public.big SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, 330000) g")
        size = conn.execute("SELECT pg_relation_size('public.big')").fetchone()[0]
    assert size > LIMIT
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
        done = json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)
        assert done["state"] == "verified", done.get("failure")
        high_water = int(next(line.split()[1] for line in Path(f"/proc/{worker.pid}/status").read_text().splitlines()
                              if line.startswith("VmHWM:"))) * 1024
    finally:
        stop.set()
        sampler.join()
    assert peak[0] > 0
    print(f"table {size / 2**20:.0f} MB; worker tree peak {peak[0] / 2**20:.0f} MB, worker high-water {high_water / 2**20:.0f} MB")
    assert max(peak[0], high_water) < LIMIT, f"worker peaked at {max(peak[0], high_water) / 2**20:.0f} MB"
