"""Data in Slack text is shown, never obeyed: every builder escapes what it interpolates, and keeps its own mentions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgmove.handlers import blocks, helptext, views
from pgmove.handlers.commands import Deps, _handle
from pgmove.sandbox.fakeslack.limits import unescaped_mentions
from pgmove.state.config import Config
from pgmove.state.machine import State
from pgmove.state.models import (
    Approval,
    ApprovalAction,
    AuditEvent,
    DatabaseInfo,
    Decision,
    EventKind,
    Failure,
    FreezeOptions,
    Migration,
    Plan,
    PreflightReport,
    StepName,
    StepRecord,
    StepStatus,
)

EVIL = "<!channel> <!here|here> <@U_MALLORY> <#C_OTHER> <https://evil.example|click> & more"
NOW = datetime.now(UTC)


def _hostile(state: State, decision: Decision = Decision.PENDING) -> Migration:
    plan = Plan(source="prod-old", target="prod-new", databases=[EVIL, "app"], method="dump")
    return Migration(
        id="mig-1", source="prod-old", target="prod-new", state=state, plan=plan, plan_digest=plan.digest(),
        created_by="U_ALICE", created_at=NOW, updated_at=NOW,
        preflight=PreflightReport(databases=[DatabaseInfo(name=EVIL, size_bytes=10, owner=EVIL)],
                                  problems=[f"database {EVIL} has a problem"], warnings=[f"role {EVIL} warns"]),
        approval=Approval(id="r1", action=ApprovalAction.FREEZE, requester="U_ALICE", plan_digest=plan.digest(),
                          requested_at=NOW, expires_at=NOW + timedelta(minutes=30), prior_state=State.READY,
                          decision=decision, approver="U_BOB" if decision != Decision.PENDING else None,
                          decided_at=NOW if decision != Decision.PENDING else None, reason=f"because {EVIL}"),
        steps=[StepRecord(name=StepName.COPY, status=StepStatus.DONE, started_at=NOW, finished_at=NOW, message=f"copied {EVIL}")],
        failure=Failure(step=StepName.COPY, reason=f"table {EVIL} broke", resume_state=State.FROZEN, at=NOW),
        freeze_options=FreezeOptions(archive=EVIL),
        verification={"ok": False, "tables": 1, "rows": 1, "seconds": 1.0, "problems": [f"{EVIL}.t differs"],
                      "databases": [{"database": EVIL, "tables": 1, "rows": 1, "problems": ["x"],
                                     "table_counts": [{"table": EVIL, "source_rows": 1, "target_rows": 2}]}]},
    )


def _event() -> AuditEvent:
    return AuditEvent(kind=EventKind.PROGRESS, at=NOW, actor="U_ALICE", message=f"U_ALICE copied {EVIL}")


def _everything() -> list[tuple[str, Any]]:
    """(fallback text, blocks) of every message builder, over a migration whose every string is hostile."""
    out: list[tuple[str, Any]] = []
    for state in State:
        m = _hostile(state)
        out.append((views.status_text(m), None))
        out.append(blocks.status_message(m, None, live=f"copying {EVIL}"))
    pending, rejected = _hostile(State.AWAITING_FREEZE_APPROVAL), _hostile(State.READY, Decision.REJECTED)
    voided = _hostile(State.READY, Decision.VOIDED)
    for m in (pending, rejected, voided):
        out.append(blocks.approval_message(m, m.approval, ["U_BOB", "U_CAROL"], NOW))  # type: ignore[arg-type]
    out.append(blocks.verification_message(pending)[0])
    out.append(blocks.final_report(pending))
    out += [(views.accepted_text("freeze", pending, [_event()]), None), (views.approval_text(pending), None),
            (views.status_list_text([pending]), None), (views.history_text(pending, [_event()]), None),
            (views.event_line(_event()), None), (helptext.help_text(None), None), (helptext.help_text("plan"), None),
            (views.servers_text([{"name": EVIL, "host": EVIL, "port": "1", "user": EVIL, "app_roles": [EVIL]}]), None)]
    return out + [m for text, _ in list(out) for m in blocks.text_messages(text)]


def test_no_builder_lets_a_name_or_reason_mention_anyone() -> None:
    """Catalog names, reasons, messages, archive names: none becomes a ping, a channel link or a link in Slack."""
    found = [(text[:80], hit) for text, message in _everything() for hit in unescaped_mentions(text, message)]
    assert found == []


def test_pgmoves_own_mentions_still_mention_and_the_terminal_reads_the_original() -> None:
    """The requester and approvers are still mentions; for_terminal() gives back the name as it was."""
    text, message = blocks.approval_message(_hostile(State.AWAITING_FREEZE_APPROVAL),
                                            _hostile(State.AWAITING_FREEZE_APPROVAL).approval,  # type: ignore[arg-type]
                                            ["U_BOB"], NOW)
    shown = json.dumps(message)
    assert "requested by <@U_ALICE>" in shown and "May approve: <@U_BOB>" in shown
    assert "&lt;!channel&gt;" in shown
    assert EVIL in views.for_terminal(views.status_text(_hostile(State.FAILED)))


@pytest.mark.parametrize("text", [f"plan {EVIL} prod-new", f"help {EVIL}", "status <!channel>", "freeze <!here>"])
def test_a_refusal_quoting_what_was_typed_mentions_only_the_people_pgmove_knows(text: str) -> None:
    """Refusals echo names typed in chat (an unknown server, a bad topic): escaped, while a core refusal that
    mentions a configured person keeps the mention."""
    config = Config.model_validate({"access": {"operators": ["U_ALICE"], "approvers": ["U_BOB"]},
                                    "servers": {"prod-old": {"dsn": "host=x"}, "prod-new": {"dsn": "host=y"}}})
    deps = Deps(config=config, store=None, enqueue=None)  # type: ignore[arg-type]  # refused before the store
    reply = _handle(deps, "U_ALICE", text, None)
    assert not reply.ok
    assert unescaped_mentions(reply.text, None) == []
    assert "<@U_EVE>" in _handle(deps, "U_EVE", "status", None).text  # not an operator: told, by mention
