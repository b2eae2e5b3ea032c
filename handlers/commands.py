"""The /pgmove verbs. Chat-agnostic: Slack and the CLI both call `handle` (text) or `decide` (a click), and
render the Reply."""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pgmove.handlers import views
from pgmove.handlers.announce import cmd_announce, shown_windows, status_line, with_window_note
from pgmove.handlers.helptext import help_reply
from pgmove.handlers.parse import parse
from pgmove.handlers.reply import Reply, server_listing
from pgmove.handlers.verbs import (
    AbortCmd,
    Approve,
    CutoverCmd,
    Decide,
    FreezeCmd,
    PlanCmd,
    Reject,
    ServerCmd,
    Status,
    VerifyCmd,
)
from pgmove.handlers.workers import with_worker_note
from pgmove.state import actions, announce, sync
from pgmove.state.config import Config
from pgmove.state.errors import NotAuthorized, PgmoveError, Refused, Unavailable, UsageError
from pgmove.state.machine import TERMINAL, State
from pgmove.state.models import ApprovalAction, FreezeMode, FreezeOptions, Migration, Plan
from pgmove.state.outcome import Outcome, Policy
from pgmove.state.store import Enqueue, Store

log = logging.getLogger("pgmove.handlers")

READ_ONLY_VERBS = frozenset({"help", "servers", "status", "history"})
DECISION_VERBS = frozenset({"approve", "reject"})


@dataclass
class Deps:
    config: Config
    store: Store
    enqueue: Enqueue | None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    @property
    def policy(self) -> Policy:
        return Policy(approvers=frozenset(self.config.access.approvers), approval_ttl=self.config.approval_ttl,
                      max_lag_bytes=self.config.sync_max_lag_bytes)


def handle(deps: Deps, actor: str, text: str, channel: str | None = None, request_key: str | None = None) -> Reply:
    """Run one command as `actor`. Never raises: every outcome, refusals included, is a Reply.

    `request_key` makes retries harmless: a second call with the same key gets the first call's reply.
    `channel` None means there is no channel to check (the CLI).
    """
    return _once(deps, request_key, lambda: _handle(deps, actor, text, channel))


def decide(deps: Deps, actor: str, command: Decide, channel: str, request_key: str | None = None) -> Reply:
    """Approve or reject one request as a click names it, with the checks and the idempotency of `handle`.

    A click always comes from a channel: an empty one is refused, never taken as "nothing to check".
    """
    if not channel:
        return Reply.refusal("refused", views.no_channel_text(), command.verb)
    return _once(deps, request_key, lambda: _decide(deps, actor, command, channel))


def _once(deps: Deps, request_key: str | None, run: Callable[[], Reply]) -> Reply:
    if request_key is not None and not deps.store.claim_once(request_key):
        remembered = deps.store.recall(request_key)
        if remembered:
            return Reply.model_validate_json(remembered).model_copy(update={"duplicate": True})
        return Reply(ok=True, kind="info", text="Already working on that request.", duplicate=True)
    reply = with_worker_note(deps.store, deps.config, run())
    if request_key is not None:
        deps.store.remember(request_key, reply.model_dump_json())
    return reply


def _handle(deps: Deps, actor: str, text: str, channel: str | None) -> Reply:
    verb = None
    try:
        command = parse(text)
        verb = command.verb
        _authorize(deps.config, actor, verb, channel)
        return VERBS[verb](deps, actor, command)
    except Exception as exc:
        return _failed(deps, actor, verb, exc)


def _decide(deps: Deps, actor: str, command: Decide, channel: str) -> Reply:
    now = deps.clock()

    def decision(current: Migration | None) -> Outcome:
        if current is None:
            raise Refused("That request is not known to pgmove any more.")
        _known(deps.config, current.source)
        return actions.decide(current, actor, command.approve, now, deps.policy, command.request_id, command.reason)

    try:
        _authorize(deps.config, actor, command.verb, channel)
        return _accepted(deps.store.update(command.migration_id, decision, deps.enqueue), command.verb)
    except Exception as exc:
        return _failed(deps, actor, command.verb, exc)


def _failed(deps: Deps, actor: str, verb: str | None, exc: Exception) -> Reply:
    """Every failure as a Reply: ours say why; anything else is logged and named by a reference."""
    if isinstance(exc, Unavailable):  # nothing was decided; the edge says so (the CLI exits 4)
        return Reply.refusal("unavailable", views.esc(exc.message), verb)
    if isinstance(exc, UsageError):
        return Reply.refusal("usage", views.core_text(exc.message, _people(deps.config, actor)), verb)
    if isinstance(exc, PgmoveError):
        return Reply.refusal("refused", views.core_text(exc.message, _people(deps.config, actor)), verb)
    ref = uuid.uuid4().hex[:8]
    log.error("unexpected error handling %r for %s (ref %s)", verb, actor, ref, exc_info=exc)
    return Reply.refusal("error", f"Unexpected error, nothing was changed as far as pgmove knows; see log {ref}.", verb)


def _people(config: Config, actor: str) -> set[str]:
    """Whom a refusal may mention: the one who asked and the configured people, nobody a name smuggles in."""
    return {actor, *config.access.operators, *config.access.approvers}


def _authorize(config: Config, actor: str, verb: str, channel: str | None) -> None:
    access = config.access
    if channel is not None and access.channels and channel not in access.channels:
        raise NotAuthorized("pgmove only takes commands in its configured channels.")
    if verb == "help":
        return
    allowed = set(access.operators) | (set(access.approvers) if verb in READ_ONLY_VERBS | DECISION_VERBS else set())
    if actor not in allowed:
        raise NotAuthorized(f"<@{actor}> is not a pgmove operator; ask an admin to add you to access.operators.")


def _known(config: Config, name: str) -> str:
    if name not in config.servers:
        known = ", ".join(sorted(config.servers)) or "none configured"
        raise Refused(f"Unknown server `{name}`. Known servers: {known}.")
    return name


def _on_server(deps: Deps, server: str, decide: Callable[[Migration], Outcome]) -> Outcome:
    def guarded(current: Migration | None) -> Outcome:
        if current is None:
            raise Refused(f"Nothing is planned or frozen on {server}. Start with `/pgmove plan {server} <target>`.")
        return decide(current)

    return deps.store.update_server(_known(deps.config, server), guarded, deps.enqueue)


def _accepted(outcome: Outcome, verb: str) -> Reply:
    m = outcome.migration
    return Reply(ok=True, kind="accepted", verb=verb, visibility="channel", migration=m,
                 text=views.accepted_text(verb, m, outcome.events))


def cmd_help(deps: Deps, actor: str, command: object) -> Reply:
    return help_reply(getattr(command, "topic", None))


def cmd_servers(deps: Deps, actor: str, command: object) -> Reply:
    listing = server_listing(deps.config)
    return Reply(ok=True, kind="info", verb="servers", servers=listing, text=views.servers_text(listing))


def cmd_plan(deps: Deps, actor: str, command: PlanCmd) -> Reply:
    source, target = _known(deps.config, command.source), _known(deps.config, command.target)
    if source == target:
        raise Refused("Source and target are the same server.")
    if command.replica_identity_full and command.method != "logical":
        raise Refused("--replica-identity-full is for `--method logical` (tables without a key are then replicated); "
                      "the offline method copies every table during the freeze and changes nothing on the source.")
    plan = Plan(source=source, target=target, databases=command.databases, jobs=command.jobs, method=command.method,
                replica_identity_full=command.replica_identity_full)
    now = deps.clock()

    def decide(current: Migration | None) -> Outcome:
        # Inside the compare-and-set: the store watches both servers' claims, so a concurrent plan that
        # takes either of them makes this attempt run again and see it.
        for other in deps.store.active():
            if other.source != source and other.state not in TERMINAL and target in (other.source, other.target):
                raise Refused(f"{target} is already part of the migration {other.source} -> {other.target} ({other.state.value}).")
            if other.source != source and other.state not in TERMINAL and source == other.target:
                raise Refused(f"{source} is the target of the migration from {other.source}; finish or abort that first.")
        if current is None or current.state == State.ABORTED:
            return actions.new_migration(f"mig-{secrets.token_hex(4)}", plan, actor, now)
        if current.state == State.CUT_OVER:
            raise Refused(f"{source} was already cut over to {current.target}; it stays frozen by design.")
        if sync.needs_cleanup(current):
            raise Refused(f"{source} is already being moved to {current.target} by logical replication ({current.id}, "
                          f"{current.state.value.replace('_', ' ')}); a second migration of it needs that one ended "
                          f"first: `/pgmove abort {source}` removes its replication from both servers.")
        return actions.replan(current, plan, actor, now)

    return _accepted(deps.store.update_server(source, decide, deps.enqueue, others=(target,)), "plan")


def cmd_status(deps: Deps, actor: str, command: Status) -> Reply:
    if command.server is None:
        found = deps.store.active()
        windows = shown_windows(deps.store, None, deps.clock())
        listed = views.status_list_text(found) if found or not windows else ""
        return Reply(ok=True, kind="info", verb="status", migrations=found, announcements=windows,
                     text="\n".join([listed, *map(status_line, windows)]).strip())
    windows = shown_windows(deps.store, _known(deps.config, command.server), deps.clock())
    m = deps.store.active_for(command.server)
    if m is None:
        text = f"Nothing is planned or frozen on {command.server}."
        return Reply(ok=True, kind="info", verb="status", announcements=windows,
                     text="\n".join([text, *map(status_line, windows)]))
    # A paused pooler is given back by a live worker (its step or its reaper): with none, the app waits.
    alive = not m.poolers_paused or (m.lease is not None and deps.store.lock_holder(m.source) == m.lease.token)
    tick = deps.store.latest_live(m.id)
    live = views.live_line(m, tick)
    progress = tick.data.get("copy") if tick is not None and live is not None else None
    text = views.status_text(m, worker_alive=alive, live=live)
    return Reply(ok=True, kind="info", verb="status", migration=m, progress=progress, announcements=windows,
                 text="\n".join([text, *map(status_line, windows)]))


def cmd_history(deps: Deps, actor: str, command: ServerCmd) -> Reply:
    m = deps.store.active_for(_known(deps.config, command.server))
    if m is None:
        return Reply(ok=True, kind="info", verb="history", text=f"No migration recorded for {command.server}.")
    events = deps.store.events(m.id)
    return Reply(ok=True, kind="info", verb="history", migration=m, events=events, text=views.history_text(m, events))


def cmd_freeze(deps: Deps, actor: str, command: FreezeCmd) -> Reply:
    server, now = _known(deps.config, command.server), deps.clock()
    options = FreezeOptions(mode=FreezeMode(command.mode), grace_seconds=command.grace_seconds, archive=command.archive,
                            snapshot=command.snapshot)
    if command.snapshot and not deps.config.servers[server].snapshot_hook:
        raise Refused(f"--snapshot needs `snapshot_hook` in [servers.{server}] of pgmove's config: the command that "
                      "takes the volume snapshot (it gets the server name and a label). Nothing was requested; ask "
                      "whoever runs pgmove to set it, or freeze without --snapshot.")
    if command.archive and not deps.config.archive_dir:
        raise Refused("--archive needs `archive_dir` in pgmove's config: the folder on the worker's host where archives "
                      "are kept. Ask whoever runs pgmove to set it, or freeze without --archive.")

    def decide(current: Migration | None) -> Outcome:
        if current is None or current.state == State.ABORTED:
            current = actions.standalone_freeze_record(f"mig-{secrets.token_hex(4)}", server, actor, now)
        elif current.state == State.CUT_OVER:
            raise Refused(f"{server} was cut over to {current.target}; it is frozen already and stays so.")
        window = announce.check_window(deps.store.announcement(server), now, deps.config.announce_lead)
        return actions.request_approval(current, ApprovalAction.FREEZE, actor, now, deps.policy, options, window=window)

    return with_window_note(_accepted(deps.store.update_server(server, decide, deps.enqueue), "freeze"))


def cmd_cutover(deps: Deps, actor: str, command: CutoverCmd) -> Reply:
    now = deps.clock()

    def decide(m: Migration) -> Outcome:
        if command.window_seconds is not None and m.state != State.IN_SYNC:
            raise Refused(f"--window is for a cutover from in sync (one approval for freeze and switch); {m.source} is "
                          f"{m.state.value.replace('_', ' ')}: `/pgmove cutover {m.source}` without it.")
        window = command.window_seconds or deps.config.cutover_window_seconds
        # From in sync the cutover freezes the source too: its approval says whether that is in the announced window.
        check = announce.check_window(deps.store.announcement(m.source), now, deps.config.announce_lead) \
            if m.state == State.IN_SYNC else None
        return actions.request_approval(m, ApprovalAction.CUTOVER, actor, now, deps.policy, window_seconds=window,
                                        window=check)

    return _accepted(_on_server(deps, command.server, decide), "cutover")


def cmd_sync(deps: Deps, actor: str, command: ServerCmd) -> Reply:
    now = deps.clock()
    return _accepted(_on_server(deps, command.server, lambda m: sync.request_sync(m, actor, now)), "sync")


def cmd_approve(deps: Deps, actor: str, command: Approve) -> Reply:
    now = deps.clock()
    out = _on_server(deps, command.server, lambda m: actions.decide(m, actor, True, now, deps.policy, command.request_id))
    return _accepted(out, "approve")


def cmd_reject(deps: Deps, actor: str, command: Reject) -> Reply:
    now = deps.clock()
    out = _on_server(deps, command.server,
                     lambda m: actions.decide(m, actor, False, now, deps.policy, command.request_id, command.reason))
    return _accepted(out, "reject")


def cmd_unfreeze(deps: Deps, actor: str, command: ServerCmd) -> Reply:
    now = deps.clock()
    return _accepted(_on_server(deps, command.server, lambda m: actions.request_unfreeze(m, actor, now, policy=deps.policy)), "unfreeze")


def cmd_abort(deps: Deps, actor: str, command: AbortCmd) -> Reply:
    now = deps.clock()
    return _accepted(_on_server(deps, command.server, lambda m: actions.request_unfreeze(
        m, actor, now, abort=True, policy=deps.policy, drop_created=command.drop_created)), "abort")


def cmd_verify(deps: Deps, actor: str, command: VerifyCmd) -> Reply:
    now = deps.clock()
    return _accepted(_on_server(deps, command.server, lambda m: actions.request_verify(m, actor, now, command.quick)), "verify")


def cmd_retry(deps: Deps, actor: str, command: ServerCmd) -> Reply:
    now = deps.clock()
    return _accepted(_on_server(deps, command.server, lambda m: actions.retry(m, actor, now)), "retry")


# Each handler takes the command type its verb parses to (parse() guarantees the pairing).
VERBS: dict[str, Callable[[Deps, str, Any], Reply]] = {
    "help": cmd_help, "servers": cmd_servers, "plan": cmd_plan, "status": cmd_status,
    "history": cmd_history, "freeze": cmd_freeze, "cutover": cmd_cutover, "approve": cmd_approve,
    "reject": cmd_reject, "unfreeze": cmd_unfreeze, "abort": cmd_abort, "verify": cmd_verify, "retry": cmd_retry,
    "sync": cmd_sync, "announce": lambda deps, actor, command: cmd_announce(deps, actor, command, _known(deps.config, command.server)),
}
