"""RQ job entry points: thin wrappers that find the process's runtime and call the runner."""

from __future__ import annotations

from pgmove.worker import runner
from pgmove.worker.runtime import current


def advance(migration_id: str) -> None:
    runner.advance(current(), migration_id)
