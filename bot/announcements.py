"""Posts announced maintenance windows: the notice, the reminder before the start, the cancellation.

Run by the notifier on each pass with its clock (tests move it instead of sleeping). Each post (per channel) is
claimed in Redis for CLAIM_HOLD by that clock, then marked posted once Slack took it: however many bots run, it
goes out once, and a bot that dies between its claim and its post leaves it to the next bot's pass after the
hold. A cancellation goes only where the notice went: a window cancelled before any notice of it was posted is
never posted at all (the channel never heard of it; only the person who announced it did, in their reply). A
cancelled window replaced by a new one before a pass saw it is kept apart (Store.retired_announcements) so its
cancellation is still posted. A post Slack refuses gives its claim back and is tried again a minute later. Anything else (Slack
unreachable) gives the claim back and ends the notifier's pass as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from pgmove.handlers import blocks
from pgmove.handlers.announce import cancelled_text, notice_text, reminder_text
from pgmove.state import announce
from pgmove.state.announce import Announcement
from pgmove.state.config import Config
from pgmove.state.store import Store

log = logging.getLogger("pgmove.notifier")
RETRY_AFTER = timedelta(minutes=1)
# Longer than a post takes, retries included (10 s timeout, a few connection retries, Slack's Retry-After):
# a post still going when its claim ends could go out twice.
CLAIM_HOLD = timedelta(minutes=2)


class AnnouncementPoster:
    def __init__(self, store: Store, client: WebClient, config: Config, clock: Callable[[], datetime]) -> None:
        self.store, self.client, self.config, self.clock = store, client, config, clock
        self._failed: dict[str, datetime] = {}  # claim -> when Slack last refused it: retried a minute later

    def run_once(self) -> None:
        now = self.clock()
        for a in self.store.announcements():
            if a.live:
                self._once(a, "notice", a.channels, notice_text(a), now)
            if announce.reminder_due(a, now, self.config.announce_lead):
                self._once(a, "reminder", a.channels[:1], reminder_text(a, self.config.access.approvers, now), now)
            if not a.live:
                self._cancel(a, now)
        for a in self.store.retired_announcements():  # cancelled, then replaced before a pass saw the cancellation
            self._cancel(a, now)

    def _cancel(self, a: Announcement, now: datetime) -> None:
        """The cancellation goes where the notice (or the reminder) went, or may have gone: a channel never told of
        the window is not told it is off. Asked again on every pass while the record is kept, so a notice a bot is
        posting as the window is cancelled still gets its cancellation once that post is marked."""
        self._once(a, "cancel", [c for c in a.channels if self._told(a, c, now)], cancelled_text(a), now)

    def _told(self, a: Announcement, channel: str, now: datetime) -> bool:
        for what in ("notice", "reminder"):
            done, held = self.store.claim_marks(f"announce:{a.id}:{what}:{channel}")
            if done:
                return True
            # A claim past its hold and never given back: its bot died, maybe after Slack took the post.
            if held is not None and now.timestamp() - _claimed_at(held) >= CLAIM_HOLD.total_seconds():
                return True
        return False

    def _once(self, a: Announcement, what: str, channels: list[str], text: str, now: datetime) -> None:
        """Each channel on its own claim: a channel Slack refuses (the bot is not in it) holds up no other post."""
        for channel in channels:
            key = f"announce:{a.id}:{what}:{channel}"
            failed = self._failed.get(key)
            if failed is not None and now - failed < RETRY_AFTER:
                continue
            claim = self.store.claim_for_a_while(key, now.timestamp(), CLAIM_HOLD.total_seconds(), self._keep(a))
            if claim is None:
                continue
            try:
                for piece, message in blocks.text_messages(text):
                    self.client.chat_postMessage(channel=channel, text=piece, blocks=message)
            except SlackApiError as exc:
                self.store.release_claim(key, claim)
                self._failed[key] = now
                log.warning("could not post the %s of %s's maintenance window to %s: %s; retrying in a minute",
                            what, a.server, channel, exc.response.get("error"))
                continue
            except Exception:  # Slack unreachable: the next pass posts it
                self.store.release_claim(key, claim)
                raise
            self.store.mark_done(key, self._keep(a))
            self._failed.pop(key, None)

    def _keep(self, a: Announcement) -> int:
        """The posted mark outlives the announcement's record (a day past its end), so nothing is posted twice."""
        return max(3600, int((a.end - self.clock()).total_seconds()) + 2 * 86400)


def _claimed_at(token: str) -> float:
    try:
        return float(token)
    except ValueError:  # not a claim this code took: as old as can be
        return float("-inf")
