"""When a cut-over migration is watched, and each reading put on its record: pure decisions the worker applies
with compare-and-set (so of several workers exactly one starts, samples each period and ends the watch)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pgmove.state.errors import Refused
from pgmove.state.machine import State
from pgmove.state.models import AuditEvent, EventKind, FreezeMode, Migration, StepName, StepStatus
from pgmove.state.outcome import Outcome
from pgmove.state.watch import Reading, SequenceRoom, Watch, elapsed_text, fold, start, summarize


def cut_over_at(m: Migration) -> datetime | None:
    """When writes went to the target: the end of the cutover (dump) or of the switch (logical)."""
    if m.state != State.CUT_OVER:
        return None
    done = [s.finished_at for s in m.steps
            if s.name in (StepName.CUTOVER, StepName.SWITCH) and s.status == StepStatus.DONE and s.finished_at]
    return done[-1] if done else None


def wants_start(m: Migration, now: datetime, duration: timedelta) -> bool:
    """A migration cut over less than `duration` ago with no watch yet (older ones were cut over before the watch
    existed, or while no worker ran: a late watch would measure the wrong quarter of an hour)."""
    at = cut_over_at(m)
    return at is not None and m.watch is None and now < at + duration and m.target is not None


def begin(m: Migration, reading: Reading, duration: timedelta, actor: str) -> Outcome:
    at = cut_over_at(m)
    if m.watch is not None or at is None:
        raise Refused("the watch has started already")
    # A server the reading could not read has no baseline (never counters from half a reading): the watch counts
    # it from its first reading that succeeds and says so, rather than from nothing.
    unread = {side: name for side, name in (("target", m.target), ("source", m.source))
              if not getattr(reading, side) or any(p.startswith(f"{name}: ") for p in reading.problems)}
    baseline = reading.model_copy(update={side: {} for side in unread}
                                  | {"own": {k: v for k, v in reading.own.items() if k not in unread}})
    out = m.model_copy(deep=True)
    out.watch = start(baseline, at, at + duration)
    message = (f"watching {m.target} and {m.source} for {elapsed_text(duration)} after the cutover "
               "(commits, app connections, clients still on the old server)")
    if unread:
        message += (f"; could not read {' and '.join(str(n) for n in unread.values())} at the start ({'; '.join(reading.problems)}): "
                    "its numbers count from its first reading that succeeds")
    event = AuditEvent(kind=EventKind.PROGRESS, at=reading.at, actor=actor, message=message)
    return Outcome(out, [event])


def sample_due(m: Migration, now: datetime, period: timedelta) -> bool:
    w = m.watch
    return w is not None and w.finished_at is None and now < w.until and now - w.last.at >= period


def end_due(m: Migration, now: datetime) -> bool:
    return m.watch is not None and m.watch.finished_at is None and now >= m.watch.until


def record(m: Migration, reading: Reading) -> Outcome:
    if m.watch is None or m.watch.finished_at is not None:
        raise Refused("the watch is not running")
    out = m.model_copy(deep=True)
    out.watch = fold(m.watch, reading)
    return Outcome(out)


def finish(m: Migration, reading: Reading, sequences: list[SequenceRoom], actor: str) -> Outcome:
    """The last reading and the summary, posted to the thread as one audit event."""
    if m.watch is None or m.watch.finished_at is not None or m.target is None:
        raise Refused("the watch is not running")
    w: Watch = fold(m.watch, reading)
    no_connect = m.freeze_options.mode == FreezeMode.NO_CONNECT
    text, ok = summarize(w, m.source, m.target, sequences, no_connect=no_connect)
    out = m.model_copy(deep=True)
    out.watch = w.model_copy(update={"finished_at": reading.at, "summary": text})
    event = AuditEvent(kind=EventKind.PROGRESS, at=reading.at, actor=actor, message=text,
                       data={"watch": "ok" if ok else "attention"})
    return Outcome(out, [event])
