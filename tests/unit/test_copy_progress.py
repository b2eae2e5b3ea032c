"""The copy's live progress lines: emitted while a table streams, with bytes, rate, share, rows and ETA."""

from __future__ import annotations

import time

from pgmove.sandbox.servers import wait_until
from pgmove.steps.copyprogress import Ticker
from pgmove.steps.tables import Moved, Slice, Table


def test_a_long_table_reports_every_interval_with_rate_and_eta() -> None:
    """While a table streams, a progress line comes every interval with the bytes moved, the rate, the rows and an
    ETA."""
    table = Table(1, "public", "big", ("id",), size_bytes=100_000_000, rows_estimate=1_000_000, builtin_types=True,
                  condition=None)
    lines: list[tuple[str, dict[str, object]]] = []
    moved = Moved()
    with Ticker(lambda message, **data: lines.append((message, data)), every=0.05) as ticker:
        with ticker.watch("db", Slice(table), moved):
            for _ in range(8):
                moved.bytes += 5_000_000
                time.sleep(0.03)  # the stream itself: bytes arrive over time, so the ticker has a rate to measure
    assert len(lines) >= 2
    message, data = lines[-1]
    assert data["tick"] is True and data["table"] == "public.big"
    assert message.startswith("copying db.public.big: ") and "MB/s" in message and "ETA" in message and "rows" in message


def test_a_range_is_measured_against_its_share_of_the_table() -> None:
    """A range of a table is measured against its share of the table's size and rows, not against the whole table."""
    table = Table(1, "public", "big", ("id",), size_bytes=8192 * 100, rows_estimate=1000, builtin_types=True, condition=None)
    lines: list[str] = []
    moved = Moved(bytes=8192 * 25)
    with Ticker(lambda message, **data: lines.append(message), every=0.05) as ticker:
        with ticker.watch("db", Slice(table, 0, 50), moved):
            wait_until(lambda: lines, 5, "a progress line")
    assert lines and "about 50%" in lines[-1] and "of ~500 rows" in lines[-1]
