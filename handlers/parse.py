"""Chat text to typed commands. Everything from chat is data: validated here, quoted later with psycopg.sql.

parse() only reads the shape of the text (verb, positional words, --options); the verb's model in verbs.py
checks every value, once, and what it refuses becomes usage text naming the option, what it takes and the
usage line.
"""

from __future__ import annotations

import difflib
import shlex

from pydantic import ValidationError

from pgmove.handlers.verbs import (
    AbortCmd,
    AnnounceCancel,
    AnnounceCmd,
    AnyCommand,
    Approve,
    Command,
    CutoverCmd,
    FreezeCmd,
    Help,
    PlanCmd,
    Reject,
    ServerCmd,
    Servers,
    Status,
    VerifyCmd,
)
from pgmove.state.errors import UsageError

__all__ = ["MAX_TEXT", "USAGE", "AnyCommand", "Approve", "CutoverCmd", "FreezeCmd", "Help", "PlanCmd", "Reject", "ServerCmd",
           "Servers", "Status", "VerifyCmd", "parse"]

USAGE: dict[str, str] = {
    "help": "help [verb]",
    "servers": "servers",
    "plan": "plan <source> <target> [--databases a,b] [--jobs N] [--method dump|logical] [--replica-identity-full]",
    "sync": "sync <server>",
    "status": "status [<server>]",
    "freeze": "freeze <server> [--mode read-only|no-connect] [--grace 30s] [--archive NAME] [--snapshot]",
    "approve": "approve <server> [<request id>]",
    "reject": "reject <server> [--request <id>] [reason]",
    "unfreeze": "unfreeze <server>",
    "verify": "verify <server> [--quick]",
    "cutover": "cutover <server> [--window 60s]",
    "abort": "abort <server> [--drop-created]",
    "history": "history <server>",
    "retry": "retry <server>",
    "announce": "announce <server> <start> <duration> | announce <server> cancel",
}
MAX_TEXT = 2000
_SERVER_VERBS = ("unfreeze", "history", "retry", "sync")
# Each verb's model and the fields its positional words fill, in order. Which are required, and what
# each one takes, is the model's business.
_GRAMMAR: dict[str, tuple[type[Command], tuple[str, ...]]] = {
    "help": (Help, ("topic",)),
    "servers": (Servers, ()),
    "plan": (PlanCmd, ("source", "target")),
    "status": (Status, ("server",)),
    "freeze": (FreezeCmd, ("server",)),
    "verify": (VerifyCmd, ("server",)),
    "abort": (AbortCmd, ("server",)),
    "cutover": (CutoverCmd, ("server",)),
    "approve": (Approve, ("server", "request_id")),
    "announce": (AnnounceCmd, ()),  # see _announce: the start may be two words (`in 2h`, a date and a time)
    "reject": (Reject, ("server",)),  # then an optional leading --request <id>, then free text: see _reject
    **{verb: (ServerCmd, ("server",)) for verb in _SERVER_VERBS},
}


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
        raise UsageError(f"Unknown command {_show(verb)}{did_you_mean(verb)} Commands: {', '.join(USAGE)}.")
    model, names = _GRAMMAR[verb]
    extra: list[str] = []
    if verb == "reject":
        fields = _reject(rest)
    elif verb == "announce":
        fields = _announce(rest)
        model = AnnounceCancel if fields.pop("cancel", False) else model
    else:
        positional, fields = _split_options(verb, model, rest)
        fields.update(zip(names, positional, strict=False))
        extra = positional[len(names):]
    if model is ServerCmd:
        fields["verb"] = verb
    try:
        command = model.model_validate(fields)
    except ValidationError as exc:  # a mangled value is pointed out before any word too many
        raise UsageError(_refusal(verb, model, exc, fields)) from None
    if extra:
        raise UsageError(f"Unexpected {_show(' '.join(extra))} after {verb}. {_usage(verb)}")
    return command  # type: ignore[return-value]  # _GRAMMAR pairs each verb with one of AnyCommand's models


def did_you_mean(word: str) -> str:
    """`; did you mean `plan`?` for a verb one slip away, else a plain full stop."""
    nearest = difflib.get_close_matches(word.lower(), list(USAGE), n=1, cutoff=0.6)
    return f"; did you mean `{nearest[0]}`?" if nearest else "."


def grammar(verb: str) -> type[Command]:
    """The model a verb parses to: its fields with a `--` title are its options."""
    return _GRAMMAR[verb][0]


def _options(model: type[Command]) -> dict[str, str]:
    """The model's options as typed (`--grace`) -> its field (`grace_seconds`): the fields with such a title."""
    return {info.title: name for name, info in model.model_fields.items() if info.title and info.title.startswith("--")}


def _split_options(verb: str, model: type[Command], words: list[str]) -> tuple[list[str], dict[str, object]]:
    options = _options(model)
    flags = {option for option, name in options.items() if model.model_fields[name].annotation is bool}
    positional: list[str] = []
    fields: dict[str, object] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("--"):
            positional.append(word)
            i += 1
            continue
        option, eq, value = word.partition("=")
        if option not in options:
            known = ", ".join(sorted(options)) or "no options"
            raise UsageError(f"{_show(word)} is not an option of {verb} (it takes {known}). {_usage(verb)}")
        name = options[option]
        if name in fields:
            raise UsageError(f"{option} is given twice. {_usage(verb)}")
        if option in flags:
            if eq:
                raise UsageError(f"{option} takes no value. {_usage(verb)}")
            fields[name] = True
        elif eq:
            fields[name] = value
        elif i + 1 < len(words):
            i += 1
            fields[name] = words[i]
        else:
            raise UsageError(f"{option} needs a value. {_usage(verb)}")
        i += 1
    return positional, fields


def _reject(words: list[str]) -> dict[str, object]:
    """`reject <server> [--request <id>] [reason]`: the reason is free text, so only the leading option is read."""
    fields: dict[str, object] = {}
    if words:
        fields["server"] = words[0]
    rest = words[1:]
    if rest[:1] == ["--request"]:
        if len(rest) < 2:
            raise UsageError(f"--request needs a value. {_usage('reject')}")
        fields["request_id"], rest = rest[1], rest[2:]
    if rest:
        fields["reason"] = " ".join(rest)
    return fields


def _announce(words: list[str]) -> dict[str, object]:
    """`announce <server> <start...> <duration>` or `announce <server> cancel`: the last word is the duration, the
    words between it and the server the start (`in 2h`, `2026-12-24 14:30 UTC`)."""
    fields: dict[str, object] = dict(zip(("server",), words[:1], strict=False))
    rest = words[1:]
    if [w.lower() for w in rest] == ["cancel"]:
        fields["cancel"] = True
    elif len(rest) >= 2 and not (rest[0].lower() == "in" and len(rest) == 2):  # `in 2h` alone: no duration
        fields["start"], fields["duration"] = " ".join(rest[:-1]), rest[-1]
    elif rest:
        raise UsageError(f"announce needs a start and a duration, or `cancel`. {_usage('announce')}")
    return fields


def _refusal(verb: str, model: type[Command], exc: ValidationError, fields: dict[str, object]) -> str:
    """The first value the model refused, said the way it was typed: which option or word, what it takes."""
    error = exc.errors()[0]
    name = str(error["loc"][0])
    if error["type"] == "missing":
        return f"{verb} needs more: `/pgmove {USAGE[verb]}`"
    info = model.model_fields[name]
    typed = fields.get(name, error["input"])
    shown = _show(typed if isinstance(typed, str) else str(typed)) if typed != "" else "an empty value"
    if error["type"] == "string_too_long":
        shown = f"{len(str(typed))} characters"
    what = info.description or "valid here"
    if info.title:
        return f"{info.title} takes {what}, not {shown}. {_usage(verb)}"
    return f"{shown} is not {what}. {_usage(verb)}"


def _usage(verb: str) -> str:
    return f"Usage: `/pgmove {USAGE[verb]}`"


def _show(text: str) -> str:
    """Echo user text back safely: shortened, no backticks or unprintable characters (controls, direction
    overrides, zero-width marks) to break or disguise the message."""
    clean = "".join(c if c.isprintable() and c != "`" else "?" for c in text)
    return f"`{clean[:40]}{'…' if len(clean) > 40 else ''}`"
