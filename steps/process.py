"""Child programs pgmove runs for the team (hooks, repoint command): ended with their children, output tailed,
scrubbed and cut; and a hook whose worker died found again by its process group and ended."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from pgmove.state.models import HookProcess

_TAIL_BYTES = 64 * 1024


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def shown(out: IO[bytes], secret_env: Iterable[str], *secrets: str | None, lines: int = 20,
          line_chars: int = 400) -> list[str]:
    """What a program pgmove ran wrote, fit for the thread and the record: its last `lines` lines, every configured
    password masked (those `secret_env` names, and `secrets` the caller holds), each line cut to `line_chars`.
    Every runner goes through here so that none of them can forget one of the three.

    A chatty program cannot make pgmove read megabytes: only the last 64 KiB are read. A password it found (in a
    file, in another process's environment) or echoed in an error message must not reach the thread, not even
    in part: the read starts one password's length earlier and that much is dropped after masking, so one cut
    in two where the tail starts cannot show its second half. Nor can one long line fill the thread (a Slack
    text block holds 3,000 characters); lines are cut after masking, so no cut leaves part of a password.
    """
    # Longest first, so a password that holds a shorter one is masked whole.
    known = sorted({s for s in (*secrets, *(os.environ.get(name) for name in secret_env)) if s}, key=len, reverse=True)
    overlap = max((len(s.encode()) for s in known), default=0)
    size = out.seek(0, os.SEEK_END)
    start = max(0, size - _TAIL_BYTES - overlap)
    out.seek(start)
    text = out.read().decode(errors="replace")
    for secret in known:
        text = text.replace(secret, "***")
    if start:
        text = text[overlap:]  # characters: at least as many bytes, so the whole overlap goes
    return [line if len(line) <= line_chars else f"{line[:line_chars]}... ({len(line) - line_chars:,} more characters)"
            for line in text.strip().splitlines()[-lines:]]


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
