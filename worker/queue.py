"""The job queue: one job kind, `advance(migration_id)`, enqueued in the same transaction as its transition."""

from __future__ import annotations

import redis
from redis.client import Pipeline
from rq import Queue

JOB = "worker.jobs.advance"


def make_queue(client: redis.Redis, name: str = "pgmove") -> Queue:
    return Queue(name, connection=client)


def enqueuer(queue: Queue):  # type: ignore[no-untyped-def]
    """A store-compatible enqueue callback: the job is written inside the caller's MULTI pipeline."""

    def enqueue(pipe: Pipeline, migration_id: str) -> None:
        queue.enqueue_call(JOB, args=(migration_id,), timeout=-1, result_ttl=3600, failure_ttl=86400, pipeline=pipe)

    return enqueue
