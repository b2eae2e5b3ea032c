"""Live progress of the copy: every few seconds, one line per table that has been streaming a while.

Bytes are counted as they pass through pgmove; rows and the end are estimated from the source's own
statistics (reltuples, heap size), and said to be estimates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType

from pgmove.steps.connect import Progress
from pgmove.steps.tables import Moved, Slice

EVERY = 5.0


@dataclass
class _Active:
    database: str
    slice: Slice
    moved: Moved
    started: float


class Ticker:
    def __init__(self, progress: Progress, every: float = EVERY) -> None:
        self.progress, self.every = progress, every
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

    @contextmanager
    def watch(self, database: str, s: Slice, moved: Moved) -> Iterator[None]:
        entry = _Active(database, s, moved, time.monotonic())
        with self._lock:
            self._active[id(entry)] = entry
        try:
            yield
        finally:
            with self._lock:
                del self._active[id(entry)]

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            now = time.monotonic()
            with self._lock:
                due = [a for a in self._active.values() if now - a.started >= self.every]
            for active in due:
                try:
                    self.progress(line(active, now), tick=True, database=active.database, table=active.slice.label,
                                  bytes=active.moved.bytes)
                except Exception:  # a lost lock surfaces in the copy itself; progress must never kill it
                    return


def line(active: _Active, now: float) -> str:
    table, share = active.slice.table, active.slice.share
    expected = table.size_bytes * share
    elapsed = max(now - active.started, 1e-6)
    rate = active.moved.bytes / elapsed
    text = f"copying {active.database}.{active.slice.label}: {active.moved.bytes / 1e6:.0f} MB at {rate / 1e6:.1f} MB/s"
    if expected > 0 and table.rows_estimate > 0:
        done = min(active.moved.bytes / expected, 0.99)
        rows = int(table.rows_estimate * share * done)
        eta = (expected - active.moved.bytes) / rate if rate > 0 and active.moved.bytes < expected else 0
        text += f", about {done:.0%} (~{rows:,} of ~{int(table.rows_estimate * share):,} rows), ETA ~{eta:.0f}s"
    return text
