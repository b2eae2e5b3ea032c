"""The switch through the poolers: PAUSE every database the app uses, let the caller move the writes, repoint,
RESUME on the target; on any failure, RESUME on the source (pointed back first if the repoint had begun).

Each pooler is handed to `record` before PAUSE is sent and again before its repoint starts, so a worker that dies
in between leaves enough behind for `release` (run by the reaper or the next worker) to give it back to the
source. Used as a context manager around the part of the cutover that runs while the app waits:

    with PoolerSwitch(poolers, target, progress, record, secret_env) as switch:
        ...  # prove, mark, make the target writable
        switch.repoint()
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from pgmove.state.errors import PgmoveError, StepFailed
from pgmove.state.models import PausedPooler, PoolerBackend
from pgmove.steps import poolerfile
from pgmove.steps.connect import Progress, describe
from pgmove.steps.pooler import (
    Pooler,
    already_paused,
    backends,
    command,
    console,
    pause,
    paused_by_others,
    resume,
    waiting,
)


def point(p: Pooler, wanted: dict[str, PoolerBackend], secret_env: set[str]) -> None:
    """Repoint `p`'s databases (include file or command), RELOAD, and check it now maps them as wanted."""
    if p.databases_file is not None:
        poolerfile.rewrite(p.databases_file, wanted)
    else:
        for dbname, to in wanted.items():
            poolerfile.run_command(p, dbname, to, secret_env)
    _reload(p, wanted)


def _reload(p: Pooler, wanted: dict[str, PoolerBackend]) -> None:
    with console(p) as conn:
        command(conn, "RELOAD")
        now = backends(conn, list(wanted))
    wrong = [f"{db} -> {now[db].describe() if db in now else 'nothing'}" for db, to in wanted.items() if now.get(db) != to]
    if wrong:
        raise StepFailed(f"pooler {p.name} does not map as it should after RELOAD: {', '.join(wrong)} (wanted "
                         f"{', '.join(f'{db} -> {to.describe()}' for db, to in wanted.items())})")


def release(poolers: dict[str, Pooler], entries: list[PausedPooler], secret_env: set[str],
            progress: Progress) -> list[PausedPooler]:
    """Give each recorded pooler back to the source: pointed back if its repoint had begun, then RESUMEd.
    Returns the entries that could not be released (still paused, or unknown to the configuration)."""
    left = []
    for entry in entries:
        p = poolers.get(entry.name)
        try:
            if p is None:
                raise StepFailed(f"pooler {entry.name} is no longer configured")
            back = entry.repointed and not entry.stays_on_target
            if back:
                _point_back(p, entry, secret_env)
            with console(p) as conn:
                for dbname in entry.databases:
                    resume(conn, dbname)
        except (PgmoveError, psycopg.Error, OSError) as exc:
            why = exc.message if isinstance(exc, PgmoveError) else describe(exc)
            progress(f"pooler {entry.name} could NOT be resumed on the source: {why}; pgmove keeps trying")
            left.append(entry)
            continue
        where = ("resumed on the target, where the finished switch had pointed it" if entry.stays_on_target
                 else "pointed back at the source and resumed" if back else "resumed on the source")
        poolerfile.discard(entry.saved_file)
        progress(f"pooler {entry.name} {where} ({', '.join(entry.databases)})")
    return left


def _point_back(p: Pooler, entry: PausedPooler, secret_env: set[str]) -> None:
    """Point it back at the source; if that fails but it still maps there (the repoint never took effect),
    RESUME is safe all the same. Only a pooler that may send the app to the target stays paused."""
    try:
        if p.databases_file is not None and entry.saved_file is not None and os.path.exists(entry.saved_file):
            poolerfile.restore(p.databases_file, entry.saved_file, entry.databases)
            _reload(p, entry.source)
        else:
            point(p, entry.source, secret_env)
    except (PgmoveError, psycopg.Error, OSError):
        with console(p) as conn:
            if backends(conn, entry.databases) != entry.source:
                raise


class PoolerSwitch:
    def __init__(self, poolers: list[Pooler], target_host: str, target_port: int, progress: Progress,
                 record: Callable[[list[PausedPooler]], None], secret_env: set[str],
                 guard: Callable[[], None] | None = None) -> None:
        self.poolers, self.progress, self.record, self.secret_env = poolers, progress, record, secret_env
        # Started once, after the first pause is recorded and before it is sent: whatever gives the poolers back
        # should this process die (the worker's watchdog), watching that record.
        self.guard = guard
        self.target_host, self.target_port = target_host, target_port
        self.paused: list[PausedPooler] = []
        self.timeline: dict[str, dict[str, Any]] = {}
        self._started: dict[str, float] = {}

    def __enter__(self) -> PoolerSwitch:
        try:
            for p in self.poolers:
                self._pause(p)
        except BaseException:
            self._give_back()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self._give_back()
            return
        try:
            if any(not e.repointed for e in self.paused):
                raise StepFailed("the cutover finished without repointing the poolers; they go back to the source")
            done = [e.model_copy(update={"stays_on_target": True}) for e in self.paused]
            self.record(list(done))
            self.paused = done
        except BaseException:
            self._give_back()
            raise
        # From here the app belongs on the target: a failure leaves the record for the reaper to RESUME it there.
        self._resume_on_target()

    def _pause(self, p: Pooler) -> None:
        with console(p) as conn:
            source = backends(conn, p.databases)
            held = paused_by_others(conn, p.databases)
        missing = sorted(set(p.databases) - set(source))
        if missing:
            raise StepFailed(f"pooler {p.name} serves no database named {', '.join(missing)}")
        if held:  # checked before it is recorded: pgmove must never RESUME a pause that is not its own
            raise StepFailed(already_paused(p.name, held))
        entry = PausedPooler(name=p.name, databases=list(p.databases), source=source, paused_at=datetime.now(UTC))
        self.paused.append(entry)
        self.record(list(self.paused))  # before PAUSE: a worker dying from here on leaves it to be resumed
        if self.guard is not None:
            guard, self.guard = self.guard, None
            guard()
        self._started[p.name] = time.monotonic()
        took = {db: pause(p, db, p.pause_timeout) for db in p.databases}
        with console(p) as conn:
            queued = waiting(conn, p.databases)
        self.timeline[p.name] = {"databases": list(p.databases), "paused_at": _now(), "clients_waiting": queued,
                                 "pause_wait_seconds": round(max(took.values()), 3)}
        self.progress(f"pooler {p.name} paused at {_clock()} ({', '.join(p.databases)}; PAUSE waited "
                      f"{max(took.values()):.2f}s for running transactions; {queued} client(s) waiting)")

    def repoint(self) -> None:
        """Point every paused pooler at the target (same database names), while its clients wait."""
        for i, entry in enumerate(self.paused):
            p = self._pooler(entry.name)
            saved = poolerfile.save(p.databases_file) if p.databases_file is not None else None
            self.paused[i] = entry.model_copy(update={"repointed": True, "saved_file": saved})
            self.record(list(self.paused))  # before the change: a half-done repoint is undone from the record
            wanted = {db: PoolerBackend(host=self.target_host, port=self.target_port, dbname=src.dbname)
                      for db, src in entry.source.items()}
            point(p, wanted, self.secret_env)
            with console(p) as conn:
                queued = waiting(conn, p.databases)
            line = self.timeline[p.name]
            line.update({"repointed_at": _now(), "clients_waiting": max(line["clients_waiting"], queued),
                         "now_serves": {db: to.describe() for db, to in wanted.items()}})
            self.progress(f"pooler {p.name} repointed at {_clock()}: "
                          + ", ".join(f"{db} -> {to.describe()}" for db, to in wanted.items())
                          + f"; {queued} client(s) waiting")

    def _resume_on_target(self) -> None:
        for entry in list(self.paused):
            p = self._pooler(entry.name)
            with console(p) as conn:
                queued = waiting(conn, p.databases)
                for dbname in entry.databases:
                    resume(conn, dbname)
                now = {db: b.describe() for db, b in backends(conn, entry.databases).items()}
            wanted = self.timeline[p.name].get("now_serves", {})
            if now != wanted:  # someone RELOADed another configuration in between: say so, loudly
                raise StepFailed(f"pooler {p.name} was resumed but maps {now} instead of {wanted}: check its "
                                 "configuration now; the app may be on the wrong server")
            seconds = time.monotonic() - self._started[p.name]
            line = self.timeline[p.name]
            line.update({"resumed_at": _now(), "paused_seconds": round(seconds, 3),
                         "clients_waiting": max(line["clients_waiting"], queued)})
            self.paused.remove(entry)
            poolerfile.discard(entry.saved_file)
            self.progress(f"pooler {p.name} resumed on the target at {_clock()}: paused {seconds:.2f}s, "
                          f"{line['clients_waiting']} client(s) waited at most")
        self.record([])

    def _give_back(self) -> None:
        if not self.paused:
            return
        left = release({p.name: p for p in self.poolers}, self.paused, self.secret_env, self.progress)
        for entry in self.paused:
            if entry not in left and entry.name in self._started:
                self.timeline.setdefault(entry.name, {})["resumed_on_source_after"] = round(
                    time.monotonic() - self._started[entry.name], 3)
        self.paused = left
        self.record(list(left))

    def _pooler(self, name: str) -> Pooler:
        return next(p for p in self.poolers if p.name == name)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _clock() -> str:
    return datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3] + " UTC"
