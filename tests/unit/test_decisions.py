"""A freeze request carries its options from the pure core, and a click is a typed decision, not text."""

from __future__ import annotations

import pytest

from pgmove.handlers import blocks
from pgmove.handlers.verbs import Decide
from pgmove.state import actions
from pgmove.state.errors import Refused
from pgmove.state.models import ApprovalAction, FreezeMode, FreezeOptions
from tests.unit.test_actions import NOW, POLICY, awaiting, ready


def test_a_freeze_request_records_the_options_the_approver_approves():
    """request_approval puts the freeze's options on the record it returns: no edge patches them on afterwards."""
    options = FreezeOptions(mode=FreezeMode.NO_CONNECT, grace_seconds=5, archive="drill")
    out = actions.request_approval(ready(), ApprovalAction.FREEZE, "alice", NOW, POLICY, options)
    assert out.migration.freeze_options == options and out.migration.approval is not None
    again = actions.decide(out.migration, "bob", False, NOW, POLICY)  # rejected, then asked again without options
    plain = actions.request_approval(again.migration, ApprovalAction.FREEZE, "alice", NOW, POLICY)
    assert plain.migration.freeze_options == FreezeOptions()


def test_an_archive_needs_a_move_to_copy_and_options_belong_to_a_freeze():
    """A freeze with no target has no copy to archive; a cutover request takes no freeze options."""
    with pytest.raises(Refused, match="plan one first"):
        actions.request_approval(ready(target=None), ApprovalAction.FREEZE, "alice", NOW, POLICY,
                                 FreezeOptions(archive="drill"))
    with pytest.raises(ValueError, match="freeze request"):
        actions.request_approval(ready(), ApprovalAction.CUTOVER, "alice", NOW, POLICY, FreezeOptions())


def test_a_wrong_request_id_is_told_which_request_is_waiting():
    """Deciding an id that is not the pending one names the one that is, and who asked for it."""
    m = awaiting()
    assert m.approval is not None
    with pytest.raises(Refused) as caught:
        actions.decide(m, "bob", True, NOW, POLICY, "0badc0de")
    assert m.approval.id in caught.value.message and "<@alice>" in caught.value.message


def test_the_buttons_of_an_approval_message_click_to_a_typed_decision():
    """Each button's value reads back as a Decide naming the migration and the request; anything else is None."""
    m = awaiting()
    assert m.approval is not None
    _, message = blocks.approval_message(m, m.approval, ["bob"], NOW)
    buttons = {e["action_id"]: e["value"] for b in message if b["type"] == "actions" for e in b["elements"]}
    assert blocks.clicked(blocks.APPROVE, buttons[blocks.APPROVE]) == Decide(
        verb="approve", migration_id=m.id, request_id=m.approval.id)
    assert blocks.clicked(blocks.REJECT, buttons[blocks.REJECT]) == Decide(
        verb="reject", migration_id=m.id, request_id=m.approval.id)
    for action_id, value in [("pgmove_other", buttons[blocks.APPROVE]), (blocks.APPROVE, ""),
                             (blocks.APPROVE, m.id), (blocks.APPROVE, f"{m.id}:"), (blocks.APPROVE, f"x y:{m.approval.id}"),
                             (blocks.APPROVE, f"{m.id}:{m.approval.id}:more"), (blocks.APPROVE, f"{m.id}:١٢٣٤٥٦٧٨")]:
        assert blocks.clicked(action_id, value) is None, (action_id, value)
