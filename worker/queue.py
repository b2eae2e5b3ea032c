"""The job queue: one job kind, `advance(migration_id)`, enqueued in the same transaction as its transition.

Whoever can write to Redis must not be able to run code in the worker (it holds the servers' superuser
passwords). RQ's default pickle serializer runs code on load, and even JSON jobs name the function to call
and the callbacks to import. So jobs are JSON, and the worker runs the one function pgmove enqueues, with a
migration id for argument, and no callbacks: anything else fails as a job without being imported or called.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from pgmove.state.store import Store

JOB = "pgmove.worker.jobs.advance"
_MIGRATION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


class UntrustedJob(Exception):
    """A job in the queue that pgmove did not put there (or not in this form): refused, never run."""


class PgmoveJob(Job):
    """An RQ job that resolves only to pgmove's own job function."""

    @property
    def func(self) -> Callable[..., Any]:
        from pgmove.worker import (
            jobs,  # the allowed function, imported by pgmove, not by a name read from Redis
        )

        if self.func_name != JOB or self.instance is not None:
            raise UntrustedJob(f"refusing job {self.id}: it calls {self.func_name!r}, not {JOB}")
        if self.kwargs or len(self.args) != 1 or not _MIGRATION_ID.match(str(self.args[0])):
            raise UntrustedJob(f"refusing job {self.id}: {JOB} takes one migration id")
        return jobs.advance

    # pgmove sets no callbacks: a name stored in the job hash would be imported and called.
    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None


def make_queue(store: Store, name: str = "pgmove") -> Queue:
    return store.bind(lambda client: Queue(name, connection=client, serializer=JSONSerializer, job_class=PgmoveJob))


def enqueuer(queue: Queue):  # type: ignore[no-untyped-def]
    """A store-compatible enqueue callback: the job is written inside the caller's MULTI pipeline."""

    def enqueue(pipe: Any, migration_id: str) -> None:
        queue.enqueue_call(JOB, args=(migration_id,), timeout=-1, result_ttl=3600, failure_ttl=86400, pipeline=pipe)

    return enqueue
