"""`/pgmove announce`: a maintenance window announced (or cancelled) for a server, and what is said about it.

The handler only records the announcement; the bot's notifier posts the notice and, `announce_remind_minutes`
before the start, the reminder (bot/announcements.py). The text is here, pure, for the reply, the notices,
`status` and the freeze approval alike.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import TYPE_CHECKING

from pgmove.handlers.reply import Reply
from pgmove.handlers.verbs import AnnounceCancel, AnnounceCmd
from pgmove.handlers.views import esc, mention
from pgmove.state import announce
from pgmove.state.announce import Announcement, WindowCheck
from pgmove.state.store import Store

if TYPE_CHECKING:
    from pgmove.handlers.commands import Deps


def cmd_announce(deps: Deps, actor: str, command: AnnounceCmd | AnnounceCancel, server: str) -> Reply:
    """`server` is the command's, already checked to be configured. The reply goes only to whoever asked: the
    channel gets the notice (or the cancellation) from the notifier, once, with the other channels."""
    now = deps.clock()
    if isinstance(command, AnnounceCancel):
        done = deps.store.update_announcement(server, lambda cur: announce.cancel(cur, server, actor, now))
        return Reply(ok=True, kind="accepted", verb="announce", announcements=[done],
                     text=f"{cancelled_text(done)} The cancellation goes to {esc(', '.join(done.channels) or 'no channel')}, "
                          "wherever the notice went (a notice not posted yet is not posted at all).")
    start = announce.resolve_start(command.start, now)
    channels = list(dict.fromkeys(deps.config.access.channels[:1] + deps.config.announce_channels))
    made = deps.store.update_announcement(server, lambda cur: announce.new_announcement(
        f"ann-{secrets.token_hex(4)}", server, start, command.duration, actor, now, channels, cur))
    lead = deps.config.announce_lead
    remind = (f"; the channel and the approvers are reminded at {made.start - lead:%H:%M} UTC"
              if announce.reminder_due(made, made.start - lead, lead) else "")
    return Reply(ok=True, kind="accepted", verb="announce", announcements=[made],
                 text=f"Maintenance of {esc(server)} announced: {esc(made.span())}. The notice goes to "
                      f"{esc(', '.join(made.channels) or 'no channel (none configured)')}{remind}.")


def shown_windows(store: Store, server: str | None, now: datetime) -> list[Announcement]:
    """What `status` lists: the server's live window, or every server's, until it ends."""
    found = store.announcements() if server is None else [a for a in [store.announcement(server)] if a is not None]
    return [a for a in found if announce.shown(a, now)]


def with_window_note(reply: Reply) -> Reply:
    """A freeze requested outside the announced window says so to the requester too, not only to the approver."""
    m = reply.migration
    check = m.approval.window if m is not None and m.approval is not None else None
    if m is not None and check is not None and check.outside:
        return reply.model_copy(update={"text": f"{reply.text}\n{window_line(check, m.source)}"})
    return reply


def notice_text(a: Announcement) -> str:
    return (f":loudspeaker: *Maintenance of {esc(a.server)}*: {esc(a.span())}, announced by {mention(a.announced_by)}. "
            f"Writes to {esc(a.server)} may stop during the window (pgmove freeze and move).")


def reminder_text(a: Announcement, approvers: list[str], now: datetime) -> str:
    minutes = max(0, round((a.start - now).total_seconds() / 60))
    who = " ".join(mention(u) for u in approvers) or "no approver is configured"
    return (f":alarm_clock: Reminder: maintenance of *{esc(a.server)}* starts in {minutes} min ({esc(a.span())}). "
            f"Approvers: {who}; the freeze request will come here.")


def cancelled_text(a: Announcement) -> str:
    return (f":heavy_multiplication_x: Maintenance of *{esc(a.server)}* ({esc(a.span())}) is cancelled by "
            f"{mention(a.cancelled_by or '')}.")


def status_line(a: Announcement) -> str:
    return f"announced maintenance of {esc(a.server)}: {esc(a.span())}, by {mention(a.announced_by)}"


def window_line(check: WindowCheck, server: str) -> str:
    """What the freeze approval says of the announced window: the approver sees a freeze nobody was told about."""
    a = check.announcement
    if check.fit == "inside" and a is not None:
        return f":loudspeaker: In the announced maintenance window: {esc(a.span())}, announced by {mention(a.announced_by)}."
    if a is None:
        return (f":warning: *No maintenance window was announced* for {esc(server)}: the team was not told "
                f"(`/pgmove announce {esc(server)} <start> <duration>`).")
    when = "before" if check.fit == "early" else "after"
    return (f":warning: *Outside the announced window*: requested at {check.requested_at:%H:%M} UTC, {when} "
            f"{esc(a.span())} announced by {mention(a.announced_by)}.")
