"""The watch after cutover when a reading could not read a server: the summary says only what was counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pgmove.state import actions, watching
from pgmove.state.machine import State
from pgmove.state.models import Plan, StepName, StepRecord, StepStatus
from pgmove.state.watch import DbCounters, Reading, fold, start, summarize

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)
REFUSED = "prod-new: FATAL: sorry, too many clients already"
OLD = "prod-old: FATAL: sorry, too many clients already"


def _read(at: datetime, target: int | None, source_rollbacks: int | None = 0) -> Reading:
    """A reading; None for a side is a side the reading could not read (no counters, a problem)."""
    r = Reading(at=at)
    if target is None:
        r.problems.append(REFUSED)
    else:
        r.target, r.own["target"], r.app_connections = {"appdb": DbCounters(commits=target)}, "appdb", {"app": 2}
    if source_rollbacks is None:
        r.problems.append(OLD)
    else:
        r.source, r.own["source"] = {"appdb": DbCounters(commits=10, rollbacks=source_rollbacks)}, "appdb"
    return r


def test_a_target_the_baseline_could_not_read_counts_from_its_first_reading_that_succeeded() -> None:
    """The restore's 48,000 commits before the cutover are not the app's: the commits count from the first reading
    that read the target (less pgmove's own), and the headline says from when."""
    w = start(_read(NOW, None), NOW, NOW + 15 * MIN)
    w = fold(w, _read(NOW + 5 * MIN, 48_000))
    w = fold(w, _read(NOW + 15 * MIN, 48_000 + 1 + 700))
    text, ok = summarize(w, "prod-old", "prod-new", [])
    assert not ok
    assert text.splitlines()[0].startswith(
        ":warning: prod-new took 700 commits from app in 10 min (counted from 12:05:00 UTC, 5 min after the cutover: "
        "its first reading that succeeded), 0 clients still on prod-old: could not read: " + REFUSED)


def test_a_target_read_only_at_the_end_is_not_counted_and_not_called_unswitched() -> None:
    """One reading of the target measures nothing: neither its history as the app's commits nor 'no commits'."""
    w = fold(start(_read(NOW, None), NOW, NOW + 15 * MIN), _read(NOW + 15 * MIN, 48_000))
    text, ok = summarize(w, "prod-old", "prod-new", [])
    assert not ok
    assert "48,000" not in text and "is the app switched" not in text
    assert text.startswith(":warning: prod-new's commits not counted, 0 clients still on prod-old: prod-new's commits "
                           "could not be counted: only its last reading succeeded")


def test_a_target_whose_last_reading_failed_is_not_called_unswitched() -> None:
    """A failed end reading is said as such, not as a target that took no commits."""
    w = fold(start(_read(NOW, 1000), NOW, NOW + 15 * MIN), _read(NOW + 15 * MIN, None))
    text, _ = summarize(w, "prod-old", "prod-new", [])
    assert "could not be counted: its last reading failed" in text and "is the app switched" not in text


def test_the_old_servers_past_rollbacks_are_not_writes_the_freeze_refused() -> None:
    """An old server the baseline could not read counts its rollbacks from its first reading that succeeded."""
    w = start(_read(NOW, 1000, source_rollbacks=None), NOW, NOW + 15 * MIN)
    w = fold(w, _read(NOW + 5 * MIN, 2000, source_rollbacks=900))
    w = fold(w, _read(NOW + 15 * MIN, 3000, source_rollbacks=903))
    text, _ = summarize(w, "prod-old", "prod-new", [])
    assert "900" not in text
    assert "3 transaction(s) rolled back on prod-old since 12:05:00 UTC (its first reading that succeeded)" in text


def test_an_old_server_never_read_has_unknown_clients_not_zero() -> None:
    """No reading of the old server succeeded: '0 clients still on it' would be a guess."""
    w = fold(start(_read(NOW, 1000, None), NOW, NOW + 15 * MIN), _read(NOW + 15 * MIN, 2000, None))
    text, _ = summarize(w, "prod-old", "prod-new", [])
    assert "clients still on prod-old unknown" in text and "0 clients" not in text
    assert "prod-old's sessions and rollbacks could not be counted: no reading of it succeeded" in text


def test_no_temp_spike_against_a_reading_that_could_not_read_the_target() -> None:
    """The target's lifetime temporary bytes against an unread reading are not a spike between two readings."""
    w = start(_read(NOW, None), NOW, NOW + 15 * MIN)
    later = _read(NOW + 15 * MIN, 10)
    later.target["appdb"].temp_bytes = 10**10
    assert fold(w, later).temp_peak_bytes == 0


def test_begin_takes_no_baseline_from_a_server_the_reading_named_as_failed() -> None:
    """A baseline reading with a problem for the target is not a complete baseline, even with counters on it, and
    the thread is told the numbers start later."""
    m = actions.new_migration("m1", Plan(source="prod-old", target="prod-new"), "U_ALICE", NOW).migration
    m.state = State.CUT_OVER
    m.steps.append(StepRecord(name=StepName.CUTOVER, status=StepStatus.DONE, started_at=NOW - MIN, finished_at=NOW))
    half = _read(NOW, 48_000)
    half.problems.append("prod-new: server closed the connection unexpectedly")
    out = watching.begin(m, half, 15 * MIN, "worker:w1")
    assert out.migration.watch is not None and out.migration.watch.baseline.target == {}
    assert "could not read prod-new at the start" in out.events[0].message
    assert "its numbers count from its first reading that succeeds" in out.events[0].message
