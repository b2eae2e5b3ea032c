"""`pgmove do`: one /pgmove command as the chat id the operating-system user maps to, its reply as plain text
or as one JSON shape, and `--wait` following the migration on stderr until it rests."""

from __future__ import annotations

import json
import os
import pwd
import time
from datetime import UTC, datetime
from typing import Any

import typer

from pgmove.handlers import views
from pgmove.handlers.reply import Reply
from pgmove.state.config import Config
from pgmove.state.errors import NotAuthorized, UsageError
from pgmove.state.machine import RESTING
from pgmove.state.models import AuditEvent, EventKind, Migration
from pgmove.state.store import Enqueue, Store
from pgmove.state.work import step_due


def os_user() -> str:
    """Who runs this process, from the real uid: $USER and $LOGNAME are whatever the caller set."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


def cli_actor(config: Config, as_user: str | None, config_path: str) -> str:
    """The chat id this OS user acts as: `--as` must be one [access.cli_users] maps it to (or is derived)."""
    user = os_user()
    ids = config.access.cli_ids(user)
    if not ids:
        raise NotAuthorized(
            f"The operating-system user {user} has no entry in [access.cli_users] of {config_path}, so it acts as "
            f"nobody on the command line: add `{user} = \"<chat id>\"` there (ask whoever runs pgmove).")
    if as_user is None:
        if len(ids) == 1:
            return ids[0]
        raise UsageError(f"{user} may act as {', '.join(ids)} ([access.cli_users]): say which with --as.")
    if as_user not in ids:
        raise NotAuthorized(
            f"{user} acts as {', '.join(ids)} on the command line, not as {as_user}: [access.cli_users] in "
            f"{config_path} has no mapping from {user} to {as_user}.")
    return as_user


def record_origin(store: Store, reply: Reply, actor: str) -> None:
    """The audit trail (and the Slack thread) says a change came from the shell, and from which OS user."""
    m = reply.migration
    if reply.kind != "accepted" or m is None:
        return
    store.append_event(m.id, AuditEvent(
        kind=EventKind.PROGRESS, at=datetime.now(UTC), actor=actor, data={"via": "cli", "os_user": os_user()},
        message=f"{actor} gave {reply.verb} {m.source} on the command line, as OS user {os_user()}"))


def json_reply(reply: Reply, migration: Migration | None = None, text: str | None = None,
               kind: str | None = None, ok: bool | None = None) -> dict[str, Any]:
    """Every `--json` answer: ok, kind, text (plain), verb, then the payload: the migration's own fields at the
    top level (id, state, source, target, steps, ...), or `migrations`, `events`, `servers`; `progress` in a
    status during a copy."""
    shown = migration or reply.migration
    out: dict[str, Any] = {"ok": reply.ok if ok is None else ok, "kind": kind or reply.kind,
                           "text": views.for_terminal(text if text is not None else reply.text), "verb": reply.verb}
    if shown is not None:
        out.update(shown.model_dump(mode="json"))
    if reply.migrations:
        out["migrations"] = [m.model_dump(mode="json") for m in reply.migrations]
    if reply.events:
        out["events"] = [e.model_dump(mode="json") for e in reply.events]
    if reply.servers:
        out["servers"] = reply.servers
    if reply.announcements:
        out["announcements"] = [a.model_dump(mode="json") for a in reply.announcements]
    if reply.progress is not None and migration is None:  # a later record (after --wait) is past that progress
        out["progress"] = reply.progress
    return out


def emit(reply: Reply, as_json: bool, migration: Migration | None = None, text: str | None = None,
         kind: str | None = None, ok: bool | None = None) -> None:
    said = text if text is not None else reply.text
    if as_json:
        typer.echo(json.dumps(json_reply(reply, migration, said, kind, ok), indent=2))
        if not (reply.ok if ok is None else ok):  # the one line a person or a log reads, beside the JSON
            typer.echo(views.for_terminal(said).splitlines()[0], err=True)
        return
    typer.echo(views.for_terminal(said), err=not (reply.ok if ok is None else ok))


def _after_own_events(store: Store, m: Migration) -> str | None:
    """The stream id of the command's own transition (written with the record, stamped with its updated_at):
    what a fast worker wrote after it, before this process looked, is still shown."""
    for event in reversed(store.recent_events(m.id, 200)):
        if event.at == m.updated_at and event.kind != EventKind.PROGRESS:
            return event.id
    return None


def wait_until_resting(store: Store, config: Config, m: Migration, timeout: float,
                       changed: bool = False, enqueue: Enqueue | None = None) -> Migration | None:
    """Follow the event stream until nothing happens without a person (or the timeout), each event a line on
    stderr as it happens, and once "no worker is running" when the next step waits for one that is not there."""
    from pgmove.worker.reaper import reap  # the waiting client also notices a dead worker

    deadline = time.monotonic() + timeout
    # A command that changed the migration is followed from its own transition; a read (status) from now.
    cursor = (_after_own_events(store, m) if changed else None) or store.last_event_id(m.id) or "0-0"
    live_cursor = store.last_live_id(m.id) or "0-0"
    last_check, told = 0.0, False
    while time.monotonic() < deadline:
        current = store.get(m.id)
        if current is not None and current.state in RESTING and step_due(current) is None:
            # The record is read after the events: what moved it to rest was written after the last read.
            _say(store.events(m.id, after=cursor))
            return current
        events = store.wait_events(m.id, cursor, block_ms=500, live_after=live_cursor)
        for event in events:
            if event.data.get("tick"):
                live_cursor = event.id or live_cursor
            else:
                cursor = event.id or cursor
        _say(events)
        if time.monotonic() - last_check > 2:
            # With the config it also resumes poolers a dead step left paused; a cutover window it finds dead
            # unfreezes, which a worker must be asked to do.
            reap(store, "pgmove-do", config, enqueue)
            last_check = time.monotonic()
            if (not told and current is not None and step_due(current) is not None
                    and not store.workers_seen(config.worker_gone_after)):
                typer.echo(views.for_terminal(views.no_worker_text(current)), err=True)
                told = True
    return None


def _say(events: list[AuditEvent]) -> None:
    for event in events:
        if event.data.get("via") != "cli":  # not this command's own origin line
            typer.echo(views.for_terminal(views.event_line(event)), err=True)
