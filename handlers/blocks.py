"""Block Kit for Slack, built with slack_sdk's models from migrations and events. Pure: no I/O.

Every builder keeps within Slack's limits by construction (50 blocks, 3000 characters per text):
long content is split into several messages, or handed back as a report to attach as a file.
Data goes in through views.esc (names, reasons, messages); markup only through views.mention.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError
from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from pgmove.handlers import views
from pgmove.handlers.announce import window_line
from pgmove.handlers.verbs import Decide
from pgmove.handlers.views import esc, mention
from pgmove.state.machine import State
from pgmove.state.models import Approval, AuditEvent, Decision, Migration, StepStatus
from pgmove.state.report import VerificationReport

MAX_TEXT = 2900  # under Slack's 3000, with room for the marker of a split
MAX_BLOCKS = 45
APPROVE, REJECT = "pgmove_approve", "pgmove_reject"
Message = tuple[str, list[dict[str, Any]]]  # (fallback text, blocks)

_STATE_ICON = {
    State.VERIFIED: ":white_check_mark:", State.CUT_OVER: ":tada:", State.FAILED: ":x:",
    State.VERIFY_FAILED: ":warning:", State.ABORTED: ":leftwards_arrow_with_hook:",
    State.AWAITING_FREEZE_APPROVAL: ":raising_hand:", State.AWAITING_CUTOVER_APPROVAL: ":raising_hand:",
    State.AWAITING_UNFREEZE_APPROVAL: ":raising_hand:",
}


def chunks(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Split on line ends into pieces Slack accepts; a single over-long line is cut hard."""
    pieces, current = [], ""
    for line in text.splitlines():
        while len(line) > limit:
            pieces.append(line[:limit])
            line = line[limit:]
        if len(current) + len(line) + 1 > limit:
            pieces.append(current)
            current = ""
        current += ("\n" if current else "") + line
    if current or not pieces:
        pieces.append(current or " ")
    return pieces


def _md(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text[:MAX_TEXT]))


def _dump(blocks: list[Block]) -> list[dict[str, Any]]:
    return [b.to_dict() for b in blocks[:MAX_BLOCKS]]


def text_messages(text: str) -> list[Message]:
    """Plain text as one or more messages of one section each."""
    return [(piece, _dump([_md(piece)])) for piece in chunks(text)]


def status_message(m: Migration, as_of: AuditEvent | None = None, live: str | None = None) -> Message:
    """The one status message of a migration, as it stood at event `as_of` (so each update shows its state),
    with the latest live progress line while a step runs."""
    state = as_of.to_state if as_of is not None and as_of.to_state is not None else m.state
    at = as_of.at if as_of is not None else m.updated_at
    shown = m.model_copy(update={"state": state})
    icon = _STATE_ICON.get(state, ":hourglass_flowing_sand:")
    headline = f"{icon} *{views.title(m)}* is *{state.value.replace('_', ' ')}*"
    lines = [headline, views.next_hint(shown)]
    if state == State.FAILED and m.failure:
        lines.append(esc(f"failed in {m.failure.step}: {m.failure.reason}"))
    lines += views.sync_lines(shown)  # per database lag, retained WAL, tables copying, problems
    steps = []
    for step in m.steps:
        if step.started_at > at:
            break
        finished = step.finished_at is not None and step.finished_at <= at
        mark = {StepStatus.DONE: ":white_check_mark:", StepStatus.FAILED: ":x:"}.get(step.status, ":arrows_counterclockwise:")
        took = f" {(step.finished_at - step.started_at).total_seconds():.1f}s" if finished and step.finished_at else ""
        steps.append(f"{mark if finished else ':arrows_counterclockwise:'} {step.name.value}{took}")
    blocks: list[Block] = [HeaderBlock(text=PlainTextObject(text=f"pgmove {m.id}"[:150])), _md("\n".join(lines)[:MAX_TEXT])]
    if steps:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text="  ".join(steps)[:MAX_TEXT])]))
    if live:
        blocks.append(_md(f":arrows_counterclockwise: {esc(live)}"[:MAX_TEXT]))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=f"updated {at:%H:%M:%S} UTC · details in the thread")]))
    return f"{views.title(m)}: {state.value}", _dump(blocks)


def approval_message(m: Migration, approval: Approval, approvers: list[str], now: datetime) -> Message:
    """The request with its buttons while pending; the decision (who, when) once decided or expired."""
    action = approval.action.value
    who = ", ".join(mention(u) for u in approvers if u != approval.requester) or "no other approver is configured"
    dbs = esc(", ".join(f"{d.name} ({d.size_bytes / 1e6:.1f} MB)" for d in m.preflight.databases)
              if m.preflight else ", ".join(m.plan.databases or []) or "all databases")
    source, target = esc(m.source), esc(m.target)
    if action == "freeze":
        effect = (f"Writes to *{source}* stop (a {m.freeze_options.mode.value} freeze) and stay stopped until cutover "
                  "or unfreeze" + (f"; then the copy to *{target}* by {esc(m.plan.method)}, {m.plan.jobs} jobs, and its "
                                   "verification run." if m.target else ". No copy: this is a freeze only."))
        if m.freeze_options.archive:
            effect += f" A dump of the frozen source is kept as the archive `{esc(m.freeze_options.archive)}`."
        if m.freeze_options.snapshot:
            effect = (f"Writes to *{source}* stop (a {m.freeze_options.mode.value} freeze); then CHECKPOINT, the "
                      f"configured snapshot hook, and an automatic unfreeze, even if the hook fails. No copy.")
    elif action == "unfreeze":
        effect = (f"*{source}* takes writes again{' and the migration is aborted' if m.aborting else ''}, after a "
                  f"cutover that started: the app may already be on *{target}* (two writable servers). "
                  + esc(views.hook_report_text(m)))
    elif approval.window_seconds is not None:
        effect = f"One approval for the whole switch to *{target}*: " + views.window_effect(m, approval.window_seconds)
    else:
        effect = (f"*{target}* becomes the app's server; *{source}* stays frozen for good. "
                  "This is the point of no return.")
        if m.preflight and m.preflight.poolers:
            effect += (" The app's poolers are PAUSEd for the switch, repointed and RESUMEd: its clients wait, "
                       "they are not cut off. " + esc(" ".join(f"{p}." for p in m.preflight.poolers)))
    if approval.rollback:  # the way back and its cost: part of what the approver approves
        effect += "\n" + esc(approval.rollback)
    text = (f"*{action.capitalize()} of {views.title(m)}* requested by {mention(approval.requester)}\n{effect}\n"
            f"Databases: {dbs}\nMay approve: {who} (not the requester), before {approval.expires_at:%H:%M} UTC.")
    if approval.window is not None:
        text += "\n" + window_line(approval.window, m.source)
    blocks: list[Block] = [_md(text[:MAX_TEXT])]
    decided = _decision_line(approval, now)
    if decided is None:
        value = f"{m.id}:{approval.id}"  # names the request (a value, never shown or parsed by Slack)
        blocks.append(ActionsBlock(block_id="approval", elements=[
            ButtonElement(text=PlainTextObject(text=f"Approve {action}"), action_id=APPROVE, value=value, style="primary",
                          confirm=ConfirmObject(title=f"Approve the {action}?", text=f"{effect[:250]}",
                                                confirm="Approve", deny="Cancel")),
            ButtonElement(text=PlainTextObject(text="Reject"), action_id=REJECT, value=value, style="danger"),
        ]))
    else:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=decided)]))
    return f"{action} of {views.title(m)} requested by {esc(approval.requester)}", _dump(blocks)


def clicked(action_id: str, value: str) -> Decide | None:
    """The decision a click on approval_message's buttons stands for; None if the click is not one of them."""
    verb = {APPROVE: "approve", REJECT: "reject"}.get(action_id)
    migration_id, _, request_id = value.partition(":")
    try:
        return Decide.model_validate({"verb": verb, "migration_id": migration_id, "request_id": request_id})
    except ValidationError:
        return None


def _decision_line(a: Approval, now: datetime) -> str | None:
    when = f"{a.decided_at:%H:%M:%S} UTC" if a.decided_at else ""
    if a.decision == Decision.APPROVED:
        return f":white_check_mark: Approved by {mention(a.approver or '')} at {when}"
    if a.decision == Decision.REJECTED:
        return f":no_entry: Rejected by {mention(a.approver or '')} at {when}" + (f": {esc(a.reason)}" if a.reason else "")
    if a.decision == Decision.VOIDED:
        return f":heavy_multiplication_x: Void: {esc(a.reason or 'superseded')}"
    if now >= a.expires_at:
        return f":hourglass: Expired at {a.expires_at:%H:%M} UTC with no decision; request it again."
    return None


def verification_message(m: Migration) -> tuple[Message, str | None]:
    """The summary for the approver, and the full report to attach when the summary cannot hold it all."""
    v = m.verification or VerificationReport()
    head = (f":white_check_mark: *Verified*: {v.tables} tables, {v.rows:,} rows compared "
            f"in {v.seconds:.1f}s, all equal." if v.ok else
            f":warning: *Verification failed*: {len(v.problems)} difference(s) in {v.tables} tables "
            f"({v.rows:,} rows compared). Cutover is blocked.")
    per_db = [f"• {esc(d.database)}: {d.tables} tables, {d.rows:,} rows"
              + (f", {len(d.problems)} difference(s)" if d.problems else ", equal")
              for d in v.databases]
    shown = v.problems[:10]
    blocks: list[Block] = [_md(head)]
    for piece in chunks("\n".join(per_db))[:20]:
        if piece.strip():
            blocks.append(_md(piece))
    if shown:
        blocks.append(_md("*First differences:*\n" + "\n".join(f"• {esc(p)}" for p in shown)))
    full = full_verification_report(views.for_terminal(head.replace("*", "")), v)  # a file: plain text, not mrkdwn
    if full is not None:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=f"Every table with its row counts on both sides, and all {len(v.problems)} difference(s): attached below.")]))
    return (head.replace("*", ""), _dump(blocks)), full


def full_verification_report(headline: str, v: VerificationReport) -> str | None:
    """Everything verification compared, one line per table: the file beside the summary."""
    lines = [headline, ""]
    for d in v.databases:
        lines.append(f"== {d.database}: {d.tables} tables, {d.rows:,} rows")
        for t in d.table_counts:
            lines.append(f"  {'ok  ' if t.ok else 'DIFF'} {t.table}: source {t.source_rows}, target {t.target_rows}")
        lines += [f"  - {p}" for p in d.problems]
    lines += ["", "All differences:"] + [f"- {p}" for p in v.problems] or ["- none"]
    return "\n".join(lines) if v.databases or v.problems else None


def final_report(m: Migration) -> Message:
    lines = [f":tada: *{views.title(m)}: cut over.* {esc(m.target)} serves the app; {esc(m.source)} stays frozen."]
    for step in m.steps:
        if step.status == StepStatus.DONE and step.finished_at:
            lines.append(f"• {step.name.value}: {(step.finished_at - step.started_at).total_seconds():.1f}s, {esc(step.message)}")
    frozen = next((s for s in m.steps if s.name.value == "freeze" and s.finished_at), None)
    done = m.last_step(m.steps[-1].name) if m.steps else None
    if frozen and done and done.finished_at and frozen.finished_at:
        lines.append(f"Writes were frozen for {(done.finished_at - frozen.started_at).total_seconds():.0f}s in all.")
    lines += views.pooler_lines(m)
    return "cut over: " + views.title(m), _dump([_md(piece) for piece in chunks("\n".join(lines))])
