"""A fixed set of worker threads running prioritised tasks that may add follow-up tasks as they finish.

The copy's shape: table data (largest first) feeds index builds, which feed ANALYZE, which feed the
database's remaining post-data. Follow-ups jump the queue, so a table's indexes are built while the
next tables stream, and a failure stops everything at the next task boundary.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from pgmove.state.errors import StepFailed

log = logging.getLogger("pgmove.copy")


@dataclass(order=True)
class _Task:
    priority: tuple[float, ...]
    seq: int
    name: str = field(compare=False)
    run: Callable[[], None] = field(compare=False)


class Pool:
    def __init__(self, workers: int, should_stop: Callable[[], bool]) -> None:
        self.workers = max(1, workers)
        self.should_stop = should_stop
        self._heap: list[_Task] = []
        self._seq = itertools.count()
        self._running = 0
        self._cond = threading.Condition()
        self._error: BaseException | None = None

    def submit(self, priority: tuple[float, ...], name: str, run: Callable[[], None]) -> None:
        """Lower priority tuples run first; tasks may call submit (from any thread) for their follow-ups."""
        with self._cond:
            heapq.heappush(self._heap, _Task(priority, next(self._seq), name, run))
            self._cond.notify()

    def run(self) -> None:
        """Run until every task (and follow-up) is done; re-raise the first failure once the others stop."""
        threads = [threading.Thread(target=self._work, name=f"copy-{n}", daemon=True) for n in range(self.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self._error is not None:
            raise self._error

    def stopping(self) -> bool:
        """For long tasks to check: another task failed, or the migration moved on."""
        return self._error is not None or self.should_stop()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._heap and self._running and self._error is None:
                    self._cond.wait()
                if self._error is not None or not self._heap:
                    self._cond.notify_all()
                    return
                task = heapq.heappop(self._heap)
                self._running += 1
            try:
                if self.should_stop():
                    raise StepFailed("the copy was stopped because the migration moved on")
                task.run()
            except BaseException as exc:  # noqa: BLE001 -- handed to run()'s caller
                log.warning("copy task %s failed: %s", task.name, exc)
                with self._cond:
                    if self._error is None:
                        self._error = exc
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()
