"""Child programs pgmove runs for the team (cutover hook, repoint command): ended with their children, output tailed;
and a hook whose worker died found again by its process group and ended."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from pgmove.state.models import HookProcess


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


def shortened(lines: list[str], line_chars: int = 400) -> list[str]:
    """Nor can one long line fill the thread (a Slack text block holds 3,000 characters)."""
    return [line if len(line) <= line_chars else f"{line[:line_chars]}... ({len(line) - line_chars:,} more characters)"
            for line in lines]


def identify(pid: int) -> HookProcess | None:
    """Where the group led by `pid` runs, for whoever must end it later; None off Linux or once it is gone."""
    stat = _stat(pid)
    if stat is None:
        return None
    return HookProcess(host=socket.gethostname(), boot_id=_boot_id(), pgid=pid, start_ticks=stat[2])


def here(process: HookProcess) -> bool:
    """True when `process` was started on this machine since its last boot: only then is its pgid this one's."""
    return process.host == socket.gethostname() and process.boot_id == _boot_id()


def end_group(process: HookProcess, grace: float = 5.0) -> bool:
    """End what is left of the hook's process group on this machine: SIGTERM, then SIGKILL after `grace` seconds.
    True when something was still running. Linux keeps a process group's id from being reused while any member
    lives, so the group is ours unless a live process of another start holds its id as a new leader."""
    leader = _stat(process.pgid)
    if leader is not None and leader[2] != process.start_ticks:
        return False  # the group ended long ago and its id now belongs to someone else
    if not _members(process.pgid):
        return False
    deadline = time.monotonic() + grace
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pgid, sig)
        except ProcessLookupError:
            return True
        while _members(process.pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _members(process.pgid):
            return True
        deadline = time.monotonic() + grace
    return True


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start ticks) of a live process; None if it is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ", whatever the command's name holds
    state, pgrp, start = fields[0], int(fields[2]), int(fields[19])
    return None if state in "ZX" else (state, pgrp, start)


def _members(pgid: int) -> list[int]:
    """The live (not zombie) processes of the group."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pgid:
                found.append(int(entry.name))
    return found


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
