"""The server's own record of a freeze: only the same freeze counts as its own, and a refusal names the other."""

from __future__ import annotations

from pgmove.steps.freezerecord import Found, is_own, refusal
from tests.unit.samples import snapshot


def test_only_the_same_freeze_counts_as_its_own_and_a_refusal_names_the_other():
    """A record on the server counts as this freeze's own only if its freeze id matches, and the refusal names the
    other freeze and its start, or says there is no record."""
    snap = snapshot()
    assert is_own(Found("appdb", snap), snap)
    assert not is_own(Found("appdb", snap.model_copy(update={"freeze_id": "m2"})), snap)
    assert not is_own(Found("appdb", None), snap)
    assert "already frozen by pgmove m1 since 2026-11-22 12:00:00 UTC" in refusal(Found("appdb", snap), "prod-old").message
    assert "with no record of what they replaced" in refusal(Found("appdb", None), "prod-old").message
