"""The cutover window's drain with a streamed transaction prepared (two-phase) before the freeze: on the target
whole when its coordinator commits it in the grace period, absent when the freeze rolls it back."""

from __future__ import annotations

import psycopg
import pytest

from tests.integration.streamworld import BATCH, MODES, World, freeze_drain_and_check
from tests.integration.test_replication_steps import rows
from tests.integration.writer import Writer

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("coordinator", ["commits in the grace period", "never comes back"])
@pytest.mark.parametrize("source_name,target_name,streaming,expected", MODES[3:])  # parallel apply, the case most unlike the rest (suite time)
def test_a_streamed_transaction_prepared_before_the_freeze_is_drained_as_it_ends(  # type: ignore[no-untyped-def]
        request, source_name, target_name, streaming, expected, coordinator):
    """A transaction far larger than logical_decoding_work_mem, streamed while open, is prepared (two-phase)
    before the freeze: its coordinator commits it inside the grace period (from a new, read-only session), or
    never comes back and the freeze rolls it back. After the drain the target holds exactly the frozen source's
    rows: all of the big transaction when its commit was acknowledged, none of it when it was rolled back."""
    world = World(request, source_name, target_name, streaming, two_phase=True)
    assert world.streaming == expected
    writer = Writer(world.app_dsn, world.app_password).start()
    try:
        with psycopg.connect(world.app_dsn, password=world.app_password, autocommit=True) as big:
            big.execute("BEGIN")
            big.execute("INSERT INTO orders (customer, total) SELECT 'big', g FROM generate_series(1, %s) g",
                        (4 * BATCH,))
            world.wait_decoded()
            big.execute("PREPARE TRANSACTION 'big'")
        outcome: list[BaseException | None] = []

        def progress(message: str, **data: object) -> None:
            if coordinator == "commits in the grace period" and "to be committed or rolled back" in message:
                with psycopg.connect(world.app_dsn, password=world.app_password, autocommit=True) as conn:
                    try:
                        conn.execute("COMMIT PREPARED 'big'")
                        outcome.append(None)
                    except psycopg.Error as exc:
                        outcome.append(exc)

        freeze_drain_and_check(world, writer, progress)
        committed = coordinator == "commits in the grace period"
        # COMMIT PREPARED is no write of the session's own: a read-only one may run it
        assert outcome == ([None] if committed else []), outcome
        big_rows = [(4 * BATCH,)] if committed else [(0,)]
        for cluster in (world.source, world.target):
            assert rows(cluster, "appdb", "SELECT count(*) FROM orders WHERE customer = 'big'") == big_rows, outcome
        assert rows(world.source, "appdb", "SELECT count(*) FROM pg_prepared_xacts") == [(0,)]
        assert world.decoded()[0] >= 1
    finally:
        writer.stop()
