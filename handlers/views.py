"""Every sentence pgmove says, as pure functions of replies, migrations and events (CLI and Slack share them)."""

from __future__ import annotations

from typing import Any

from handlers.parse import USAGE
from state.machine import State
from state.models import AuditEvent, Decision, Migration, StepStatus

_NEXT: dict[State, str] = {
    State.PLANNED: "preflight checks are running",
    State.READY: "next: `/pgmove freeze {src}` (a second person approves)",
    State.SYNCING: "logical replication to {dst} is catching up",
    State.IN_SYNC: "{dst} follows {src} live; next: `/pgmove freeze {src}` for the final switch",
    State.AWAITING_FREEZE_APPROVAL: "waiting for an approver: `/pgmove approve {src}` or `/pgmove reject {src}`",
    State.FREEZING: "freezing writes on {src}",
    State.FROZEN: "{src} is frozen; `/pgmove unfreeze {src}` puts it back",
    State.COPYING: "copying to {dst}",
    State.VERIFYING: "verifying the copy on {dst}",
    State.VERIFIED: "next: `/pgmove cutover {src}` (a second person approves), or `/pgmove unfreeze {src}`",
    State.VERIFY_FAILED: "cutover is blocked: fix the differences, then `/pgmove verify {src}`, or `/pgmove unfreeze {src}`",
    State.AWAITING_CUTOVER_APPROVAL: "waiting for an approver: `/pgmove approve {src}` or `/pgmove reject {src}`",
    State.AWAITING_UNFREEZE_APPROVAL: ("the cutover started, so writes back to {src} need an approver: "
                                       "`/pgmove approve {src}` or `/pgmove reject {src}`"),
    State.CUTTING_OVER: "switching to {dst}",
    State.CUT_OVER: "done: {dst} serves the app; {src} stays frozen",
    State.UNFREEZING: "putting {src} back as it was",
    State.ABORTED: "aborted; {src} is as it was before",
    State.FAILED: "`/pgmove retry {src}` to try the step again, or `/pgmove unfreeze {src}`",
}


def next_hint(m: Migration) -> str:
    return _NEXT[m.state].format(src=m.source, dst=m.target or "the target")


def title(m: Migration) -> str:
    return f"{m.source} -> {m.target}" if m.target else f"{m.source} (freeze only)"


def accepted_text(verb: str, m: Migration, events: list[AuditEvent]) -> str:
    said = events[0].message if events else verb
    if events and said.startswith(events[0].actor) and not events[0].actor.startswith("worker"):
        said = f"<@{events[0].actor}>" + said[len(events[0].actor):]  # a mention in Slack, the id in a terminal
    lines = [f"{said}. [{m.id}: {m.state.value}]"]
    if m.approval and m.approval.decision == Decision.PENDING and verb in ("freeze", "cutover", "unfreeze", "abort"):
        lines.append(approval_text(m))
    else:
        lines.append(next_hint(m))
    return "\n".join(lines)


def approval_text(m: Migration) -> str:
    a = m.approval
    assert a is not None
    plan = m.plan
    dbs = ", ".join(plan.databases) if plan.databases else "all databases"
    size = f", {m.preflight.total_bytes / 1e6:.1f} MB" if m.preflight else ""
    how = f"method {plan.method}, {plan.jobs} jobs" if m.target else "no copy (freeze only)"
    if a.action.value == "freeze":
        grace = m.freeze_options.grace_seconds
        how += f", {m.freeze_options.mode.value} freeze" + (f", {grace:g}s grace" if grace is not None else "")
        if m.freeze_options.archive:
            how += f", an archive kept as {m.freeze_options.archive}"
    if a.action.value == "unfreeze":
        what = "Abort (unfreezing the source)" if m.aborting else "Unfreeze"
        return (f"{what} of {title(m)} requested by <@{a.requester}> (request {a.id}) after its cutover started: "
                f"{m.source} takes writes again while the app may already be on {m.target or 'the target'}. "
                f"{hook_report_text(m)} Another approver must approve before {a.expires_at:%H:%M} UTC: "
                f"`/pgmove approve {m.source}`.")
    return (f"{a.action.value.capitalize()} of {title(m)} requested by <@{a.requester}> (request {a.id}): {dbs}{size}, "
            f"{how}. Another approver must approve before {a.expires_at:%H:%M} UTC: `/pgmove approve {m.source}`.")


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


def status_text(m: Migration) -> str:
    lines = [f"{title(m)} [{m.id}] is {m.state.value.replace('_', ' ')}", next_hint(m)]
    if m.failure:
        lines.append(f"failed in {m.failure.step}: {m.failure.reason}")
    if m.source_frozen:
        lines.append(f"{m.source} is frozen (since {m.freeze.taken_at:%H:%M:%S} UTC)" if m.freeze else "")
    if m.preflight and m.preflight.problems:
        lines += [f"problem: {p}" for p in m.preflight.problems]
    if m.preflight and m.preflight.warnings:
        lines += [f"warning: {w}" for w in m.preflight.warnings]
    for step in m.steps[-8:]:
        took = f" in {(step.finished_at - step.started_at).total_seconds():.1f}s" if step.finished_at else ""
        mark = {StepStatus.DONE: "done", StepStatus.RUNNING: "running", StepStatus.FAILED: "FAILED"}[step.status]
        lines.append(f"  {step.name.value}: {mark}{took}{' - ' + step.message if step.message else ''}")
    if m.verification and m.verification.get("problems"):
        problems = m.verification["problems"]
        lines += [f"  difference: {p}" for p in problems[:10]]
        if len(problems) > 10:
            lines.append(f"  ... and {len(problems) - 10} more (`/pgmove history {m.source}`)")
    return "\n".join(line for line in lines if line)


def status_list_text(migrations: list[Migration]) -> str:
    if not migrations:
        return "No migrations in progress."
    return "\n".join(f"{title(m)} [{m.id}]: {m.state.value}" for m in migrations)


def history_text(m: Migration, events: list[AuditEvent]) -> str:
    lines = [f"History of {title(m)} [{m.id}]:"]
    lines += [event_line(e) for e in events]
    return "\n".join(lines)


def event_line(e: AuditEvent) -> str:
    """One line of the audit trail for people: who (unless the message says it), what, and the move."""
    move = f" ({e.from_state.value} -> {e.to_state.value})" if e.from_state and e.to_state and e.from_state != e.to_state else ""
    who = "" if e.message.startswith(e.actor) else ("worker: " if e.actor.startswith("worker:") else f"{e.actor}: ")
    return f"{e.at:%H:%M:%S} {who}{e.message}{move}"


def servers_text(listing: list[dict[str, Any]]) -> str:
    if not listing:
        return "No servers configured."
    return "\n".join(
        f"{s['name']}: {s['host']}:{s['port']} as {s['user'] or 'default user'}"
        + (f", app roles {', '.join(s['app_roles'])}" if s["app_roles"] else "")
        for s in listing
    )


def help_text(topic: str | None) -> str:
    if topic:
        return f"`/pgmove {USAGE[topic]}`"
    return "pgmove moves a PostgreSQL server, with a second person approving freeze and cutover.\n" + "\n".join(
        f"  /pgmove {usage}" for usage in USAGE.values()
    )
