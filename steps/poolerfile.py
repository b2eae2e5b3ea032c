"""Repointing a pooler: rewrite the include file holding its [databases] (atomically), or run the team's command.

Only host, port and dbname of the named databases change; every other line and key (pool sizes, a user,
even a password someone keeps there) stays as it was, and no part of the file is ever recorded or logged.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Mapping

from pgmove.state.errors import StepFailed
from pgmove.state.models import PoolerBackend
from pgmove.steps.pooler import Pooler
from pgmove.steps.process import kill_group, tail

_ENTRY = re.compile(r'^(\s*)("(?:[^"]|"")+"|[^\s=;#\[]+)(\s*=\s*)(.*?)\s*$')
_PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.|'')*'|\S+)")
_PLAIN = re.compile(r"^[A-Za-z0-9_.:/-]+$")  # values written unquoted: host names, addresses, socket dirs, names


def rewrite(path: str, wanted: Mapping[str, PoolerBackend]) -> None:
    """Point each database of `wanted` at its backend in the include file: a temporary file beside it, flushed,
    then renamed over it, so the pooler never reads half a file. Refused, unchanged, if one is not in it."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    found: set[str] = set()
    section: str | None = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped.strip("[] \t").lower()
            continue
        match = _ENTRY.match(line.rstrip("\r\n"))
        if not match or section not in (None, "databases") or stripped.startswith((";", "#")):
            continue
        name = match.group(2)
        name = name[1:-1].replace('""', '"') if name.startswith('"') else name
        if name not in wanted:
            continue
        found.add(name)
        lines[i] = match.group(1) + match.group(2) + match.group(3) + _repointed(match.group(4), wanted[name]) + "\n"
    missing = sorted(set(wanted) - found)
    if missing:
        raise StepFailed(f"the pooler's databases file {path} has no entry for {', '.join(missing)}; nothing was changed")
    _replace(path, "".join(lines))


def _repointed(connstr: str, to: PoolerBackend) -> str:
    values = {"host": to.host, "port": str(to.port), "dbname": to.dbname}
    for key, value in values.items():
        if not _PLAIN.match(value):
            raise StepFailed(f"cannot write {key} {value!r} into a pooler's databases file; use repoint_command")
    pairs = [(k, v) for k, v in _PAIR.findall(connstr) if k.lower() not in values]
    return " ".join([f"{k}={v}" for k, v in values.items()] + [f"{k}={v}" for k, v in pairs])


def _replace(path: str, text: str) -> None:
    info = os.stat(path)
    fd, tmp = tempfile.mkstemp(prefix=".pgmove-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, info.st_mode & 0o7777)
        try:  # the pooler's own user must still read it
            os.chown(tmp, info.st_uid, info.st_gid)
        except PermissionError:
            pass
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_command(p: Pooler, dbname: str, to: PoolerBackend, secret_env: set[str]) -> list[str]:
    """The team's repoint command for one pooler database: told where to point it, never given a password."""
    assert p.repoint_command is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k not in secret_env}
    env.update({"PGHOST": to.host, "PGPORT": str(to.port), "PGDATABASE": to.dbname, "PGMOVE_POOLER": p.name,
                "PGMOVE_POOLER_DATABASE": dbname})
    argv = list(p.repoint_command)
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    process_group=0)
        except OSError as exc:
            raise StepFailed(f"pooler {p.name}'s repoint command {argv[0]} could not start: {exc.strerror}") from None
        try:
            status: int | None = proc.wait(timeout=p.repoint_timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            status = None
        output = tail(out)
    if status != 0:
        how = f"did not finish within {p.repoint_timeout:g}s" if status is None else f"exited with status {status}"
        raise StepFailed(f"pooler {p.name}'s repoint command {argv[0]} {how} for {dbname}: "
                         f"{' / '.join(output[-3:]) or 'no output'}")
    return output
