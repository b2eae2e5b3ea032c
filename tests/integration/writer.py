"""A client that keeps inserting, as the app would, and remembers exactly which inserts were acknowledged."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psycopg


@dataclass
class Writer:
    dsn: str
    password: str
    acknowledged: list[tuple[int, float]] = field(default_factory=list)  # (id, when the commit returned)
    refused: list[tuple[float, str]] = field(default_factory=list)  # (when, error)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Writer:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        conn = None
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.dsn, password=self.password, autocommit=True, connect_timeout=5)
                row = conn.execute("INSERT INTO orders (customer, total) VALUES (%s, %s) RETURNING id",
                                   (f"writer-{n}", n)).fetchone()
                assert row is not None
                self.acknowledged.append((row[0], time.time()))
            except psycopg.Error as exc:
                self.refused.append((time.time(), str(exc).splitlines()[0]))
                if conn is not None and (conn.closed or conn.broken):
                    conn = None
                time.sleep(0.05)  # a refused app backs off a little before it tries again
            time.sleep(0.01)  # the pace of the app this plays: an insert about every 10 ms, not a wait for anything
        if conn is not None:
            conn.close()
