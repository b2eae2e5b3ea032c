"""The transition table of DESIGN.md, as data."""

from __future__ import annotations

from pgmove.state.machine import RESTING, TERMINAL, TRANSITIONS, WORKING, Event, State, next_state


def test_every_state_has_a_row_and_every_target_is_a_state():
    """The table covers the whole machine and points only at real states."""
    assert set(TRANSITIONS) == set(State)
    for row in TRANSITIONS.values():
        assert all(isinstance(target, State) for target in row.values())


def test_terminal_states_lead_nowhere():
    """cut_over and aborted are the end: no event moves them."""
    for state in TERMINAL:
        assert TRANSITIONS[state] == {}


def test_a_step_can_fail_in_every_working_state():
    """Any state in which a worker runs a step can turn failed."""
    for state in WORKING:
        assert next_state(state, Event.STEP_FAILED) == State.FAILED


def test_working_and_resting_states_do_not_overlap():
    """`--wait` returns only where nothing happens without a person."""
    assert not (WORKING & RESTING)


def test_the_contract_path_of_design_md():
    """planned -> ready -> awaiting approval -> freezing -> frozen -> copying -> verifying -> verified -> ... -> cut_over."""
    path = [
        (State.PLANNED, Event.PREFLIGHT_OK, State.READY),
        (State.READY, Event.FREEZE_REQUESTED, State.AWAITING_FREEZE_APPROVAL),
        (State.AWAITING_FREEZE_APPROVAL, Event.APPROVED, State.FREEZING),
        (State.FREEZING, Event.FROZEN, State.FROZEN),
        (State.FROZEN, Event.COPY_STARTED, State.COPYING),
        (State.COPYING, Event.COPIED, State.VERIFYING),
        (State.VERIFYING, Event.VERIFY_PASSED, State.VERIFIED),
        (State.VERIFIED, Event.CUTOVER_REQUESTED, State.AWAITING_CUTOVER_APPROVAL),
        (State.AWAITING_CUTOVER_APPROVAL, Event.APPROVED, State.CUTTING_OVER),
        (State.CUTTING_OVER, Event.CUT_OVER, State.CUT_OVER),
    ]
    for start, event, end in path:
        assert next_state(start, event) == end


def test_unfreeze_is_possible_before_cutover_and_never_after():
    """The source can be put back any time before the point of no return."""
    for state in (State.FROZEN, State.COPYING, State.VERIFIED, State.VERIFY_FAILED, State.AWAITING_CUTOVER_APPROVAL,
                  State.FAILED):
        assert next_state(state, Event.UNFREEZE_REQUESTED) == State.UNFREEZING
    for state in (State.CUTTING_OVER, State.CUT_OVER, State.ABORTED):
        assert next_state(state, Event.UNFREEZE_REQUESTED) is None


def test_states_are_stored_verbatim():
    """What Redis holds is what code compares: the enum is its string."""
    assert State("awaiting_freeze_approval") is State.AWAITING_FREEZE_APPROVAL
    assert State.CUT_OVER == "cut_over"
