"""Posts announced maintenance windows: the notice, the reminder before the start, the cancellation.

Run by the notifier on each pass with its clock (tests move it instead of sleeping). Each post is claimed in
Redis first (per channel), so however many bots run, each goes out once; a post Slack refuses gives its claim
back and is tried again a minute later. Anything else (Slack unreachable) ends the notifier's pass as before.
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


class AnnouncementPoster:
    def __init__(self, store: Store, client: WebClient, config: Config, clock: Callable[[], datetime]) -> None:
        self.store, self.client, self.config, self.clock = store, client, config, clock
        self._failed: dict[str, datetime] = {}  # claim -> when Slack last refused it: retried a minute later

    def run_once(self) -> None:
        now = self.clock()
        for a in self.store.announcements():
            self._once(a, "notice", a.channels, notice_text(a), now)
            if announce.reminder_due(a, now, self.config.announce_lead):
                self._once(a, "reminder", a.channels[:1], reminder_text(a, self.config.access.approvers, now), now)
            if not a.live:
                self._once(a, "cancel", a.channels, cancelled_text(a), now)

    def _once(self, a: Announcement, what: str, channels: list[str], text: str, now: datetime) -> None:
        """Each channel on its own claim: a channel Slack refuses (the bot is not in it) holds up no other post."""
        for channel in channels:
            key = f"announce:{a.id}:{what}:{channel}"
            failed = self._failed.get(key)
            if failed is not None and now - failed < RETRY_AFTER:
                continue
            if not self.store.claim_once(key, ttl_seconds=self._keep(a)):
                continue
            try:
                for piece, message in blocks.text_messages(text):
                    self.client.chat_postMessage(channel=channel, text=piece, blocks=message)
                self._failed.pop(key, None)
            except SlackApiError as exc:
                self.store.unclaim(key)
                self._failed[key] = now
                log.warning("could not post the %s of %s's maintenance window to %s: %s; retrying in a minute",
                            what, a.server, channel, exc.response.get("error"))
            except Exception:  # Slack unreachable: the next pass posts it
                self.store.unclaim(key)
                raise

    def _keep(self, a: Announcement) -> int:
        """A claim outlives the announcement's record (a day past its end), so nothing is posted twice."""
        return max(3600, int((a.end - self.clock()).total_seconds()) + 2 * 86400)
