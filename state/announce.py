"""Announced maintenance windows: what an announcement is, which are acceptable, and when one is due a reminder.

Pure decisions; the store keeps one announcement per server, the bot's notifier posts it and its reminder
(claimed in Redis, so of several bots exactly one posts), and a freeze request carries the WindowCheck the
approver reads: inside the announced window, or not (allowed, but said).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pgmove.state.errors import Refused

MIN_DURATION = timedelta(minutes=1)
MAX_DURATION = timedelta(hours=24)
MAX_AHEAD = timedelta(days=30)  # further out is a typo (a wrong year) more often than a plan
PAST_SLACK = timedelta(minutes=1)  # "now", or a clock time typed a few seconds late, is not "in the past"
Start = datetime | time | timedelta  # an instant, a clock time today (UTC), or "in 2h"


class Announcement(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    server: str
    start: datetime
    end: datetime
    announced_by: str
    announced_at: datetime
    channels: list[str] = Field(default_factory=list)  # where the notice goes: the team's channel first
    cancelled_by: str | None = None
    cancelled_at: datetime | None = None

    @property
    def live(self) -> bool:
        return self.cancelled_at is None

    def span(self) -> str:
        """`10:00-11:30 UTC on 2026-12-03 (1h30m)`, or with both dates when it ends on a later day (UTC): the window
        as every message shows it."""
        start, end = self.start.astimezone(UTC), self.end.astimezone(UTC)
        days = f" on {start:%Y-%m-%d}" if end.date() == start.date() else f", from {start:%Y-%m-%d} to {end:%Y-%m-%d}"
        return f"{start:%H:%M}-{end:%H:%M} UTC{days} ({duration_text(end - start)})"


class WindowCheck(BaseModel):
    """What a freeze request found about the server's announced window, kept on the request for the approver."""

    model_config = ConfigDict(extra="ignore")

    fit: Literal["inside", "early", "late", "none"]
    announcement: Announcement | None = None
    requested_at: datetime

    @property
    def outside(self) -> bool:
        return self.fit != "inside"


def resolve_start(start: Start, now: datetime) -> datetime:
    """The instant a parsed start stands for: a clock time is today's (UTC), never silently tomorrow's."""
    if isinstance(start, timedelta):
        return now + start
    if isinstance(start, datetime):
        return start
    return now.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)


def new_announcement(announcement_id: str, server: str, start: datetime, duration: timedelta, actor: str,
                     now: datetime, channels: list[str], current: Announcement | None) -> Announcement:
    """A window that starts now or later, within a month, lasts a minute to a day, and overlaps no other one."""
    if start < now - PAST_SLACK:
        raise Refused(f"{start:%Y-%m-%d %H:%M} UTC is in the past (it is {now:%H:%M} UTC now); say a later time, "
                      "`now`, or `in 2h`.")
    if start > now + MAX_AHEAD:
        raise Refused(f"{start:%Y-%m-%d %H:%M} UTC is more than {MAX_AHEAD.days} days ahead; announce it nearer the time.")
    if not MIN_DURATION <= duration <= MAX_DURATION:
        raise Refused(f"A maintenance window lasts from {duration_text(MIN_DURATION)} to {duration_text(MAX_DURATION)}, "
                      f"not {duration_text(duration)}.")
    if current is not None and current.live and current.end > now:
        raise Refused(f"{server} already has a window announced by <@{current.announced_by}>: {current.span()}. "
                      f"Cancel it first (`/pgmove announce {server} cancel`), then announce the new one.")
    return Announcement(id=announcement_id, server=server, start=max(start, now), end=max(start, now) + duration,
                        announced_by=actor, announced_at=now, channels=channels)


def cancel(current: Announcement | None, server: str, actor: str, now: datetime) -> Announcement:
    if current is None or not current.live or current.end <= now:
        raise Refused(f"{server} has no announced maintenance window to cancel.")
    return current.model_copy(update={"cancelled_by": actor, "cancelled_at": now})


def check_window(current: Announcement | None, now: datetime, lead: timedelta) -> WindowCheck:
    """Where a freeze requested `now` falls: asking up to `lead` before the start (for the approval) is early."""
    if current is None or not current.live or current.end <= now - lead:
        return WindowCheck(fit="none", requested_at=now)
    if now < current.start:
        return WindowCheck(fit="early" if now < current.start - lead else "inside", announcement=current, requested_at=now)
    return WindowCheck(fit="inside" if now <= current.end else "late", announcement=current, requested_at=now)


def reminder_due(a: Announcement, now: datetime, lead: timedelta) -> bool:
    """From `lead` before the start until the start, for a window announced earlier than that: a reminder later,
    or right after the notice itself, would only be noise."""
    return a.live and a.announced_at < a.start - lead <= now < a.start


def shown(a: Announcement | None, now: datetime) -> bool:
    """Whether status still lists it: live and not over."""
    return a is not None and a.live and a.end > now


def duration_text(span: timedelta) -> str:
    """`1h30m`, `2h`, `15m`, or seconds under a minute."""
    if span < timedelta(minutes=1):
        return f"{int(span.total_seconds())}s"
    minutes = int(span.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours and minutes else f"{hours}h" if hours else f"{minutes}m"
