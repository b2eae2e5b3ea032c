"""A database already on the target is said to be whose it is: left by a migration, cut over to, or someone else's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pgmove.state.leftovers import collision, created_by
from pgmove.state.machine import State
from pgmove.state.models import Migration, Plan

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _migration(mid: str, source: str, target: str, state: State, created: list[str], minutes: int) -> Migration:
    plan = Plan(source=source, target=target)
    return Migration(id=mid, source=source, target=target, state=state, plan=plan, plan_digest=plan.digest(),
                     created_by="U_ALICE", created_at=T0, updated_at=T0 + timedelta(minutes=minutes),
                     created_target_databases=created)


def test_the_latest_record_of_a_name_on_the_same_target_wins_and_other_targets_do_not_count() -> None:
    """Each name maps to the newest migration that created it on this target; one to another target is ignored."""
    old = _migration("mig-old", "a", "t", State.ABORTED, ["appdb", "x"], 1)
    new = _migration("mig-new", "b", "t", State.ABORTED, ["appdb"], 2)
    elsewhere = _migration("mig-else", "a", "u", State.ABORTED, ["y"], 3)
    found = created_by("t", [new, elsewhere, old])
    assert {name: m.id for name, m in found.items()} == {"appdb": "mig-new", "x": "mig-old"}


def test_a_database_a_migration_cut_over_to_is_never_offered_for_dropping() -> None:
    """The app's data now lives there: the sentence says so and offers --databases, never DROP DATABASE."""
    live = _migration("mig-live", "a", "t", State.CUT_OVER, ["appdb"], 1)
    said = collision("t", "appdb", live, "mig-now")
    assert "cut a over to it, so it holds that app's data now" in said and "DROP" not in said and "--databases" in said


def test_an_earlier_copy_of_the_same_migration_and_a_quoted_name_are_said_plainly() -> None:
    """A replanned migration's own earlier copy is named as such; a name with a quote is quoted for SQL."""
    mine = _migration("mig-now", "a", "t", State.FAILED, ['we"ird'], 1)
    said = collision("t", 'we"ird', mine, "mig-now")
    assert "an earlier copy of this migration (mig-now)" in said and 'DROP DATABASE "we""ird" WITH (FORCE)' in said
