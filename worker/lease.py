"""The per-server lock a worker holds while it runs a migration's steps: taken with a wait, kept alive by a heartbeat."""

from __future__ import annotations

import logging
import threading
import time

from pgmove.worker.runtime import Runtime

log = logging.getLogger("pgmove.worker")


def acquire(rt: Runtime, server: str, token: str, wait: float) -> bool:
    """Take the server's lock, waiting up to `wait` seconds for another worker to let it go."""
    deadline = time.monotonic() + wait
    while True:
        if rt.store.acquire_lock(server, token, rt.config.lease_seconds):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)


class Heartbeat:
    """Renews the server lock every third of the lease; a step checks `.lost` and stops if renewal failed."""

    def __init__(self, rt: Runtime, server: str, token: str) -> None:
        self.rt, self.server, self.token = rt, server, token
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{server}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        lease = self.rt.config.lease_seconds
        while not self._stop.wait(lease / 3):
            try:
                if not self.rt.store.renew_lock(self.server, self.token, lease):
                    self.lost = True
                    log.error("lost the lock on %s; stopping the step", self.server)
                    return
            except Exception:  # a Redis blip: the next beat may succeed before the lease runs out
                log.warning("could not renew the lock on %s", self.server, exc_info=True)
