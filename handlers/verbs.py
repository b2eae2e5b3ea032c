"""What each /pgmove verb takes, as pydantic models: the one place its values are checked.

Types, ranges and name patterns live on the fields, with a `description` saying in words what the field
takes and, for an option, a `title` naming it as typed (`--jobs`). parse.py only splits the text into
fields and turns a failed check into usage text from these two; a click builds a `Decide` directly.
Every pattern is ASCII-only: `\\d` and str.isdigit also take digits like `٣` or `²`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from pgmove.state.announce import Start
from pgmove.state.config import SERVER_NAME

_SERVER = "a server name (letters, digits, '.', '_' or '-')"
REQUEST_ID = r"^[0-9a-f]{8}$"
_REQUEST = "a request id (8 characters 0-9 and a-f, as the approval message shows it)"
MAX_REASON = 500


def _option(name: str, what: str, default: Any = None, **constraints: Any) -> Any:
    """A field set by `--name` in chat; `what` completes "--name takes ..." in the usage text."""
    return Field(default=default, title=f"--{name}", description=what, **constraints)


def _server(default: Any = ...) -> Any:
    return Field(default=default, pattern=SERVER_NAME.pattern, description=_SERVER)


def _whole_number(value: object) -> object:
    """Digits 0-9 only: pydantic's own int parsing would also take `+3`, ` 3` and `1_0`."""
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]{1,6}", value):
            raise ValueError("not a whole number")
        return int(value)
    return value


def _duration(value: object) -> object:
    """`30s`, `2m` or plain seconds, in ASCII digits."""
    if isinstance(value, str):
        match = re.fullmatch(r"([0-9]{1,4})([sm]?)", value.strip().lower())
        if match is None:
            raise ValueError("not a duration")
        return float(int(match.group(1)) * (60 if match.group(2) == "m" else 1))
    return value


def _name_list(value: object) -> object:
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    return value


_SPAN = r"(?:([0-9]{1,3})h)?(?:([0-9]{1,4})m)?"


def _span_of(text: str) -> timedelta | None:
    match = re.fullmatch(_SPAN, text.strip().lower())
    if match is None or not any(match.groups()):
        return None
    return timedelta(hours=int(match.group(1) or 0), minutes=int(match.group(2) or 0))


def _span(value: object) -> object:
    """`90m`, `2h` or `1h30m`, in ASCII digits: how long a maintenance window lasts."""
    if isinstance(value, str):
        span = _span_of(value)
        if span is None:
            raise ValueError("not a duration")
        return span
    return value


def _start(value: object) -> object:
    """When a window starts, in UTC: `now`, `in 2h`, `14:30` (today) or `2026-12-24 14:30` (`T` and a trailing
    `UTC` or `Z` allowed). What it means is decided against the clock in state/announce.py."""
    if not isinstance(value, str):
        return value
    text = re.sub(r"(\s*utc|z)$", "", value.strip().lower())
    if text == "now":
        return timedelta(0)
    if text.startswith("in "):
        span = _span_of(text[3:])
        if span is None:
            raise ValueError("not a start time")
        return span
    clock = re.fullmatch(r"([0-9]{1,2}):([0-9]{2})", text)
    dated = re.fullmatch(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[ t]([0-9]{1,2}):([0-9]{2})", text)
    try:
        if clock:
            return time(int(clock.group(1)), int(clock.group(2)))
        if dated:
            year, month, day, hour, minute = (int(g) for g in dated.groups())
            return datetime(year, month, day, hour, minute, tzinfo=UTC)
    except ValueError:  # 25:00, February 30th
        pass
    raise ValueError("not a start time")


# A database name as PostgreSQL takes it (up to 63 bytes, any characters); control characters are refused
# because they would only hide what is being moved from the people reading the plan.
DatabaseName = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]{1,63}$")]


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Help(Command):
    verb: Literal["help"] = "help"
    topic: Annotated[str, BeforeValidator(str.lower)] | None = None  # cmd_help names the topics it knows


class Servers(Command):
    verb: Literal["servers"] = "servers"


class PlanCmd(Command):
    verb: Literal["plan"] = "plan"
    source: str = _server()
    target: str = _server()
    databases: Annotated[list[DatabaseName] | None, BeforeValidator(_name_list)] = _option(
        "databases", "a comma-separated list of database names", min_length=1)
    jobs: Annotated[int, BeforeValidator(_whole_number)] = _option("jobs", "a whole number from 1 to 64", 2, ge=1, le=64)
    method: Literal["dump", "logical"] = _option("method", "dump or logical", "dump")
    replica_identity_full: bool = _option("replica-identity-full", "no value", False)


class Status(Command):
    verb: Literal["status"] = "status"
    server: str | None = _server(None)


class ServerCmd(Command):
    verb: Literal["unfreeze", "history", "retry", "sync"]
    server: str = _server()


class AbortCmd(Command):
    verb: Literal["abort"] = "abort"
    server: str = _server()
    drop_created: bool = _option("drop-created", "no value", False)


class CutoverCmd(Command):
    verb: Literal["cutover"] = "cutover"
    server: str = _server()
    window_seconds: Annotated[float | None, BeforeValidator(_duration)] = _option(
        "window", "a duration from 1s to an hour, like 60s or 2m", ge=1, le=3600)


class VerifyCmd(Command):
    verb: Literal["verify"] = "verify"
    server: str = _server()
    quick: bool = _option("quick", "no value", False)


class FreezeCmd(Command):
    verb: Literal["freeze"] = "freeze"
    server: str = _server()
    mode: Literal["read-only", "no-connect"] = _option("mode", "read-only or no-connect", "read-only")
    grace_seconds: Annotated[float | None, BeforeValidator(_duration)] = _option(
        "grace", "a duration up to an hour, like 30s or 2m", ge=0, le=3600)
    archive: str | None = _option(
        "archive", "a folder name (letters, digits, . _ -; it goes under the configured archive_dir)",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    snapshot: bool = _option("snapshot", "no value", False)


class AnnounceCmd(Command):
    verb: Literal["announce"] = "announce"
    server: str = _server()
    start: Annotated[Start, BeforeValidator(_start)] = Field(
        description="a start in UTC: now, in 2h, 14:30 (today) or 2026-12-24 14:30")
    duration: Annotated[timedelta, BeforeValidator(_span)] = Field(description="a duration like 90m, 2h or 1h30m")


class AnnounceCancel(Command):
    verb: Literal["announce"] = "announce"
    server: str = _server()
    cancel: Literal[True] = True


class Approve(Command):
    verb: Literal["approve"] = "approve"
    server: str = _server()
    request_id: str | None = Field(default=None, pattern=REQUEST_ID, description=_REQUEST)


class Reject(Command):
    verb: Literal["reject"] = "reject"
    server: str = _server()
    request_id: str | None = _option("request", _REQUEST, pattern=REQUEST_ID)
    reason: str | None = Field(default=None, max_length=MAX_REASON, title="The reason",
                               description=f"at most {MAX_REASON} characters")


class Decide(Command):
    """A decision on one approval request, as a button click carries it: the migration and the request by id,
    nothing to look up by name or parse from text."""

    verb: Literal["approve", "reject"]
    migration_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    request_id: str = Field(pattern=REQUEST_ID)
    reason: str | None = Field(default=None, max_length=MAX_REASON)

    @property
    def approve(self) -> bool:
        return self.verb == "approve"


AnyCommand = (Help | Servers | PlanCmd | Status | ServerCmd | CutoverCmd | FreezeCmd | VerifyCmd | Approve | Reject
              | AbortCmd | AnnounceCmd | AnnounceCancel)
