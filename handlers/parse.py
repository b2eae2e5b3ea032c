"""Chat text to typed commands. Everything from chat is data: validated here, quoted later with psycopg.sql."""

from __future__ import annotations

import re
import shlex
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from pgmove.state.config import SERVER_NAME
from pgmove.state.errors import UsageError

USAGE: dict[str, str] = {
    "help": "help [verb]",
    "servers": "servers",
    "plan": "plan <source> <target> [--databases a,b] [--jobs N]",
    "status": "status [<server>]",
    "freeze": "freeze <server> [--mode read-only|no-connect] [--grace 30s] [--archive NAME]",
    "approve": "approve <server> [<request id>]",
    "reject": "reject <server> [--request <id>] [reason]",
    "unfreeze": "unfreeze <server>",
    "verify": "verify <server> [--quick]",
    "cutover": "cutover <server>",
    "abort": "abort <server>",
    "history": "history <server>",
    "retry": "retry <server>",
}
_SERVER_VERBS = ("unfreeze", "cutover", "abort", "history", "retry")
_DATABASE = re.compile(r"^[^\x00-\x1f\x7f]{1,63}$")
MAX_TEXT = 2000


class Help(BaseModel):
    verb: Literal["help"] = "help"
    topic: str | None = None


class Servers(BaseModel):
    verb: Literal["servers"] = "servers"


class PlanCmd(BaseModel):
    verb: Literal["plan"] = "plan"
    source: str
    target: str
    databases: list[str] | None = None
    jobs: int = Field(default=2, ge=1, le=64)


class Status(BaseModel):
    verb: Literal["status"] = "status"
    server: str | None = None


class ServerCmd(BaseModel):
    verb: Literal["unfreeze", "cutover", "abort", "history", "retry"]
    server: str


class VerifyCmd(BaseModel):
    verb: Literal["verify"] = "verify"
    server: str
    quick: bool = False


class FreezeCmd(BaseModel):
    verb: Literal["freeze"] = "freeze"
    server: str
    mode: Literal["read-only", "no-connect"] = "read-only"
    grace_seconds: float | None = Field(default=None, ge=0, le=3600)
    archive: str | None = None


class Approve(BaseModel):
    verb: Literal["approve"] = "approve"
    server: str
    request_id: str | None = None


class Reject(BaseModel):
    verb: Literal["reject"] = "reject"
    server: str
    request_id: str | None = None
    reason: str | None = Field(default=None, max_length=500)


AnyCommand = Help | Servers | PlanCmd | Status | ServerCmd | FreezeCmd | VerifyCmd | Approve | Reject


def parse(text: str) -> AnyCommand:
    """Parse one /pgmove text; raise UsageError with a message that says what would work."""
    if len(text) > MAX_TEXT:
        raise UsageError(f"That command is {len(text)} characters long; pgmove commands are short. Try `/pgmove help`.")
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"Could not read that command ({exc}). Try `/pgmove help`.") from None
    if words and words[0] == "/pgmove":
        words = words[1:]
    if not words:
        raise UsageError("Say what to do: " + ", ".join(USAGE) + ". Try `/pgmove help`.")
    verb, rest = words[0].lower(), words[1:]
    if verb not in USAGE:
        raise UsageError(f"Unknown command {_show(verb)}. Commands: {', '.join(USAGE)}.")
    positional, options = _split_options(verb, rest)
    try:
        return _build(verb, positional, options)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}. Usage: `/pgmove {USAGE[verb]}`") from None


def _build(verb: str, args: list[str], options: dict[str, str]) -> AnyCommand:
    if verb not in ("help", "servers") and args:
        _server(args[0], verb)  # a mangled server name is the first thing to point out
    if verb == "help":
        _arity(verb, args, 0, 1)
        return Help(topic=args[0].lower() if args else None)
    if verb == "servers":
        _arity(verb, args, 0, 0)
        return Servers()
    if verb == "plan":
        _arity(verb, args, 2, 2)
        databases = None
        if "databases" in options:
            databases = [d.strip() for d in options["databases"].split(",") if d.strip()]
            bad = [d for d in databases if not _DATABASE.match(d)]
            if not databases or bad:
                raise UsageError(f"--databases takes a comma-separated list of database names. Usage: `/pgmove {USAGE[verb]}`")
        jobs = _int_option(options, "jobs", verb, default=2)
        return PlanCmd(source=_server(args[0], verb), target=_server(args[1], verb), databases=databases, jobs=jobs)
    if verb == "status":
        _arity(verb, args, 0, 1)
        return Status(server=_server(args[0], verb) if args else None)
    if verb == "freeze":
        _arity(verb, args, 1, 1)
        mode = options.get("mode", "read-only")
        if mode not in ("read-only", "no-connect"):
            raise UsageError(f"--mode is read-only or no-connect, not {_show(mode)}. Usage: `/pgmove {USAGE[verb]}`")
        grace = _duration(options["grace"], "grace", verb) if "grace" in options else None
        archive = options.get("archive")
        if archive is not None and not _ARCHIVE_NAME.fullmatch(archive):
            raise UsageError(f"--archive takes a folder name (letters, digits, . _ -; it goes under the configured "
                             f"archive_dir), not {_show(archive)}. Usage: `/pgmove {USAGE[verb]}`")
        return FreezeCmd(server=args[0], mode=mode, grace_seconds=grace, archive=archive)  # type: ignore[arg-type]
    if verb == "verify":
        quick = "--quick" in args
        args = [a for a in args if a != "--quick"]
        _arity(verb, args, 1, 1)
        return VerifyCmd(server=args[0], quick=quick)
    if verb == "approve":
        _arity(verb, args, 1, 2)
        if len(args) == 2 and not re.fullmatch(r"[0-9a-f]{8}", args[1]):
            raise UsageError(f"{_show(args[1])} is not a request id. Usage: `/pgmove {USAGE[verb]}`")
        return Approve(server=_server(args[0], verb), request_id=args[1] if len(args) == 2 else None)
    if verb == "reject":
        if not args:
            _arity(verb, args, 1, 1)
        rest, request_id = args[1:], None
        if rest[:1] == ["--request"]:  # the rest is free text: only this leading option is read
            if len(rest) < 2 or not re.fullmatch(r"[0-9a-f]{8}", rest[1]):
                raise UsageError(f"--request takes a request id. Usage: `/pgmove {USAGE[verb]}`")
            rest, request_id = rest[2:], rest[1]
        return Reject(server=_server(args[0], verb), request_id=request_id, reason=" ".join(rest) or None)
    assert verb in _SERVER_VERBS
    _arity(verb, args, 1, 1)
    return ServerCmd(verb=verb, server=_server(args[0], verb))  # type: ignore[arg-type]


_OPTIONS: dict[str, set[str]] = {"plan": {"databases", "jobs"}, "freeze": {"mode", "grace", "archive"}}
_ARCHIVE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_FLAGS: dict[str, set[str]] = {"verify": {"quick"}}  # options that take no value


def _split_options(verb: str, words: list[str]) -> tuple[list[str], dict[str, str]]:
    allowed = _OPTIONS.get(verb, set())
    positional: list[str] = []
    options: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--") and word[2:] in _FLAGS.get(verb, set()):
            positional.append(word)
        elif word.startswith("--") and verb != "reject":
            name, eq, value = word[2:].partition("=")
            if name not in allowed:
                known = ", ".join(f"--{o}" for o in sorted(allowed | _FLAGS.get(verb, set()))) or "no options"
                raise UsageError(f"{_show(word)} is not an option of {verb} (it takes {known}). Usage: `/pgmove {USAGE[verb]}`")
            if not eq:
                if i + 1 >= len(words):
                    raise UsageError(f"--{name} needs a value. Usage: `/pgmove {USAGE[verb]}`")
                i += 1
                value = words[i]
            if name in options:
                raise UsageError(f"--{name} is given twice.")
            options[name] = value
        else:
            positional.append(word)
        i += 1
    return positional, options


def _int_option(options: dict[str, str], name: str, verb: str, default: int) -> int:
    if name not in options:
        return default
    value = options[name]
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise UsageError(f"--{name} takes a whole number from 1 to 64, not {_show(value)}. Usage: `/pgmove {USAGE[verb]}`")
    return int(value)


def _duration(value: str, name: str, verb: str) -> float:
    match = re.fullmatch(r"(\d{1,4})(s|m)?", value.strip().lower())
    seconds = int(match.group(1)) * (60 if match.group(2) == "m" else 1) if match else -1
    if not 0 <= seconds <= 3600:
        raise UsageError(f"--{name} takes a duration up to an hour, like 30s or 2m, not {_show(value)}. "
                         f"Usage: `/pgmove {USAGE[verb]}`")
    return float(seconds)


def _arity(verb: str, args: list[str], low: int, high: int) -> None:
    if len(args) < low:
        raise UsageError(f"{verb} needs more: `/pgmove {USAGE[verb]}`")
    if len(args) > high:
        extra = " ".join(args[high:])
        raise UsageError(f"Unexpected {_show(extra)} after {verb}. Usage: `/pgmove {USAGE[verb]}`")


def _server(name: str, verb: str) -> str:
    if not SERVER_NAME.match(name):
        raise UsageError(f"{_show(name)} is not a server name (letters, digits, '.', '_' or '-'). Usage: `/pgmove {USAGE[verb]}`")
    return name


def _show(text: str) -> str:
    """Echo user text back safely: shortened, no backticks or control characters to break the message."""
    clean = re.sub(r"[\x00-\x1f\x7f`]", "?", text)
    return f"`{clean[:40]}{'…' if len(clean) > 40 else ''}`"
