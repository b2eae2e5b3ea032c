"""The cutover window's drain with a transaction too large for the source's logical_decoding_work_mem: the WAL
sender streams it to the subscriber while it is still open (spills it to disk when the subscription does not
stream). Committed at the freeze, every row of it is on the target after the drain; still open when the freeze
ends its session, none of it is, and nothing reaches the source after the freeze."""

from __future__ import annotations

import threading

import psycopg
import pytest

from tests.integration.freezeworld import Events
from tests.integration.streamworld import BATCH, GRACE, MODES, World, freeze_drain_and_check
from tests.integration.test_replication_steps import rows
from tests.integration.writer import Writer

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("when,source_name,target_name,streaming,expected",
                         [pytest.param("in the grace period", *m.values, id=f"grace-{m.id}") for m in MODES]
                         + [pytest.param("just before the freeze", *MODES[2].values, id=f"before-{MODES[2].id}")])
def test_a_streamed_transaction_committed_at_the_freeze_is_drained_whole(  # type: ignore[no-untyped-def]
        request, source_name, target_name, streaming, expected, when):
    """A transaction far larger than logical_decoding_work_mem, with a rolled-back savepoint in it, is streamed
    (or spilled) while open and commits inside the freeze's grace period or just before the freeze, the app
    committing asynchronously all along: after the drain the target holds exactly the frozen source's rows, all
    40,000 of the big one, none of its rolled-back part and every acknowledged insert."""
    world = World(request, source_name, target_name, streaming)
    assert world.streaming == expected
    writer = Writer(world.app_dsn, world.app_password).start()
    big = psycopg.connect(world.app_dsn, password=world.app_password)
    try:
        insert = "INSERT INTO orders (customer, total) SELECT %s, g FROM generate_series(1, %s) g"
        big.execute(insert, ("big", 2 * BATCH))
        big.execute("SAVEPOINT part")
        big.execute(insert, ("doomed", BATCH // 2))
        big.execute("ROLLBACK TO SAVEPOINT part")
        big.execute(insert, ("big", 2 * BATCH))
        world.wait_decoded()
        may_commit = threading.Event()
        committed: list[bool] = []

        def commit_in_the_grace() -> None:
            may_commit.wait(30)
            big.commit()
            committed.append(True)

        committer = threading.Thread(target=commit_in_the_grace)
        committer.start()
        if when == "just before the freeze":
            may_commit.set()
            committer.join()

        def progress(message: str, **data: object) -> None:
            if f"get {GRACE:g}s to finish" in message:  # the freeze waits on the open transaction: commit it now
                may_commit.set()

        try:
            freeze_drain_and_check(world, writer, progress)
        finally:
            may_commit.set()
            committer.join()
        assert committed, f"the big transaction did not commit {when}"
        assert rows(world.target, "appdb", "SELECT customer, count(*) FROM orders WHERE customer IN "
                    "('big', 'doomed') GROUP BY 1") == [("big", 4 * BATCH)]
        streamed, spilled = world.decoded()
        assert (streamed if expected != "off" else spilled) >= 1, (streamed, spilled)
    finally:
        writer.stop()
        big.close()


@pytest.mark.parametrize("source_name,target_name,streaming,expected", MODES[2:])  # the streamed ones: suite time
def test_a_streamed_transaction_still_open_at_the_freeze_leaves_nothing_on_the_target(  # type: ignore[no-untyped-def]
        request, source_name, target_name, streaming, expected):
    """A transaction far larger than logical_decoding_work_mem keeps inserting through the freeze's grace period
    (already streamed, or spilled, in part): the freeze ends its session, so it never commits, and after the drain
    the target holds exactly the frozen source's rows: every acknowledged insert of the app, none of the big
    transaction's."""
    world = World(request, source_name, target_name, streaming)
    assert world.streaming == expected
    writer = Writer(world.app_dsn, world.app_password).start()
    big = psycopg.connect(world.app_dsn, password=world.app_password)
    inserted: list[int] = []
    ended: list[BaseException] = []
    first = threading.Event()

    def insert_until_refused() -> None:
        try:
            while True:
                big.execute("INSERT INTO orders (customer, total) SELECT 'big', g FROM generate_series(1, %s) g",
                            (BATCH // 5,))
                inserted.append(BATCH // 5)
                if sum(inserted) >= 2 * BATCH:
                    first.set()
        except psycopg.Error as exc:
            ended.append(exc)
        try:
            big.commit()
        except psycopg.Error as exc:
            ended.append(exc)
        else:
            ended.append(AssertionError("the big transaction committed after its session was ended"))
        first.set()

    inserter = threading.Thread(target=insert_until_refused)
    inserter.start()
    try:
        assert first.wait(30)
        world.wait_decoded()
        freeze_drain_and_check(world, writer, Events())
        inserter.join(10)
        assert not inserter.is_alive()
        assert ended and all(isinstance(e, psycopg.Error) for e in ended), ended
        assert sum(inserted) >= 2 * BATCH
        assert rows(world.source, "appdb", "SELECT count(*) FROM orders WHERE customer = 'big'") == [(0,)]
        assert rows(world.target, "appdb", "SELECT count(*) FROM orders WHERE customer = 'big'") == [(0,)]
        streamed, spilled = world.decoded()
        assert (streamed if expected != "off" else spilled) >= 1, (streamed, spilled)
    finally:
        writer.stop()
        inserter.join(10)
        big.close()
