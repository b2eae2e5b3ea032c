"""`status` during a copy says how far the whole copy is: bytes and tables done of their totals, rate and ETA."""

from __future__ import annotations

import json
import re

import pytest

from pgmove.sandbox.servers import wait_until
from tests.integration.slowcopy import SLOW_TABLES, make_copy_slow

pytestmark = pytest.mark.slow

PROGRESS = re.compile(r"now: copy: ([\d.]+) MB of ([\d.]+) MB \((\d+)%\), (\d+) of (\d+) tables, ([\d.]+) MB/s, ETA ~\w+ for the data")


def test_status_mid_copy_shows_bytes_tables_rate_and_eta_of_the_whole_copy(pgmove, source, target):  # type: ignore[no-untyped-def]
    """A real worker copies slowly: `status` (plain and --json) shows the whole copy's bytes and tables done of
    their totals, the rate and an ETA while it runs, and the copy still verifies."""
    make_copy_slow(source, target)
    pgmove.start_worker()
    assert pgmove.do("U_ALICE", "plan prod-old prod-new --jobs 1", "--wait").returncode == 0
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    assert pgmove.do("U_BOB", "approve prod-old").returncode == 0

    def mid_copy() -> dict | None:  # type: ignore[type-arg]
        said = json.loads(pgmove.do("U_ALICE", "status prod-old", "--json").stdout)
        # The first tick can come before a byte has moved: wait for one that counts some.
        return said if said.get("progress") and said["progress"]["bytes_done"] and said["state"] == "copying" else None

    said = wait_until(mid_copy, 120, "a status with the copy's progress", every=0.3)
    p = said["progress"]
    assert p["databases"] == p["databases_listed"] and p["tables_total"] >= SLOW_TABLES, p
    assert 0 < p["bytes_done"] < p["bytes_total"] and p["tables_done"] < p["tables_total"], p
    found = PROGRESS.search(said["text"])
    assert found, said["text"]
    assert int(found.group(5)) == p["tables_total"] and float(found.group(2)) == round(p["bytes_total"] / 1e6, 1)

    plain = wait_until(lambda: (out := pgmove.do("U_ALICE", "status prod-old").stdout) and "now: copy: " in out and out,
                       60, "the plain status with progress", every=0.3)
    assert PROGRESS.search(plain) and "`" not in plain, plain

    done = json.loads(pgmove.do("U_ALICE", "status prod-old", "--wait", "--json", timeout=300).stdout)
    assert done["state"] == "verified", done.get("failure")
    assert "progress" not in done and "now: copy" not in done["text"], "a finished copy's progress is still shown"
