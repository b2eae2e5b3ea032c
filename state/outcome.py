"""The primitives every decision is made of: an Outcome (the next record and its events), the policy it is
decided under, and the one way a state changes (`transition`, checked against the machine).

Nothing here does I/O; the store applies an Outcome atomically or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pgmove.state.errors import Refused
from pgmove.state.machine import RESTING, WORKING, Event, State, next_state
from pgmove.state.models import (
    Approval,
    AuditEvent,
    EventKind,
    Migration,
)


@dataclass
class Outcome:
    migration: Migration
    events: list[AuditEvent] = field(default_factory=list)
    enqueue: bool = False  # the worker has something to do now


@dataclass(frozen=True)
class Policy:
    approvers: frozenset[str]
    approval_ttl: timedelta = timedelta(minutes=30)
    max_lag_bytes: int = 16 * 1024 * 1024  # logical: above this, freeze and cutover from in_sync are refused


def transition(
    m: Migration, event: Event, actor: str, now: datetime, message: str, to: State | None = None
) -> Outcome:
    target = next_state(m.state, event)
    if target is None:
        raise Refused(not_now(m, event))
    if to is not None:
        target = to
    new = m.model_copy(deep=True)
    new.state, new.updated_at = target, now
    return Outcome(new, [audit_event(EventKind.TRANSITION, now, actor, message, event, m.state, target)])


def not_now(m: Migration, event: Event) -> str:
    where = f"{m.source} is {m.state.value.replace('_', ' ')}"
    hints = {
        Event.CUTOVER_REQUESTED: "cutover needs a verified copy",
        Event.FREEZE_REQUESTED: "freeze needs a ready plan (or no migration at all)",
        Event.VERIFY_REQUESTED: "verify needs a finished copy",
        Event.UNFREEZE_REQUESTED: "nothing is frozen",
        Event.REPLANNED: "a new plan needs the source unfrozen and no step running",
        Event.SYNC_REQUESTED: "sync needs a ready plan made with --method logical",
    }
    hint = hints.get(event)
    if m.state in WORKING:
        hint = "a step is running; wait for it" + (f" ({hint})" if hint else "")
    elif m.state not in RESTING and hint is None:
        hint = "not allowed in this state"
    return f"Not now: {where}" + (f"; {hint}." if hint else ".")


def audit_event(
    kind: EventKind, at: datetime, actor: str, message: str, event: Event | None,
    from_state: State | None, to_state: State | None,
) -> AuditEvent:
    return AuditEvent(kind=kind, at=at, actor=actor, message=message, event=event, from_state=from_state, to_state=to_state)


def decision_event(at: datetime, actor: str, message: str, approval: Approval) -> AuditEvent:
    return AuditEvent(
        kind=EventKind.DECISION, at=at, actor=actor, message=message,
        data=approval.model_dump(mode="json", include={"id", "action", "requester", "plan_digest", "decision", "approver", "reason",
                                                     "rollback"}),
    )


def updated(m: Migration, **changes: object) -> Migration:
    """A new record with `changes`, validated as a whole: a value of the wrong shape or a name that is no field
    raises here, before anything is written, instead of storing a record nobody can read back."""
    unknown = sorted(set(changes) - set(Migration.model_fields))
    if unknown:
        raise ValueError(f"not fields of a migration: {', '.join(unknown)}")
    return Migration.model_validate({**m.model_dump(), **changes})
