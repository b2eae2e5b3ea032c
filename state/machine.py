"""The migration state machine of DESIGN.md: states, events and the transition table, as data."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    PLANNED = "planned"
    READY = "ready"
    SYNCING = "syncing"
    IN_SYNC = "in_sync"
    AWAITING_FREEZE_APPROVAL = "awaiting_freeze_approval"
    FREEZING = "freezing"
    FROZEN = "frozen"
    COPYING = "copying"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    VERIFY_FAILED = "verify_failed"
    AWAITING_CUTOVER_APPROVAL = "awaiting_cutover_approval"
    AWAITING_UNFREEZE_APPROVAL = "awaiting_unfreeze_approval"  # after a cutover started: writes back need two people
    CUTTING_OVER = "cutting_over"
    CUT_OVER = "cut_over"
    UNFREEZING = "unfreezing"
    ABORTED = "aborted"
    FAILED = "failed"


class Event(StrEnum):
    PREFLIGHT_OK = "preflight_ok"
    REPLANNED = "replanned"
    FREEZE_REQUESTED = "freeze_requested"
    CUTOVER_REQUESTED = "cutover_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    FROZEN = "frozen"
    COPY_STARTED = "copy_started"
    COPIED = "copied"
    VERIFY_REQUESTED = "verify_requested"
    VERIFY_PASSED = "verify_passed"
    VERIFY_FAILED = "verify_failed"
    CUT_OVER = "cut_over"
    UNFREEZE_REQUESTED = "unfreeze_requested"
    UNFREEZE_APPROVAL_REQUESTED = "unfreeze_approval_requested"
    UNFROZEN = "unfrozen"
    UNFROZEN_FOR_ABORT = "unfrozen_for_abort"
    ABORTED = "aborted"
    STEP_FAILED = "step_failed"
    RETRY = "retry"
    SYNC_REQUESTED = "sync_requested"
    SYNCED = "synced"  # every table copied and the lag under the threshold
    WINDOW_FAILED = "window_failed"  # the cutover window failed or ran out before its hook: back to in_sync
    RESUMED_SYNC = "resumed_sync"  # the source is writable again after the window; replication kept running
    PAUSE_FAILED = "pause_failed"  # the pause_app_hook failed before anything was frozen: back where it was


S, E = State, Event

# States in which a worker has (or is about to have) something to do.
WORKING: frozenset[State] = frozenset(
    {S.PLANNED, S.SYNCING, S.FREEZING, S.COPYING, S.VERIFYING, S.CUTTING_OVER, S.UNFREEZING}
)
# States in which `pgmove do --wait` returns: nothing happens until a person acts.
RESTING: frozenset[State] = frozenset(
    {
        S.READY, S.IN_SYNC, S.AWAITING_FREEZE_APPROVAL, S.AWAITING_CUTOVER_APPROVAL, S.FROZEN,
        S.VERIFIED, S.VERIFY_FAILED, S.CUT_OVER, S.FAILED, S.ABORTED, S.AWAITING_UNFREEZE_APPROVAL,
    }
)
TERMINAL: frozenset[State] = frozenset({S.CUT_OVER, S.ABORTED})
# Before the point of no return: the source may still be put back as it was.
BEFORE_CUTOVER: frozenset[State] = frozenset(
    set(State) - {S.CUTTING_OVER, S.CUT_OVER, S.ABORTED, S.AWAITING_UNFREEZE_APPROVAL}
)

_UNFREEZABLE = (
    S.FREEZING, S.FROZEN, S.COPYING, S.VERIFYING, S.VERIFIED, S.VERIFY_FAILED,
    S.AWAITING_CUTOVER_APPROVAL, S.FAILED,
)
_ABORTABLE_UNFROZEN = (S.PLANNED, S.READY, S.IN_SYNC, S.AWAITING_FREEZE_APPROVAL, S.FAILED)
# Replication objects may exist here with the source writable: an abort goes through the unfreeze step, which
# drops them (actions.request_unfreeze decides), so nothing is left on either server.
_CLEANED_ON_ABORT = (S.SYNCING, S.IN_SYNC, S.AWAITING_FREEZE_APPROVAL, S.READY)

TRANSITIONS: dict[State, dict[Event, State]] = {
    S.PLANNED: {E.PREFLIGHT_OK: S.READY, E.REPLANNED: S.PLANNED, E.STEP_FAILED: S.FAILED},
    S.READY: {E.FREEZE_REQUESTED: S.AWAITING_FREEZE_APPROVAL, E.REPLANNED: S.PLANNED, E.SYNC_REQUESTED: S.SYNCING},
    S.SYNCING: {E.SYNCED: S.IN_SYNC, E.STEP_FAILED: S.FAILED},
    S.IN_SYNC: {E.FREEZE_REQUESTED: S.AWAITING_FREEZE_APPROVAL, E.CUTOVER_REQUESTED: S.AWAITING_CUTOVER_APPROVAL},
    S.AWAITING_FREEZE_APPROVAL: {
        E.APPROVED: S.FREEZING, E.REJECTED: S.READY, E.REPLANNED: S.PLANNED,
        E.FREEZE_REQUESTED: S.AWAITING_FREEZE_APPROVAL,  # a new request replaces an expired one
    },
    # PAUSE_FAILED goes back to the approval's prior state (ready or in_sync); UNFROZEN ends `freeze --snapshot`.
    S.FREEZING: {E.FROZEN: S.FROZEN, E.STEP_FAILED: S.FAILED, E.PAUSE_FAILED: S.READY, E.UNFROZEN: S.READY},
    S.FROZEN: {E.COPY_STARTED: S.COPYING},
    S.COPYING: {E.COPIED: S.VERIFYING, E.STEP_FAILED: S.FAILED},
    S.VERIFYING: {E.VERIFY_PASSED: S.VERIFIED, E.VERIFY_FAILED: S.VERIFY_FAILED, E.STEP_FAILED: S.FAILED},
    S.VERIFIED: {E.CUTOVER_REQUESTED: S.AWAITING_CUTOVER_APPROVAL, E.VERIFY_REQUESTED: S.VERIFYING},
    S.VERIFY_FAILED: {E.VERIFY_REQUESTED: S.VERIFYING, E.RETRY: S.FROZEN},  # retry: copy again, still frozen
    S.AWAITING_CUTOVER_APPROVAL: {
        E.APPROVED: S.CUTTING_OVER, E.REJECTED: S.VERIFIED,
        E.CUTOVER_REQUESTED: S.AWAITING_CUTOVER_APPROVAL,
    },
    S.AWAITING_UNFREEZE_APPROVAL: {
        E.APPROVED: S.UNFREEZING, E.REJECTED: S.FAILED,
        E.UNFREEZE_APPROVAL_REQUESTED: S.AWAITING_UNFREEZE_APPROVAL,  # a new request replaces an expired one
    },
    # WINDOW_FAILED: the one-approval switch from in_sync gives the source back before its hook ran.
    S.CUTTING_OVER: {E.CUT_OVER: S.CUT_OVER, E.STEP_FAILED: S.FAILED, E.WINDOW_FAILED: S.UNFREEZING,
                     E.PAUSE_FAILED: S.IN_SYNC},
    S.CUT_OVER: {},
    S.UNFREEZING: {E.UNFROZEN: S.READY, E.UNFROZEN_FOR_ABORT: S.ABORTED, E.RESUMED_SYNC: S.IN_SYNC,
                   E.STEP_FAILED: S.FAILED},
    S.ABORTED: {},
    # RETRY's real target is the failure's resume state. Once a cutover has started (it failed in the cutover
    # step), writes go back to the source only through UNFREEZE_APPROVAL_REQUESTED: actions decides which applies.
    S.FAILED: {E.RETRY: S.FAILED, E.REPLANNED: S.PLANNED, E.UNFREEZE_APPROVAL_REQUESTED: S.AWAITING_UNFREEZE_APPROVAL},
}
for _state in _UNFREEZABLE:
    TRANSITIONS[_state][E.UNFREEZE_REQUESTED] = S.UNFREEZING
for _state in _ABORTABLE_UNFROZEN:
    TRANSITIONS[_state][E.ABORTED] = S.ABORTED
for _state in _CLEANED_ON_ABORT:
    TRANSITIONS[_state][E.UNFREEZE_REQUESTED] = S.UNFREEZING


def next_state(state: State, event: Event) -> State | None:
    """The state `event` leads to from `state`, or None when the table does not allow it."""
    return TRANSITIONS.get(state, {}).get(event)
