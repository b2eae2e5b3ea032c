"""The pure decisions of announced windows and of the watch after cutover, and their records' round trip."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from pgmove.state import actions, announce
from pgmove.state.announce import Announcement, check_window, new_announcement, reminder_due, resolve_start
from pgmove.state.errors import Refused
from pgmove.state.machine import State
from pgmove.state.models import Approval, ApprovalAction, Migration, Plan
from pgmove.state.watch import DbCounters, OldClient, Reading, SequenceRoom, fold, start, summarize

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
LEAD = timedelta(minutes=15)


def _window(start: datetime, hours: float = 1, at: datetime = NOW) -> Announcement:
    return new_announcement("ann-1", "prod-old", start, timedelta(hours=hours), "U_ALICE", at, ["C_DBMIG"], None)


def test_a_clock_time_is_today_in_utc_and_never_silently_tomorrow():
    """`08:00` at 09:00 is today's 08:00, which the announcement then refuses as past."""
    assert resolve_start(time(8, 0), NOW) == NOW.replace(hour=8)
    with pytest.raises(Refused, match="in the past"):
        _window(resolve_start(time(8, 0), NOW))


def test_where_a_freeze_falls_against_the_window():
    """Hours early is outside; within the reminder lead of the start, inside; after the end, late; none, none."""
    a = _window(NOW + timedelta(hours=2))
    assert check_window(a, NOW, LEAD).fit == "early"
    assert check_window(a, NOW + timedelta(hours=1, minutes=50), LEAD).fit == "inside"
    assert check_window(a, NOW + timedelta(hours=2, minutes=30), LEAD).fit == "inside"
    assert check_window(a, NOW + timedelta(hours=3, minutes=5), LEAD).fit == "late"
    assert check_window(None, NOW, LEAD).fit == "none"
    cancelled = announce.cancel(a, "prod-old", "U_BOB", NOW)
    assert check_window(cancelled, NOW + timedelta(hours=2, minutes=30), LEAD).fit == "none"


def test_the_reminder_is_due_from_the_lead_to_the_start_and_not_for_a_window_announced_inside_the_lead():
    """A window announced 10 minutes ahead got its notice already: a reminder would repeat it."""
    a = _window(NOW + timedelta(hours=1))
    assert not reminder_due(a, NOW + timedelta(minutes=44), LEAD)
    assert reminder_due(a, NOW + timedelta(minutes=45), LEAD)
    assert not reminder_due(a, NOW + timedelta(hours=1), LEAD)
    assert not reminder_due(_window(NOW + timedelta(minutes=10)), NOW + timedelta(minutes=5), LEAD)


def _reading(at: datetime, commits: int, clients: list[OldClient] | None = None, temp: int = 0,
             postgres: int = 0) -> Reading:
    """`postgres`: the maintenance database's commits and sessions so far, where pgmove's readings run too."""
    return Reading(at=at, target={"appdb": DbCounters(commits=commits, temp_bytes=temp), "postgres": DbCounters(commits=postgres)},
                   app_connections={"app": 3}, clients=clients or [], own={"target": "postgres", "source": "postgres"},
                   source={"appdb": DbCounters(sessions=7), "postgres": DbCounters(sessions=postgres)})


def test_a_clean_watch_says_so_in_one_line():
    """Commits counted from the baseline, pgmove's own reading in `postgres` taken out, no client on the old
    server: all well."""
    w = start(_reading(NOW, 1000, postgres=500), NOW, NOW + timedelta(minutes=15))
    w = fold(w, _reading(NOW + timedelta(minutes=15), 13_345, postgres=501))
    text, ok = summarize(w, "prod-old", "prod-new", [SequenceRoom(database="appdb", name="public.s", used=0.1)])
    assert ok
    assert text.splitlines()[0] == ":white_check_mark: prod-new took 12,345 commits from app in 15 min, 0 clients still on prod-old"


def test_an_app_in_the_maintenance_database_counts_and_pgmoves_own_readings_there_do_not():
    """Three readings: the last one's counters hold the two before it (one commit and one session each), and the
    app's 42 commits in `postgres` are what is left; a client's session there on the old server is still said."""
    w = start(_reading(NOW, 0, postgres=100), NOW, NOW + LEAD)
    w = fold(w, _reading(NOW + LEAD / 2, 0, postgres=100 + 1 + 40))
    last = _reading(NOW + LEAD, 0, postgres=100 + 2 + 42)
    last.source["postgres"] = DbCounters(sessions=100 + 2 + 1)
    text, ok = summarize(fold(w, last), "prod-old", "prod-new", [])
    assert not ok
    assert text.splitlines()[0].startswith(":warning: prod-new took 42 commits from app in 15 min, 0 clients still on "
                                           "prod-old: 1 session(s) opened")
    assert "\n  postgres: 42 commits, 0 rollbacks" in text


def test_what_is_wrong_is_said_in_the_headline():
    """A client seen twice on the old server, a temp-file spike and a sequence near its end are each named."""
    client = OldClient(role="app", application="cron", address="10.0.0.9", database="appdb", first_seen=NOW, last_seen=NOW)
    w = start(_reading(NOW, 0, [client]), NOW, NOW + timedelta(minutes=15))
    w = fold(w, _reading(NOW + timedelta(minutes=15), 10, [client], temp=10**9))
    text, ok = summarize(w, "prod-old", "prod-new", [SequenceRoom(database="appdb", name="public.s", used=0.9)])
    assert not ok
    head = text.splitlines()[0]
    assert "1 client still on prod-old" in head and "app (cron) from 10.0.0.9 to appdb (seen 2x" in head
    assert "temporary-file spike" in head and "appdb.public.s 90% used" in head


def test_sessions_and_refused_writes_on_the_old_server_are_said_even_when_no_client_was_seen():
    """A client that connects, is refused and leaves between two readings still shows in the old server's counters."""
    w = start(_reading(NOW, 100), NOW, NOW + LEAD)
    after = _reading(NOW + LEAD, 200)
    after.source = {"appdb": DbCounters(sessions=10, rollbacks=3)}
    text, ok = summarize(fold(w, after), "prod-old", "prod-new", [])
    assert not ok
    assert "0 clients still on prod-old: 3 session(s) opened and 3 transaction(s) rolled back on prod-old" in text


def test_the_new_records_round_trip_through_json():
    """An announcement, and a migration with a watch and an approval carrying its window check."""
    a = _window(NOW + timedelta(hours=1))
    assert Announcement.model_validate_json(a.model_dump_json()) == a
    m = actions.new_migration("m1", Plan(source="prod-old", target="prod-new"), "U_ALICE", NOW).migration
    m.watch = fold(start(_reading(NOW, 1), NOW, NOW + LEAD), _reading(NOW + LEAD, 2))
    m.approval = Approval(id="abcd1234", action=ApprovalAction.FREEZE, requester="U_ALICE", plan_digest="d",
                          requested_at=NOW, expires_at=NOW, prior_state=State.READY, window=check_window(a, NOW, LEAD))
    assert Migration.model_validate_json(m.model_dump_json()) == m


@pytest.mark.parametrize("start, hours, said", [
    (NOW, 1.5, "09:00-10:30 UTC on 2026-12-03 (1h30m)"),
    (NOW.replace(hour=23, minute=30), 1, "23:30-00:30 UTC, from 2026-12-03 to 2026-12-04 (1h)"),
    (NOW.replace(hour=22), 2, "22:00-00:00 UTC, from 2026-12-03 to 2026-12-04 (2h)"),
    (NOW, 24, "09:00-09:00 UTC, from 2026-12-03 to 2026-12-04 (24h)"),
])
def test_a_window_says_its_end_date_when_it_ends_on_another_day(start, hours, said):  # type: ignore[no-untyped-def]
    """Within a day, one date; across midnight UTC (or a whole day long), the end's date is said, not the start's."""
    assert _window(start, hours).span() == said
