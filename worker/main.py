"""`pgmove worker`: an RQ worker (no fork: the step's lease dies with the process) plus a reaper thread."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading

from rq import SimpleWorker

from pgmove.state.config import Config
from pgmove.state.store import Store
from pgmove.worker.monitor import monitor_forever
from pgmove.worker.queue import PgmoveJob, enqueuer, make_queue
from pgmove.worker.reaper import reap
from pgmove.worker.runtime import Runtime, default_worker_id, install

log = logging.getLogger("pgmove.worker")


def build_runtime(config: Config, worker_id: str | None = None) -> Runtime:
    store = Store.from_config(config)
    return Runtime(config=config, store=store, queue=make_queue(store, config.queue_name),
                   worker_id=worker_id or default_worker_id())


PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def run_worker(config: Config, burst: bool = False, worker_id: str | None = None) -> bool:
    """Work the queue until stopped (SIGTERM finishes the current step first) or, in burst mode, until empty."""
    rt = build_runtime(config, worker_id)
    lower_priority(config.worker_nice)
    hide_environment()
    install(rt)
    rt.store.beat(rt.worker_id)  # first: a plan made now is told a worker is there
    reap(rt.store, f"worker:{rt.worker_id}", rt.config, enqueuer(rt.queue))
    stop = threading.Event()
    reaper = threading.Thread(target=_reap_forever, args=(rt, stop), name="reaper", daemon=True)
    reaper.start()
    # Replication is watched beside the queue, never as a job: a job would hold a worker (and a check holding the
    # server's lock would block the freeze it is meant to allow); see worker/monitor.py.
    threading.Thread(target=monitor_forever, args=(rt, stop), name="monitor", daemon=True).start()
    try:
        name = f"pgmove-{rt.worker_id}".replace(":", "-")
        worker = rt.store.bind(lambda client: SimpleWorker([rt.queue], connection=client, name=name,
                                                          serializer=rt.queue.serializer, job_class=PgmoveJob))
        return bool(worker.work(burst=burst, logging_level="WARNING", with_scheduler=False))
    finally:
        stop.set()
        try:
            rt.store.forget_worker(rt.worker_id)  # gone now, not in a minute: replies say so at once
        except Exception:
            log.warning("could not remove this worker's heartbeat", exc_info=True)


def lower_priority(niceness: int) -> None:
    """Raise this process's niceness to `niceness` (never lower it: an operator's own nice stands); inherited by
    every thread and by pg_dump, pg_restore and the hooks the worker starts."""
    current = os.nice(0)
    if niceness > current:
        os.nice(niceness - current)


def hide_environment() -> None:
    """Hooks run as the worker's user, and /proc/<worker>/environ holds the servers' passwords: a process that
    is not dumpable has that file owned by root (and cannot be traced by its user). Linux only; a no-op elsewhere."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _reap_forever(rt: Runtime, stop: threading.Event) -> None:
    while not stop.wait(rt.config.heartbeat_seconds):
        try:
            rt.store.beat(rt.worker_id)
            reap(rt.store, f"worker:{rt.worker_id}", rt.config, enqueuer(rt.queue))
        except Exception:
            log.warning("heartbeat or reaper pass failed", exc_info=True)
