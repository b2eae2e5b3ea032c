"""The worker makes itself non-dumpable, so a hook running as its user cannot read its passwords from /proc."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = ("import ctypes; from pgmove.worker.main import hide_environment; libc = ctypes.CDLL(None); "
         "before = libc.prctl(3, 0, 0, 0, 0); hide_environment(); print(before, libc.prctl(3, 0, 0, 0, 0))")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_hide_environment_makes_the_process_not_dumpable() -> None:
    """PR_GET_DUMPABLE reads 1 before and 0 after: /proc/<pid>/environ is then root's alone."""
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["1", "0"]
