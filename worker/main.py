"""`pgmove worker`: an RQ worker (no fork: the step's lease dies with the process) plus a reaper thread."""

from __future__ import annotations

import logging
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


def run_worker(config: Config, burst: bool = False, worker_id: str | None = None) -> bool:
    """Work the queue until stopped (SIGTERM finishes the current step first) or, in burst mode, until empty."""
    rt = build_runtime(config, worker_id)
    install(rt)
    reap(rt.store, f"worker:{rt.worker_id}", enqueuer(rt.queue))
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


def _reap_forever(rt: Runtime, stop: threading.Event) -> None:
    while not stop.wait(max(1.0, rt.config.lease_seconds / 2)):
        try:
            reap(rt.store, f"worker:{rt.worker_id}", enqueuer(rt.queue))
        except Exception:
            log.warning("reaper pass failed", exc_info=True)
