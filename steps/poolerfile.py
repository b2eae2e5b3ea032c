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
from pgmove.steps.process import kill_group, shown

_ENTRY = re.compile(r'^(\s*)("(?:[^"]|"")+"|[^\s=;#\[]+)(\s*=\s*)(.*?)\s*$')
_PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.|'')*'|\S+)")
_PLAIN = re.compile(r"^[A-Za-z0-9_.:/-]+$")  # values written unquoted: host names, addresses, socket dirs, names


def entries(path: str) -> dict[str, str]:
    """Each database entry of the include file's [databases] (or section-less) part: name -> its line as written."""
    lines = _read(path)
    return {name: lines[i] for name, i in _scan(lines).items()}


def rewrite(path: str, wanted: Mapping[str, PoolerBackend]) -> None:
    """Point each database of `wanted` at its backend in the include file: a temporary file beside it, flushed,
    then renamed over it, so the pooler never reads half a file. Refused, unchanged, if one is not in it."""
    path = os.path.realpath(path)  # a symlinked file is written through, the link kept
    lines = _read(path)
    where = _scan(lines)
    _no_missing(path, set(wanted) - set(where))
    for name, to in wanted.items():
        match = _ENTRY.match(lines[where[name]].rstrip("\r\n"))
        assert match is not None
        lines[where[name]] = match.group(1) + match.group(2) + match.group(3) + _repointed(match.group(4), to) + "\n"
    _replace(path, "".join(lines))


def save(path: str) -> str:
    """A copy of the include file beside it, same mode and owner, taken before the repoint: pointing back restores
    the original entries from it exactly as they were written (no host= at all, several hosts, quoting)."""
    path = os.path.realpath(path)
    saved = os.path.join(os.path.dirname(path), f".pgmove-saved-{os.path.basename(path)}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    _replace(path, text, into=saved)
    return saved


def restore(path: str, saved: str, names: list[str]) -> None:
    """Put back the entries `names` as `saved` held them; every other line of the file stays as it is now."""
    path = os.path.realpath(path)
    original = entries(saved)
    _no_missing(saved, set(names) - set(original))
    lines = _read(path)
    where = _scan(lines)
    _no_missing(path, set(names) - set(where))
    for name in names:
        line = original[name]
        lines[where[name]] = line if line.endswith("\n") else line + "\n"
    _replace(path, "".join(lines))


def discard(saved: str | None) -> None:
    if saved is not None:
        try:
            os.unlink(saved)
        except FileNotFoundError:
            pass


def problems(path: str, names: list[str], target_host: str | None) -> list[str]:
    """What would keep pgmove from repointing through this include file, or from putting it back, said up front."""
    real = os.path.realpath(path)
    if not os.path.isfile(real):
        return [f"does not exist on this worker ({path})"]
    found: list[str] = []
    try:
        have = entries(real)
    except (OSError, UnicodeDecodeError) as exc:
        return [f"cannot be read by pgmove: {exc}"]
    missing = sorted(set(names) - set(have))
    if missing:
        found.append(f"has no entry for {', '.join(missing)} ([databases] section of {path})")
    if target_host is not None and not _PLAIN.match(target_host):
        found.append(f"cannot take the target's host {target_host!r} (use repoint_command)")
    if not os.access(os.path.dirname(real), os.W_OK):
        found.append(f"cannot be replaced: pgmove may not write in {os.path.dirname(real)} (the rewrite renames "
                     "a new file over it)")
    info = os.stat(real)
    if not _may_own(info.st_uid, info.st_gid):
        found.append(f"belongs to uid {info.st_uid} gid {info.st_gid}, which pgmove (uid {os.geteuid()}) cannot give "
                     "a rewritten file: run pgmove as the file's owner, or as root")
    return found


def _may_own(uid: int, gid: int) -> bool:
    return os.geteuid() == 0 or (os.geteuid() == uid and (gid == os.getegid() or gid in os.getgroups()))


def _read(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines(keepends=True)


def _scan(lines: list[str]) -> dict[str, int]:
    where: dict[str, int] = {}
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
        where[name[1:-1].replace('""', '"') if name.startswith('"') else name] = i
    return where


def _no_missing(path: str, missing: set[str]) -> None:
    if missing:
        raise StepFailed(f"the pooler's databases file {path} has no entry for {', '.join(sorted(missing))}; "
                         "nothing was changed")


def _repointed(connstr: str, to: PoolerBackend) -> str:
    values = {"host": to.host, "port": str(to.port), "dbname": to.dbname}
    for key, value in values.items():
        if not _PLAIN.match(value):
            raise StepFailed(f"cannot write {key} {value!r} into a pooler's databases file; use repoint_command")
    pairs = [(k, v) for k, v in _PAIR.findall(connstr) if k.lower() not in values]
    return " ".join([f"{k}={v}" for k, v in values.items()] + [f"{k}={v}" for k, v in pairs])


def _replace(path: str, text: str, into: str | None = None) -> None:
    """Write `text` to `into` (default: `path` itself) through a renamed temporary file with `path`'s mode and owner;
    refused, nothing changed, when the owner cannot be kept (the pooler's own user must still read it)."""
    info = os.stat(path)
    if not _may_own(info.st_uid, info.st_gid):
        raise StepFailed(f"{path} belongs to uid {info.st_uid} gid {info.st_gid}, which pgmove (uid {os.geteuid()}) "
                         "cannot keep on a rewritten file; nothing was changed (run pgmove as its owner or as root)")
    target = into or path
    fd, tmp = tempfile.mkstemp(prefix=".pgmove-", dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, info.st_mode & 0o7777)
        try:
            os.chown(tmp, info.st_uid, info.st_gid)
        except PermissionError:
            raise StepFailed(f"pgmove cannot give the rewritten {path} its owner uid {info.st_uid} gid "
                             f"{info.st_gid}; nothing was changed (run pgmove as its owner or as root)") from None
        os.replace(tmp, target)
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
        # The pooler's own password is masked too: the command runs beside it and may print its auth file.
        output = shown(out, secret_env, p.password)
    if status != 0:
        how = f"did not finish within {p.repoint_timeout:g}s" if status is None else f"exited with status {status}"
        raise StepFailed(f"pooler {p.name}'s repoint command {argv[0]} {how} for {dbname}: "
                         f"{' / '.join(output[-3:]) or 'no output'}")
    return output
