"""Attacks on the verification while in sync and the window check after it (steps/replication/liveverify.py,
windowcheck.py): ways for a target that differs from the frozen source to be reported equal, with real
replication between real servers. The window trusts a range that matched while in sync only as far as
replication carries that table's every change exactly; each test here is a table where it does not."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

import psycopg
import pytest

from pgmove.state.errors import StepFailed
from pgmove.steps.connect import StopToken
from pgmove.steps.replication import cleanup, drain, liveverify, ranges, status, windowcheck
from tests.integration.freezeworld import Events
from tests.integration.test_live_verify import caught_up, synced, verified
from tests.integration.test_replication_steps import GIB, MIGRATION, execute, rows

pytestmark = pytest.mark.slow


def window(src: Any, dst: Any, done: Any, live: Any) -> Any:
    """The window's check as worker/logical.py `switch` runs it, once the target has applied everything and the
    drain's finish set the sequences."""
    caught_up(src, dst, done)
    drain.finish(src, dst, done, Events())
    return windowcheck.run(src, dst, done, None, Events(), 2, None, live)


def test_a_table_made_on_both_sides_after_sync_started_is_compared_inside_the_window(source, target, passwords,  # type: ignore[no-untyped-def]
                                                                                     tmp_path):
    """The status's advice for a table new on the source is to make it on the target too, which clears the drift;
    but the publication lists its tables by name, so the new table's rows never replicate. One made before the
    live pass (empty on both sides, so it matched) and one made after it: the source's rows in either are missing
    on the target, and the window must say so, not trust what replication never carried."""
    src, dst, done = synced(source, target, passwords, tmp_path)
    try:
        for cluster in (source, target):
            execute(cluster, "appdb", "CREATE TABLE early (id int PRIMARY KEY, v text)")
        live = verified(src, dst, done)
        for cluster in (source, target):
            execute(cluster, "appdb", "CREATE TABLE late (id int PRIMARY KEY, v text)")
        execute(source, "appdb", "INSERT INTO early SELECT g, 'e' FROM generate_series(1, 100) g",
                "INSERT INTO late SELECT g, 'l' FROM generate_series(1, 100) g")
        assert status.read(src, dst, done, max_retained_wal_bytes=GIB).problems == []  # nothing warns of it
        assert rows(target, "appdb", "SELECT count(*) FROM early") == [(0,)]  # not replicated: not published
        report = window(src, dst, done, live)
        assert not report.ok, report.notes
        assert any("public.early" in p for p in report.problems), report.problems
        assert any("public.late" in p for p in report.problems), report.problems
    finally:
        cleanup.run(src, dst, MIGRATION, done, Events())


def test_identity_full_twins_equal_but_not_identical_are_compared_inside_the_window(source, target, passwords,  # type: ignore[no-untyped-def]
                                                                                   tmp_path):
    """A keyless table replicated with REPLICA IDENTITY FULL: the target finds the row to delete by the type's
    equality, and 1.0 = 1.00 (as is {"a": 1.0} = {"a": 1.00} in jsonb), so it deletes the first twin it meets,
    not the one the source deleted. The table matched while in sync; replication then made it differ, and the
    window must see that rather than trust the earlier match."""
    execute(source, "appdb", "CREATE TABLE readings (v numeric, note text)")
    src, dst, done = synced(source, target, passwords, tmp_path)
    try:
        live = verified(src, dst, done)
        assert not [h for h in live.hot if h.name == "readings"], live.hot
        execute(source, "appdb", "INSERT INTO readings VALUES (1.0, 'x')", "INSERT INTO readings VALUES (1.00, 'x')",
                "DELETE FROM readings WHERE v::text = '1.00'")
        caught_up(src, dst, done)
        assert rows(source, "appdb", "SELECT v::text FROM readings") == [("1.0",)]
        assert rows(target, "appdb", "SELECT v::text FROM readings") == [("1.00",)]  # the other twin went
        report = window(src, dst, done, live)
        assert not report.ok, report.notes
        assert any("public.readings" in p for p in report.problems), report.problems
    finally:
        cleanup.run(src, dst, MIGRATION, done, Events())


def test_a_hot_table_dropped_on_both_sides_since_does_not_fail_every_window(source, target, passwords, tmp_path):  # type: ignore[no-untyped-def]
    """A table still differing at the live pass is recorded hot, and the sync step is the only one that verifies
    again. Dropped since on both sides (the drift advice for a table dropped on the source), re-reading its hot
    ranges fails on a table that is not there: every window would fail, until the migration is aborted."""
    execute(source, "appdb", "CREATE TABLE retired (id int PRIMARY KEY, v text)",
            "INSERT INTO retired SELECT g, 'r' FROM generate_series(1, 1000) g")
    src, dst, done = synced(source, target, passwords, tmp_path)
    try:
        execute(target, "appdb", "UPDATE retired SET v = 'changed' WHERE id = 500")  # differs at every pass
        live = verified(src, dst, done)
        assert any(h.name == "retired" for h in live.hot), live.hot
        for cluster in (source, target):
            execute(cluster, "appdb", "DROP TABLE retired")
        report = window(src, dst, done, live)
        assert report.ok, report.problems
    finally:
        cleanup.run(src, dst, MIGRATION, done, Events())


def test_keys_at_the_ends_of_bigint_are_pinned_while_in_sync_not_left_whole_to_the_window(source, target,  # type: ignore[no-untyped-def]
                                                                                          passwords, tmp_path):
    """Keys spanning all of bigint (the ends, zero, negatives): key minus the first range's start overflows bigint.
    The table must still be compared by range while in sync, and a difference pinned to a range (as narrow as
    sixteen-way splits of a range this sparse get), not the whole table sent to the window to be hashed inside
    the write downtime."""
    execute(source, "appdb", "CREATE TABLE extremes (id bigint PRIMARY KEY, v text)",
            "INSERT INTO extremes SELECT g, 'x' FROM generate_series(-5000, 5000) g",
            "INSERT INTO extremes VALUES (-9223372036854775808, 'min'), (9223372036854775807, 'max'), "
            "(-9223372036854775807, 'min+1'), (9223372036854775806, 'max-1')")
    src, dst, done = synced(source, target, passwords, tmp_path)
    try:
        execute(target, "appdb", "UPDATE extremes SET v = 'changed' WHERE id IN (9223372036854775807, 42)")
        live = verified(src, dst, done)
        hot = [(h.low, h.high) for h in live.hot if h.name == "extremes"]
        assert hot and all(low is not None and high is not None for low, high in hot), live.hot
        assert [key for key in (42, 2**63 - 1) if any(low <= key < high for low, high in hot)] == [42, 2**63 - 1], hot
        problems, _ = ranges.recheck(src, dst, [h for h in live.hot if h.name == "extremes"])
        assert len(problems) == 2, problems
    finally:
        cleanup.run(src, dst, MIGRATION, done, Events())


def test_a_trigger_enabled_always_on_the_target_writes_twice_and_the_window_says_so(source, target, passwords,  # type: ignore[no-untyped-def]
                                                                                   tmp_path):
    """A trigger enabled ALWAYS fires on the target too, for every change replication applies: an audit row written
    by it on the source arrives through replication, and the target's own firing writes a second one. The audit
    table matched while in sync (empty on both sides); the window must not trust that match."""
    execute(source, "appdb", "CREATE TABLE audit (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), what text)",
            "CREATE TABLE priced (id int PRIMARY KEY, price int)",
            "INSERT INTO priced SELECT g, g FROM generate_series(1, 100) g",
            "CREATE FUNCTION audit_price() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO public.audit (what) VALUES ('price ' || NEW.id); RETURN NEW; END $$",
            "CREATE TRIGGER audited AFTER UPDATE ON priced FOR EACH ROW EXECUTE FUNCTION audit_price()",
            "ALTER TABLE priced ENABLE ALWAYS TRIGGER audited")
    src, dst, done = synced(source, target, passwords, tmp_path)
    try:
        live = verified(src, dst, done)
        assert ("appdb", "public", "audit") not in {(h.database, h.schema_name, h.name) for h in live.hot}
        execute(source, "appdb", "UPDATE priced SET price = price + 1 WHERE id <= 10")
        caught_up(src, dst, done)
        assert rows(source, "appdb", "SELECT count(*) FROM audit") == [(10,)]
        assert rows(target, "appdb", "SELECT count(*) FROM audit") == [(20,)]
        report = window(src, dst, done, live)
        assert not report.ok, report.notes
        assert any("public.audit" in p for p in report.problems), report.problems
    finally:
        cleanup.run(src, dst, MIGRATION, done, Events())


def test_a_stop_during_the_live_pass_ends_it_at_once_and_leaves_no_session_behind(source, target, passwords,  # type: ignore[no-untyped-def]
                                                                                 tmp_path):
    """An abort while a large table is being hashed: the step's stop token ends its sessions on both servers, the
    verification ends within seconds instead of hashing every remaining table, what it did not finish is left to
    the window, and no snapshot is left holding back the source's vacuum."""
    execute(source, "appdb", "CREATE TABLE big (id bigint PRIMARY KEY, body text)",
            "INSERT INTO big SELECT g, repeat('b', 200) FROM generate_series(1, 1500000) g")
    src, dst, done = synced(source, target, passwords, tmp_path)
    try:
        token = StopToken()
        stopping = replace(src, stop=token), replace(dst, stop=token)
        timer = threading.Timer(0.5, token.fire)
        timer.start()
        started = time.monotonic()
        try:
            live = liveverify.run(*stopping, done, Events(), lambda: token.fired, jobs=2)
        except StepFailed:
            live = None
        assert time.monotonic() - started < 10
        timer.join()  # the token's fire returns once the sessions it ended have exited
        # Returned rather than raised (every other table was done): what it could not finish is never a match.
        assert live is None or any(h.name == "big" and h.low is None for h in live.hot), live
        for cluster in (source, target):
            left = rows(cluster, "postgres", "SELECT pid, datname, state, left(query, 200) FROM pg_stat_activity "
                        "WHERE application_name = 'pgmove' AND pid <> pg_backend_pid()")
            assert left == [], left
    finally:
        cleanup.run(src, dst, MIGRATION, done, Events())


def test_a_target_held_up_for_a_moment_does_not_send_every_table_whole_to_the_window(source, target, passwords,  # type: ignore[no-untyped-def]
                                                                                    tmp_path):
    """The apply worker waits a few seconds on a lock (a long transaction on the target, a burst of writes): the
    first table's wait runs out. Once the target has caught up, the tables left unverified by that moment are
    verified again, not all sent whole to the window, where they would be hashed inside the write downtime (and,
    as the sync step is the only one that verifies while in sync, at every cutover attempt)."""
    src, dst, done = synced(source, target, passwords, tmp_path)
    holder = psycopg.connect(target.admin_dsn("appdb"), autocommit=True)
    try:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE labels IN ACCESS EXCLUSIVE MODE")
        execute(source, "appdb", "UPDATE labels SET v = v + 1 WHERE code = 'code-1'")  # its apply waits on the lock
        release = threading.Timer(3.0, lambda: holder.execute("COMMIT"))  # after the first wait ran out, well before the second does
        release.start()
        live = verified(src, dst, done, apply_wait_seconds=2.5)
        release.join()
        assert live.tables >= 3, live
        assert [h for h in live.hot if h.low is None and h.modulus is None] == [], live.hot
    finally:
        holder.close()
        cleanup.run(src, dst, MIGRATION, done, Events())


class Churn(threading.Thread):
    """The app at its most awkward while the live pass runs: keys moved between ranges, rows deleted and inserted
    again, a whole table truncated and reloaded in one transaction."""

    def __init__(self, source: Any) -> None:
        super().__init__(daemon=True)
        self.dsn, self.stopping, self.rounds = source.admin_dsn("appdb"), threading.Event(), 0

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stopping.is_set():
                n = self.rounds % 50_000 + 1
                conn.execute("UPDATE accounts SET id = -id WHERE id = %s", (n,))  # into a range of negative keys
                conn.execute("DELETE FROM accounts WHERE id = %s", (n + 60_000,))
                conn.execute("INSERT INTO accounts VALUES (%s, 1, 'again')", (n + 60_000,))
                with conn.transaction():
                    conn.execute("TRUNCATE labels")
                    conn.execute("INSERT INTO labels SELECT 'code-' || g, g + %s FROM generate_series(1, 5000) g",
                                 (self.rounds,))
                self.rounds += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


def test_keys_moved_rows_reinserted_and_a_truncate_during_the_pass_never_read_as_a_difference_or_a_match(  # type: ignore[no-untyped-def]
        source, target, passwords, tmp_path):
    """Under that churn the live pass ends, the window finds a correct copy correct (no false difference), and a
    row changed on the target before the pass, in a range the churn never touches, is still named (no false
    match hidden by the churn around it)."""
    src, dst, done = synced(source, target, passwords, tmp_path)
    execute(target, "appdb", "UPDATE accounts SET note = 'tampered' WHERE id = 190000")
    churn = Churn(source)
    churn.start()
    try:
        live = verified(src, dst, done)
    finally:
        churn.stop()
    try:
        assert churn.rounds > 5, churn.rounds
        report = window(src, dst, done, live)
        assert report.problems == ["appdb: public.accounts id in [190000, 190001): same row count, different content"]
    finally:
        cleanup.run(src, dst, MIGRATION, done, Events())
