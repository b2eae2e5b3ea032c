"""Child programs pgmove runs for the team (cutover hook, repoint command): ended with their children, output tailed."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import IO


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def tail(out: IO[bytes], lines: int = 20, limit: int = 64 * 1024) -> list[str]:
    """The last lines of what the hook wrote; a chatty hook cannot make pgmove read megabytes."""
    size = out.seek(0, os.SEEK_END)
    out.seek(max(0, size - limit))
    return out.read().decode(errors="replace").strip().splitlines()[-lines:]
