"""The watch after cutover: what each reading of both servers holds, how readings add up, and the summary.

A reading is taken at the start (the baseline), every sample period, and at the end. Counters are deltas from
the baseline; what a single reading sees (connections, clients still on the old server) is kept as a peak or as
the set of clients seen, so a client that comes and goes between the end's reading and now is still named.
Every database but the templates counts, the maintenance database too (apps live there): pgmove's own readings
commit there and open a session there, one of each per reading, and those are taken out of its delta.
A server the baseline could not read (refused, say, by "too many clients" in the app's reconnect storm) has no
baseline: its first reading that succeeds becomes its baseline and the summary says its numbers start then, since
counting from nothing would pass the server's whole history (a restore's commits) off as the app's since cutover.
A side of a reading holds counters only when its reading succeeded (steps/watch.py sees to it).
Pure: steps/watch.py reads the servers, worker/watch.py schedules, state/watching.py puts it on the record.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

TEMP_SPIKE_BYTES = 256 * 1024 * 1024  # temporary files written between two readings above this: a query spilling
SEQUENCE_WARN = 0.75  # a sequence past this share of its range is named
ROLLBACK_WARN = 0.05  # rollbacks above this share of transactions (and more than a handful) are named


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")


class DbCounters(_Record):
    """pg_stat_database's cumulative counters of one database."""

    commits: int = 0
    rollbacks: int = 0
    deadlocks: int = 0
    temp_files: int = 0
    temp_bytes: int = 0
    sessions: int | None = None  # PostgreSQL 14 and later: sessions established


class OldClient(_Record):
    """A session on the old server that is not pgmove's: a client that was not switched."""

    role: str
    application: str
    address: str
    database: str
    seen: int = 1  # in how many readings
    first_seen: datetime
    last_seen: datetime

    def key(self) -> tuple[str, str, str, str]:
        return self.role, self.application, self.address, self.database

    def describe(self) -> str:
        app = f" ({self.application})" if self.application else ""
        return f"{self.role}{app} from {self.address} to {self.database}"


class Reading(_Record):
    at: datetime
    target: dict[str, DbCounters] = Field(default_factory=dict)
    app_connections: dict[str, int] = Field(default_factory=dict)  # app role -> its sessions on the target now
    source: dict[str, DbCounters] = Field(default_factory=dict)
    clients: list[OldClient] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    own: dict[str, str] = Field(default_factory=dict)  # side -> the database this reading's own transaction committed in


class SequenceRoom(_Record):
    database: str
    name: str
    used: float  # share of the range in the increment's direction, 0..1

    def describe(self) -> str:
        return f"{self.database}.{self.name} {self.used:.0%} used"


class Watch(_Record):
    started_at: datetime  # the cutover's end: counters are deltas from the baseline taken then
    until: datetime
    baseline: Reading
    last: Reading
    samples: int = 1
    app_peak: dict[str, int] = Field(default_factory=dict)
    temp_peak_bytes: int = 0  # the most temporary-file bytes the target wrote between two readings
    clients: list[OldClient] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    # side -> database -> pgmove's own readings since the baseline whose commit (and session) the last reading's
    # counters hold: every one before the last (a reading's commit is counted after its own snapshot)
    own: dict[str, dict[str, int]] = Field(default_factory=dict)
    # side -> when its baseline counters were read, for a side the first reading could not read
    counted_from: dict[str, datetime] = Field(default_factory=dict)
    finished_at: datetime | None = None
    summary: str = ""


def start(reading: Reading, started_at: datetime, until: datetime) -> Watch:
    return fold(Watch(started_at=started_at, until=until, baseline=reading, last=reading, samples=0), reading)


def fold(w: Watch, r: Reading) -> Watch:
    """The watch with one more reading: peaks, clients seen, problems (each said once)."""
    # Between two readings that both read the target: against an unread one it would be the target's whole history
    temp = _total(r.target, "temp_bytes") - _total(w.last.target, "temp_bytes") if r.target and w.last.target else 0
    peak = {role: max(n, w.app_peak.get(role, 0)) for role, n in r.app_connections.items()}
    clients = {c.key(): c for c in w.clients}
    for c in r.clients:
        known = clients.get(c.key())
        clients[c.key()] = c if known is None else known.model_copy(
            update={"seen": known.seen + c.seen, "last_seen": c.last_seen})
    problems = w.problems + [p for p in r.problems if p not in w.problems]
    own = {side: dict(dbs) for side, dbs in w.own.items()}
    for side, db in (w.last.own.items() if w.samples else ()):  # the reading before this one is in its counters
        own.setdefault(side, {})[db] = own.get(side, {}).get(db, 0) + 1
    baseline, counted_from = w.baseline, dict(w.counted_from)
    for side in ("target", "source"):
        if not _side(baseline, side) and _side(r, side):  # its first reading that succeeded
            baseline = baseline.model_copy(update={side: _side(r, side)})
            counted_from[side] = r.at
            own[side] = {}  # readings before this one are in its counters, which are now the baseline
    return w.model_copy(update={"last": r, "samples": w.samples + 1, "app_peak": {**w.app_peak, **peak},
                                "temp_peak_bytes": max(w.temp_peak_bytes, temp), "clients": list(clients.values()),
                                "problems": problems, "own": own, "baseline": baseline,
                                "counted_from": counted_from})


def counted(w: Watch, side: str) -> tuple[datetime, str]:
    """Since when a side's counters are counted (the cutover, or its late baseline's reading), and why they cannot
    be, if they cannot."""
    since = w.counted_from.get(side, w.started_at)
    if not _side(w.baseline, side):
        return since, "no reading of it succeeded"
    if not _side(w.last, side):
        return since, "its last reading failed"
    if side in w.counted_from and since >= w.last.at:
        return since, "only its last reading succeeded"
    return since, ""


def delta(w: Watch, side: str) -> dict[str, DbCounters]:
    """Per database, what the counters moved since the side's baseline (a database created since counts from 0: the
    baseline read the server and it was not there), less pgmove's own readings' commits and sessions; nothing for
    a side `counted` says cannot be counted. Never below 0: a reading's statistics reach the server as its
    session ends, so the next one may, rarely, not see them yet."""
    if counted(w, side)[1]:
        return {}
    now, then = _side(w.last, side), _side(w.baseline, side)
    own = w.own.get(side, {})
    out = {}
    for db, c in now.items():
        b = then.get(db, DbCounters(sessions=0 if c.sessions is not None else None))
        mine = own.get(db, 0)
        out[db] = DbCounters(
            commits=max(0, c.commits - b.commits - mine), rollbacks=c.rollbacks - b.rollbacks,
            deadlocks=c.deadlocks - b.deadlocks, temp_files=c.temp_files - b.temp_files,
            temp_bytes=c.temp_bytes - b.temp_bytes,
            sessions=None if c.sessions is None or b.sessions is None else max(0, c.sessions - b.sessions - mine))
    return out


def summarize(w: Watch, source: str, target: str, sequences: list[SequenceRoom], no_connect: bool = False) -> tuple[str, bool]:
    """The thread's post: a headline that says it all, then the figures. True when nothing looks wrong."""
    since, unread = counted(w, "target")
    took = elapsed_text(w.last.at - since)
    if "target" in w.counted_from and not unread:  # said in the headline: the reader takes its figure as the whole watch
        took += (f" (counted from {since:%H:%M:%S} UTC, {elapsed_text(since - w.started_at)} after the cutover: "
                 f"its first reading that succeeded)")
    moved = delta(w, "target")
    commits = sum(d.commits for d in moved.values())
    rollbacks = sum(d.rollbacks for d in moved.values())
    roles = ", ".join(sorted(w.app_peak)) or "the app"
    wrong: list[str] = []
    if unread:
        wrong.append(f"{target}'s commits could not be counted: {unread}")
    elif commits == 0:
        wrong.append(f"{target} took no commits: is the app switched to it?")
    if rollbacks > 10 and rollbacks > ROLLBACK_WARN * (commits + rollbacks):
        wrong.append(f"{rollbacks:,} rollbacks on {target} ({rollbacks / (commits + rollbacks):.0%} of transactions)")
    deadlocks = sum(d.deadlocks for d in moved.values())
    if deadlocks:
        wrong.append(f"{deadlocks} deadlock(s) on {target}")
    if w.temp_peak_bytes > TEMP_SPIKE_BYTES:
        wrong.append(f"a temporary-file spike on {target}: {w.temp_peak_bytes / 1e6:,.0f} MB between two readings")
    full = [s for s in sequences if s.used >= SEQUENCE_WARN]
    if full:
        wrong.append("sequences near their end: " + ", ".join(s.describe() for s in full))
    old_since, old_unread = counted(w, "source")
    old = delta(w, "source")
    old_sessions = sum(d.sessions or 0 for d in old.values())
    refused = sum(d.rollbacks for d in old.values())  # a write the frozen source refuses ends in a rollback
    after = "cutover" if "source" not in w.counted_from else f"{old_since:%H:%M:%S} UTC (its first reading that succeeded)"
    refused_text = f"{refused:,} transaction(s) rolled back on {source} since {after} (writes the freeze refused)"
    if old_unread:
        wrong.append(f"{source}'s sessions and rollbacks could not be counted: {old_unread}")
    if w.clients:
        wrong.append("; ".join(f"{c.describe()} (seen {c.seen}x, last {c.last_seen:%H:%M:%S} UTC)" for c in w.clients)
                     + (f"; {refused_text}" if refused else ""))
    elif old_sessions > 0 or refused > 0:
        wrong.append(f"{old_sessions} session(s) opened and {refused_text}, by clients too brief to name: "
                     f"{source}'s server log has them (log_connections)")
    wrong += [f"could not read: {p}" for p in w.problems]
    still = f"{len(w.clients)} client{'' if len(w.clients) == 1 else 's'} still on {source}"
    if not w.baseline.source:  # no reading of it succeeded: none seen is not none there
        still = f"clients still on {source} unknown"
    head = (f"{target} took {commits:,} commits from {roles} in {took}" if not unread
            else f"{target}'s commits not counted") + f", {still}"
    lines = [(":white_check_mark: " if not wrong else ":warning: ") + head + ("" if not wrong else ": " + "; ".join(wrong))]
    lines += [f"  {db}: {d.commits:,} commits, {d.rollbacks:,} rollbacks, {d.deadlocks} deadlocks, "
              f"{d.temp_files} temp files ({d.temp_bytes / 1e6:,.1f} MB)" for db, d in sorted(moved.items())
              if d.commits or d.rollbacks or d.deadlocks or d.temp_files]
    if w.app_peak:
        now = w.last.app_connections
        lines.append("  app connections on " + target + ": " + ", ".join(
            f"{role} {now.get(role, 0)} now, peak {peak}" for role, peak in sorted(w.app_peak.items())))
    if sequences:
        lines.append("  fullest sequences: " + ", ".join(s.describe() for s in sequences))
    if no_connect:  # a refused login ends before it is a session: no statistics view ever shows it
        lines.append(f"  {source} is frozen no-connect: the logins it refuses reach only its server log "
                     "(look for 'not permitted to log in'); the count above is of clients that got in")
    return "\n".join(lines), not wrong


def elapsed_text(span: timedelta) -> str:
    """`15 min`, or seconds for a watch shorter than a minute (the demo's)."""
    seconds = span.total_seconds()
    return f"{round(seconds / 60)} min" if seconds >= 60 else f"{seconds:.0f} s"


def _side(r: Reading, side: str) -> dict[str, DbCounters]:
    return r.target if side == "target" else r.source


def _total(counters: dict[str, DbCounters], name: str) -> int:
    return sum(int(getattr(c, name)) for c in counters.values())
