"""Live progress of the copy: every couple of seconds one tick for the whole copy (bytes and tables done of
their totals, rate, ETA), naming the tables that have been streaming a while.

One tick per interval, whatever the number of jobs: ticks go to a capped stream in Redis and the Slack status
message is edited from the latest, so more would only be thrown away. Bytes in flight are counted as they pass
through pgmove; sizes, rows and the end are estimated from the source's own statistics, and said to be.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType

from pgmove.state.progress import CopyProgress, duration
from pgmove.steps.connect import Progress
from pgmove.steps.tables import Moved, Slice, Table

EVERY = 2.0
NAMED = 3  # tables in flight named in a tick: the line stays short enough for a status message


@dataclass
class _Active:
    database: str
    slice: Slice
    moved: Moved
    started: float

    @property
    def expected(self) -> float:
        return self.slice.table.size_bytes * self.slice.share


class Ticker:
    def __init__(self, progress: Progress, databases: int = 0, every: float = EVERY) -> None:
        self.progress, self.every = progress, every
        self.totals = CopyProgress(databases=databases)
        self._first_data: float | None = None
        self._active: dict[int, _Active] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="copy-progress", daemon=True)

    def __enter__(self) -> Ticker:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    # -- what the copy tells it ---------------------------------------------------------------------

    def listed(self, tables: list[Table]) -> None:
        """A database's tables are known: they join the totals."""
        with self._lock:
            self.totals.databases_listed += 1
            self.totals.tables_total += len(tables)
            self.totals.bytes_total += sum(t.size_bytes for t in tables)

    def table_done(self, table: Table, resumed: bool = False) -> None:
        with self._lock:
            self.totals.tables_done += 1
            if resumed:  # copied by an earlier attempt: done in full, and not this run's speed
                self.totals.bytes_done += table.size_bytes
                self.totals.bytes_resumed += table.size_bytes

    @contextmanager
    def watch(self, database: str, s: Slice, moved: Moved) -> Iterator[None]:
        entry = _Active(database, s, moved, time.monotonic())
        with self._lock:
            self._active[id(entry)] = entry
            if self._first_data is None:
                self._first_data = entry.started
        ok = False
        try:
            yield
            ok = True
        finally:
            with self._lock:
                del self._active[id(entry)]
                if ok:
                    self.totals.bytes_done += int(entry.expected)

    # -- what it says ---------------------------------------------------------------------------------

    def snapshot(self, now: float) -> tuple[CopyProgress, list[_Active]]:
        with self._lock:
            active = list(self._active.values())
            in_flight = sum(min(a.moved.bytes, int(a.expected * 0.99)) for a in active)
            seconds = now - self._first_data if self._first_data is not None else 0.0
            totals = self.totals.model_copy(update={"bytes_done": self.totals.bytes_done + in_flight,
                                                    "seconds": round(seconds, 1)})
        return totals, active

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            now = time.monotonic()
            totals, active = self.snapshot(now)
            if self._first_data is None or (totals.tables_done >= totals.tables_total and totals.complete_totals):
                continue  # nothing streams yet, or the data is all in (indexes and post-data are said otherwise)
            long = sorted((a for a in active if now - a.started >= self.every), key=lambda a: a.started)
            text = totals.line()
            if long:
                text += "; streaming " + ", ".join(line(a, now) for a in long[:NAMED])
                text += f" and {len(long) - NAMED} more" if len(long) > NAMED else ""
            try:
                self.progress(text, tick=True, copy=totals.model_dump(mode="json"))
            except Exception:  # a lost lock surfaces in the copy itself; progress must never kill it
                return


def line(active: _Active, now: float) -> str:
    """One table in flight: `appdb.public.orders 120.3 MB at 40.1 MB/s, about 40% (~400,000 of ~1,000,000 rows), ETA ~3s`."""
    table, share, expected = active.slice.table, active.slice.share, active.expected
    elapsed = max(now - active.started, 1e-6)
    rate = active.moved.bytes / elapsed
    text = f"{active.database}.{active.slice.label} {active.moved.bytes / 1e6:.1f} MB at {rate / 1e6:.1f} MB/s"
    if expected > 0 and table.rows_estimate > 0:
        done = min(active.moved.bytes / expected, 0.99)
        rows = int(table.rows_estimate * share * done)
        eta = (expected - active.moved.bytes) / rate if rate > 0 and active.moved.bytes < expected else 0
        text += f", about {done:.0%} (~{rows:,} of ~{int(table.rows_estimate * share):,} rows), ETA ~{duration(eta)}"
    return text
