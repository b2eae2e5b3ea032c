"""The copy's live progress: one tick per interval for the whole copy (bytes, tables, rate, ETA), naming the tables in flight."""

from __future__ import annotations

import time

from pgmove.sandbox.servers import wait_until
from pgmove.state.progress import CopyProgress
from pgmove.steps.copyprogress import Ticker
from pgmove.steps.tables import Moved, Slice, Table


def _table(oid: int, size: int, rows: int = 1000) -> Table:
    return Table(oid, "public", f"t{oid}", ("id",), size_bytes=size, rows_estimate=rows, builtin_types=True, condition=None)


def test_a_long_table_is_named_in_the_whole_copys_tick_with_rate_and_eta() -> None:
    """While a table streams, one tick comes every interval: the whole copy's totals first, then the table in
    flight with its bytes, rate, rows and ETA."""
    table = _table(1, 100_000_000, 1_000_000)
    lines: list[tuple[str, dict[str, object]]] = []
    moved = Moved()
    with Ticker(lambda message, **data: lines.append((message, data)), databases=1, every=0.05) as ticker:
        ticker.listed([table])
        with ticker.watch("db", Slice(table), moved):
            for _ in range(8):
                moved.bytes += 5_000_000
                time.sleep(0.03)  # the stream itself: bytes arrive over time, so the ticker has a rate to measure
    assert len(lines) >= 2
    message, data = lines[-1]
    assert data["tick"] is True and isinstance(data["copy"], dict) and data["copy"]["tables_total"] == 1
    assert message.startswith("copy: ") and "0 of 1 tables" in message and "ETA ~" in message, message
    assert "; streaming db.public.t1 " in message and "MB/s" in message and "rows" in message, message


def test_a_range_is_measured_against_its_share_of_the_table() -> None:
    """A range of a table is measured against its share of the table's size and rows, not against the whole table."""
    table = _table(1, 8192 * 100)
    lines: list[str] = []
    moved = Moved(bytes=8192 * 25)
    with Ticker(lambda message, **data: lines.append(message), databases=1, every=0.05) as ticker:
        ticker.listed([table])
        with ticker.watch("db", Slice(table, 0, 50), moved):
            wait_until(lambda: lines and "streaming" in lines[-1], 5, "a progress line")
    assert "about 50%" in lines[-1] and "of ~500 rows" in lines[-1]


def test_the_totals_count_finished_resumed_and_in_flight_tables_across_databases() -> None:
    """Done is finished tables in full plus tables in flight by what they streamed (never past their size); a
    table kept from an earlier attempt is done but not this run's speed; until every database is listed the
    totals say they are lower bounds and no ETA is given."""
    small, kept, big = _table(1, 1_000_000), _table(2, 3_000_000), _table(3, 6_000_000)
    ticker = Ticker(lambda message, **data: None, databases=2)
    ticker.listed([small, kept])
    ticker.table_done(kept, resumed=True)
    with ticker.watch("a", Slice(small), Moved(bytes=500_000)):
        pass
    ticker.table_done(small)
    early, _ = ticker.snapshot(time.monotonic())
    assert "of at least 4.0 MB" in early.line() and early.eta_seconds is None and "listed (1 so far)" in early.line()
    ticker.listed([big])
    with ticker.watch("b", Slice(big), Moved(bytes=60_000_000)):  # streamed more than its heap (TOAST, text)
        totals, active = ticker.snapshot(time.monotonic() + 10)
    assert len(active) == 1 and totals.tables_done == 2 and totals.tables_total == 3
    assert totals.bytes_done == 1_000_000 + 3_000_000 + int(6_000_000 * 0.99) and totals.bytes_resumed == 3_000_000
    assert totals.eta_seconds is not None and totals.eta_seconds < 1 and "(99%), 2 of 3 tables" in totals.line()


def test_the_line_says_sizes_one_way_and_a_long_eta_in_hours() -> None:
    """Sizes in MB with one decimal, the rate per second, and an ETA of hours as hours and minutes."""
    p = CopyProgress(bytes_done=1_500_000_000, bytes_total=100_000_000_000, tables_done=3, tables_total=40,
                     databases=2, databases_listed=2, seconds=100)
    assert p.line() == ("copy: 1500.0 MB of 100000.0 MB (2%), 3 of 40 tables, 15.0 MB/s, ETA ~1h49m for the data")
