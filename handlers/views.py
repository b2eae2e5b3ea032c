"""Every sentence pgmove says, as pure functions of replies, migrations and events (CLI and Slack share them).

The text is Slack mrkdwn: every piece of data (names from catalogs and chat, reasons, messages from the core)
goes through esc(), so a database called `<!channel>` is shown, never obeyed. Only mention() makes markup.
A terminal gets for_terminal() of the same text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pgmove.state.machine import State
from pgmove.state.models import AuditEvent, Decision, Migration, PausedPooler, StepName, StepStatus
from pgmove.state.progress import duration, megabytes
from pgmove.state.work import STEP_FOR_STATE

_NEXT: dict[State, str] = {
    State.PLANNED: "preflight checks are running",
    State.READY: "next: `/pgmove freeze {src}` (a second person approves)",
    State.SYNCING: "logical replication to {dst} is catching up",
    State.IN_SYNC: ("{dst} follows {src} live; next: `/pgmove cutover {src}` (one approval, a bounded window) or "
                    "`/pgmove freeze {src}` (freeze, drain, verify; cutover approved apart)"),
    State.AWAITING_FREEZE_APPROVAL: "waiting for an approver: `/pgmove approve {src}` or `/pgmove reject {src}`",
    State.FREEZING: "freezing writes on {src}",
    State.FROZEN: "{src} is frozen; `/pgmove unfreeze {src}` puts it back",
    State.COPYING: "copying to {dst}",
    State.VERIFYING: "verifying the copy on {dst}",
    State.VERIFIED: "next: `/pgmove cutover {src}` (a second person approves), or `/pgmove unfreeze {src}`",
    State.VERIFY_FAILED: ("cutover is blocked: `/pgmove retry {src}` copies everything again while {src} stays frozen; "
                          "or fix the differences, then `/pgmove verify {src}`; or `/pgmove unfreeze {src}`"),
    State.AWAITING_CUTOVER_APPROVAL: "waiting for an approver: `/pgmove approve {src}` or `/pgmove reject {src}`",
    State.AWAITING_UNFREEZE_APPROVAL: ("the cutover started, so writes back to {src} need an approver: "
                                       "`/pgmove approve {src}` or `/pgmove reject {src}`"),
    State.CUTTING_OVER: "switching to {dst}",
    State.CUT_OVER: "done: {dst} serves the app; {src} stays frozen",
    State.UNFREEZING: "putting {src} back as it was",
    State.ABORTED: "aborted; {src} is as it was before",
    State.FAILED: "`/pgmove retry {src}` to try the step again, or `/pgmove unfreeze {src}`",
}


# Where an abort may also drop what the copy created: the source frozen, the cutover not started.
_DROP_OFFERED = frozenset({State.FROZEN, State.VERIFIED, State.VERIFY_FAILED, State.AWAITING_CUTOVER_APPROVAL})
_USER_ID = re.compile(r"^[UW][A-Z0-9_]{1,40}$")  # Slack's user ids; anything else is shown, not mentioned
_OWN_MENTION = re.compile(r"&lt;@([UW][A-Z0-9_]{1,40})&gt;")


def esc(value: object) -> str:
    """Data inside Slack text: &, < and > escaped, as Slack asks, so no mention, link or command hides in it."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention(user: str) -> str:
    return f"<@{user}>" if _USER_ID.match(user) else esc(user)


def core_text(text: str, users: Iterable[str]) -> str:
    """A message the core wrote (a refusal): all of it escaped, then its mentions of pgmove's own users (the
    configured people and the one who asked) made mentions again. A name in it can mention nobody else."""
    known = set(users)
    return _OWN_MENTION.sub(lambda found: mention(found.group(1)) if found.group(1) in known else found.group(0), esc(text))


_MARKUP_MENTION = re.compile(r"<@([UW][A-Z0-9_]{1,40})>")
_SLASH_COMMAND = re.compile(r"`/pgmove ([^`\n]*)`")
_CODE = re.compile(r"`([^`\n]*)`")


def for_terminal(text: str) -> str:
    """The same sentence for a terminal, plain: a mention is the id, a `/pgmove ...` hint is the command to type
    here, code marks go, and the entities are the characters they stand for (data never held markup: esc())."""
    text = _MARKUP_MENTION.sub(r"\1", text)
    text = _SLASH_COMMAND.sub(lambda found: f'pgmove do "{found.group(1)}"', text)
    text = _CODE.sub(r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def next_hint(m: Migration) -> str:
    src, dst = esc(m.source), esc(m.target) if m.target else "the target"
    if m.state == State.FAILED and not m.source_frozen:  # nothing is frozen: unfreeze would be refused
        step = f"the {esc(m.failure.step.value)} step" if m.failure else "the step"
        plan = f"`/pgmove plan {src} {dst}` to plan anew, " if m.target else ""
        return f"`/pgmove retry {src}` to try {step} again, {plan}or `/pgmove abort {src}`"
    hint = _NEXT[m.state]
    if m.state == State.READY and m.plan.method == "logical" and m.target:
        hint = "next: `/pgmove sync {src}` starts replication to {dst}"
    hint = hint.format(src=src, dst=dst)
    if m.state == State.ABORTED and m.created_target_databases:
        hint += "; " + leftover_text(m)
    return hint


def leftover_text(m: Migration) -> str:
    """What an aborted migration left on its target, and how to clear it before the target is planned again."""
    names = ", ".join(esc(name) for name in m.created_target_databases)
    return (f"pgmove created {names} on {esc(m.target)} and left them there: a later plan to {esc(m.target)} is "
            f"refused while they exist; drop them there (`DROP DATABASE <name> WITH (FORCE)` as a superuser) once "
            "nobody needs them")


def no_worker_text(m: Migration) -> str:
    step = STEP_FOR_STATE.get(m.state)
    return (f"queued: {esc(step.value if step else 'the next step')} of {esc(m.source)} waits for a worker, and no worker "
            "is running; nothing happens until one starts (`pgmove worker`).")


def title(m: Migration) -> str:
    return esc(f"{m.source} -> {m.target}" if m.target else f"{m.source} (freeze only)")


def accepted_text(verb: str, m: Migration, events: list[AuditEvent]) -> str:
    said = esc(events[0].message if events else verb)
    actor = events[0].actor if events else ""
    if events and said.startswith(esc(actor)) and not actor.startswith("worker"):
        said = mention(actor) + said[len(esc(actor)):]  # a mention in Slack, the id in a terminal
    lines = [f"{said}. [{esc(m.id)}: {m.state.value}]"]
    if m.approval and m.approval.decision == Decision.PENDING and verb in ("freeze", "cutover", "unfreeze", "abort"):
        lines.append(approval_text(m))
    else:
        lines.append(next_hint(m))
    return "\n".join(lines)


def approval_text(m: Migration) -> str:
    a = m.approval
    assert a is not None
    plan = m.plan
    dbs = esc(", ".join(plan.databases)) if plan.databases else "all databases"
    size = f", {megabytes(m.preflight.total_bytes)}" if m.preflight else ""
    how = f"method {esc(plan.method)}, {plan.jobs} jobs" if m.target else "no copy (freeze only)"
    if a.action.value == "freeze":
        grace = m.freeze_options.grace_seconds
        how += f", {m.freeze_options.mode.value} freeze" + (f", {grace:g}s grace" if grace is not None else "")
        if m.freeze_options.archive:
            how += f", an archive kept as {esc(m.freeze_options.archive)}"
        if m.freeze_options.snapshot:
            how += ", then CHECKPOINT, the snapshot hook and an automatic unfreeze"
    if a.action.value == "unfreeze":
        what = "Abort (unfreezing the source)" if m.aborting else "Unfreeze"
        return (f"{what} of {title(m)} requested by {mention(a.requester)} (request {esc(a.id)}) after its cutover "
                f"started: {esc(m.source)} takes writes again while the app may already be on "
                f"{esc(m.target or 'the target')}. {esc(hook_report_text(m))} Another approver must approve before "
                f"{a.expires_at:%H:%M} UTC: `/pgmove approve {esc(m.source)}`.")
    if a.action.value == "cutover" and a.window_seconds is not None:
        return window_text(m) + (f"\n{esc(a.rollback)}" if a.rollback else "")
    rollback = f"\n{esc(a.rollback)}" if a.rollback else ""
    return (f"{a.action.value.capitalize()} of {title(m)} requested by {mention(a.requester)} (request {esc(a.id)}): "
            f"{dbs}{size}, {how}. Another approver must approve before {a.expires_at:%H:%M} UTC: "
            f"`/pgmove approve {esc(m.source)}`.{rollback}")


def window_text(m: Migration) -> str:
    """The one approval of a cutover from in sync says all it covers and what happens if the window runs out."""
    a = m.approval
    assert a is not None and a.window_seconds is not None
    return (f"Cutover of {title(m)} requested by {mention(a.requester)} (request {esc(a.id)}), one approval for all "
            f"of it: {window_effect(m, a.window_seconds)} Another approver must approve before "
            f"{a.expires_at:%H:%M} UTC: `/pgmove approve {esc(m.source)}`.")


def window_effect(m: Migration, window_seconds: float) -> str:
    expected = f" Expected write downtime: about {m.expected_downtime_seconds:g}s." if m.expected_downtime_seconds else ""
    src = esc(m.source)
    return (f"freeze {src}, drain replication, copy sequences, large objects and the tables left out of it, verify "
            "(the ranges still changing when the copy was verified in sync, every table replication does not carry "
            f"exactly, every catalog), then run the cutover hook, all within a {window_seconds:g}s window.{expected} "
            "If anything fails or the "
            f"window runs out before the hook, {src} is unfrozen automatically, replication keeps running and the "
            f"migration is back in sync; the thread says why. Once the hook runs, {src} stays frozen for good and "
            "its replication is removed.")


def sync_lines(m: Migration) -> list[str]:
    """Replication as the monitor last read it, per database, and what preflight found about it."""
    lines: list[str] = []
    st = m.sync_status
    if st is not None and m.sync_setup is not None:
        lines.append(f"replication, read at {st.at:%H:%M:%S} UTC:")
        for d in st.databases:
            secs = f", {d.lag_seconds:.1f}s" if d.lag_seconds is not None else ""
            copying = d.tables_total - d.tables_ready
            errors = f", {d.apply_errors} apply error(s): {d.last_error or 'see the target log'}" if d.apply_errors else ""
            lines.append(esc(f"  {d.database}: {d.lag_bytes} bytes behind{secs}, WAL retained "
                             f"{d.retained_wal_bytes / 1e6:.1f} MB, {copying} table(s) in initial copy{errors}"))
        lines += [f"  PROBLEM (blocks freeze and cutover): {esc(p)}" for p in st.problems]
    live = m.live_verification
    if live is not None and m.sync_setup is not None and live.finished_at is not None:
        lines.append(esc(f"verified while in sync at {live.finished_at:%H:%M:%S} UTC: {live.tables} tables, "
                         f"{live.rows:,} rows; {len(live.hot)} range(s) still changing then, compared again inside "
                         "the cutover window"))
    r = m.readiness
    if r is not None and m.state in (State.PLANNED, State.READY, State.FAILED):
        for t in r.keyless:
            lines.append(esc(f"table without a key: {t.database}.{t.schema_name}.{t.name} ({t.size_bytes / 1e6:.1f} MB)"))
        lines += [f"not replicated: {esc(n)}" for n in r.not_carried]
        if r.wal_held:
            lines.append(esc(f"WAL: {r.wal_held}"))
        if m.expected_downtime_seconds is not None:
            lines.append(f"expected write downtime at cutover: about {m.expected_downtime_seconds:g}s")
    return lines


def hook_report_text(m: Migration) -> str:
    """What the cutover hook reported, for whoever decides whether the source may take writes again."""
    h = m.hook
    if h is None:
        return "The cutover hook never ran (the cutover failed before it, or none is configured)."
    if h.error:
        return f"The cutover hook {h.argv0} could not start: {h.error}."
    if h.finished_at is None:
        return (f"The cutover hook {h.argv0} started at {h.started_at:%H:%M:%S} UTC and its end was never recorded: "
                "it may have switched the app.")
    how = "was killed at its time limit" if h.timed_out else f"exited with status {h.exit_status}"
    tail = " / ".join(h.output[-5:]) or "no output"
    return f"The cutover hook {h.argv0} {how} at {h.finished_at:%H:%M:%S} UTC; its last output: {tail}."


def pooler_lines(m: Migration) -> list[str]:
    """The measured pause of each pooler the cutover switched, as the final report gives it."""
    done = m.last_step(StepName.CUTOVER)
    timeline = done.result.get("poolers") if done is not None and done.status == StepStatus.DONE else None
    lines = []
    for name, t in (timeline or {}).items():
        if "paused_seconds" not in t:
            continue
        serves = ", ".join(f"{db} -> {to}" for db, to in (t.get("now_serves") or {}).items())
        lines.append(esc(f"Pooler {name}: the app was paused {t['paused_seconds']:.2f}s (paused at {t.get('paused_at')}, "
                         f"repointed at {t.get('repointed_at')}, resumed at {t.get('resumed_at')}; at most "
                         f"{t.get('clients_waiting', 0)} client(s) waiting); it now sends {serves}."))
    return lines


def live_line(m: Migration, event: AuditEvent | None) -> str | None:
    """The latest live tick, if it is about what happens now: the running step's (since it started), or in
    sync, with no step running, the monitor's reading since the last change. An older one is not shown."""
    if event is None:
        return None
    running = m.steps[-1] if m.steps and m.steps[-1].status == StepStatus.RUNNING else None
    if running is None:
        reading = m.state == State.IN_SYNC and event.step is None and event.at >= m.updated_at
        return event.message if reading else None
    return event.message if event.step == running.name and event.at >= running.started_at else None


def status_text(m: Migration, worker_alive: bool = True, live: str | None = None) -> str:
    """`worker_alive`: False when no worker holds this migration's lease (nobody would give a paused pooler back);
    `live`: what the running step last said of its progress (live_line)."""
    lines = [f"{title(m)} [{esc(m.id)}] is {m.state.value.replace('_', ' ')}", next_hint(m)]
    if live:
        lines.append(f"now: {esc(live)}")
    if m.failure:
        lines.append(esc(f"failed in {m.failure.step}: {m.failure.reason}"))
    if m.source_frozen and m.failure is not None and m.failure.step == StepName.UNFREEZE:
        lines.append(f"{esc(m.source)}'s unfreeze did not finish: it may still be partly frozen (frozen since "
                     f"{m.freeze.taken_at:%H:%M:%S} UTC)" if m.freeze else "")
    elif m.source_frozen:
        lines.append(f"{esc(m.source)} is frozen (since {m.freeze.taken_at:%H:%M:%S} UTC)" if m.freeze else "")
    if m.preflight and m.target and m.state in (State.READY, State.AWAITING_FREEZE_APPROVAL):
        lines += plan_lines(m)
    if m.created_target_databases and m.source_frozen and m.state in _DROP_OFFERED:
        lines.append(f"pgmove created {esc(', '.join(m.created_target_databases))} on {esc(m.target)}: "
                     f"`/pgmove abort {esc(m.source)} --drop-created` drops them with the abort")
    for paused in m.poolers_paused:
        if worker_alive:
            lines.append(esc(f"pooler {paused.name} is paused ({', '.join(paused.databases)}) since "
                             f"{paused.paused_at:%H:%M:%S} UTC: pgmove resumes it when the step ends or its worker is gone"))
        else:
            lines.append(orphaned_pooler(paused))
    if m.preflight and m.preflight.poolers:
        lines += [esc(p) for p in m.preflight.poolers]
    if m.preflight and m.preflight.problems:
        lines += [f"problem: {esc(p)}" for p in m.preflight.problems]
    if m.preflight and m.preflight.warnings:
        lines += [f"warning: {esc(w)}" for w in m.preflight.warnings]
    lines += sync_lines(m)
    if m.watch is not None:  # after cutover: the watch under way, or its summary's headline
        w = m.watch
        lines.append(esc(w.summary.splitlines()[0]) if w.summary else
                     f"watching {esc(m.target)} and {esc(m.source)} until {w.until:%H:%M:%S} UTC ({w.samples} reading(s) so far)")
    for step in m.steps[-8:]:
        took = f" in {(step.finished_at - step.started_at).total_seconds():.1f}s" if step.finished_at else ""
        mark = {StepStatus.DONE: "done", StepStatus.RUNNING: "running", StepStatus.FAILED: "FAILED"}[step.status]
        lines.append(f"  {step.name.value}: {mark}{took}{' - ' + esc(step.message) if step.message else ''}")
    if m.verification and m.verification.problems:
        problems = m.verification.problems
        lines += [f"  difference: {esc(p)}" for p in problems[:10]]
        if len(problems) > 10:
            lines.append(f"  ... and {len(problems) - 10} more (`/pgmove history {esc(m.source)}`)")
    return "\n".join(line for line in lines if line)


def plan_lines(m: Migration) -> list[str]:
    """The plan a preflight found: versions, databases and sizes, the client tools the copy will use."""
    p = m.preflight
    assert p is not None
    lines = [f"plan: PostgreSQL {esc(p.source_version)} -> {esc(p.target_version)}, {len(p.databases)} database(s), "
             f"{megabytes(p.total_bytes)}, {m.plan.jobs} jobs"]
    lines += [f"  {esc(db.name)}: {megabytes(db.size_bytes)}" + (f", owner {esc(db.owner)}" if db.owner else "")
              for db in p.databases]
    lines += [f"  {esc(tool)}: {esc(found)}" for tool, found in sorted(p.tools.items())]
    if p.roles:
        more = f" and {len(p.roles) - ROLES_NAMED} more" if len(p.roles) > ROLES_NAMED else ""
        lines.append(f"  roles: {len(p.roles)}, created or reconciled on {esc(m.target)}: "
                     f"{esc(', '.join(p.roles[:ROLES_NAMED]))}{more}")
    if p.read_bytes_per_second:
        seconds = p.total_bytes / p.read_bytes_per_second
        lines.append(f"  expected freeze: ~{duration(seconds)} to stream {megabytes(p.total_bytes)} at "
                     f"{megabytes(int(p.read_bytes_per_second))}/s (the source's COPY rate, measured now); index "
                     "builds and the verification come on top")
    return lines


ROLES_NAMED = 10


def orphaned_pooler(paused: PausedPooler) -> str:
    """A pooler left paused with no worker alive: the app's queries queue until someone acts, so say it loudly."""
    dbs = ", ".join(paused.databases)
    if paused.stays_on_target:
        by_hand = f"RESUME {dbs} on its admin console (it already points at the target)"
    elif paused.repointed:
        back = ", ".join(f"{db} -> {b.describe()}" for db, b in paused.source.items())
        by_hand = f"point it back at the source ({back}), RELOAD, then RESUME {dbs} on its admin console"
    else:
        by_hand = f"RESUME {dbs} on its admin console (it still points at the source)"
    return (f"WARNING: POOLER {esc(paused.name).upper()} IS PAUSED ({esc(dbs)}) since "
            f"{paused.paused_at:%H:%M:%S} UTC AND NO WORKER IS ALIVE: the app's queries wait on it. Start a worker "
            f"now (its reaper gives the pooler back), or {esc(by_hand)}.")


def status_list_text(migrations: list[Migration]) -> str:
    if not migrations:
        return "No migrations in progress."
    return "\n".join(f"{title(m)} [{esc(m.id)}]: {m.state.value}" for m in migrations)


def history_text(m: Migration, events: list[AuditEvent]) -> str:
    lines = [f"History of {title(m)} [{esc(m.id)}]:"]
    lines += [event_line(e) for e in events]
    return "\n".join(lines)


def event_line(e: AuditEvent) -> str:
    """One line of the audit trail for people: who (unless the message says it), what, and the move."""
    move = f" ({e.from_state.value} -> {e.to_state.value})" if e.from_state and e.to_state and e.from_state != e.to_state else ""
    who = "" if e.message.startswith(e.actor) else ("worker: " if e.actor.startswith("worker:") else f"{e.actor}: ")
    return esc(f"{e.at:%H:%M:%S} {who}{e.message}{move}")


def servers_text(listing: list[dict[str, Any]]) -> str:
    if not listing:
        return "No servers configured."
    return "\n".join(esc(
        f"{s['name']}: {s['host']}:{s['port']} as {s['user'] or 'default user'}"
        + (f", app roles {', '.join(s['app_roles'])}" if s["app_roles"] else ""))
        for s in listing
    )


def no_channel_text() -> str:
    return ("pgmove could not tell which channel this came from, so it cannot check that pgmove works there; "
            "nothing was done. Use the buttons and /pgmove in the migrations channel.")
