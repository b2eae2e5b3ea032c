"""Posts announced maintenance windows: the notice, the reminder before the start, the cancellation.

Run by the notifier on each pass with its clock (tests move it instead of sleeping). Each post is claimed in
Redis first, so however many bots run, each goes out once; a post Slack refuses gives its claim back and the
next pass tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from slack_sdk import WebClient

from pgmove.handlers import blocks
from pgmove.handlers.announce import cancelled_text, notice_text, reminder_text
from pgmove.state import announce
from pgmove.state.announce import Announcement
from pgmove.state.config import Config
from pgmove.state.store import Store

log = logging.getLogger("pgmove.notifier")


class AnnouncementPoster:
    def __init__(self, store: Store, client: WebClient, config: Config, clock: Callable[[], datetime]) -> None:
        self.store, self.client, self.config, self.clock = store, client, config, clock

    def run_once(self) -> None:
        now = self.clock()
        for a in self.store.announcements():
            self._once(a, "notice", a.channels, notice_text(a))
            if announce.reminder_due(a, now, self.config.announce_lead):
                self._once(a, "reminder", a.channels[:1], reminder_text(a, self.config.access.approvers, now))
            if not a.live:
                self._once(a, "cancel", a.channels, cancelled_text(a))

    def _once(self, a: Announcement, what: str, channels: list[str], text: str) -> None:
        key = f"announce:{a.id}:{what}"
        if not channels or not self.store.claim_once(key, ttl_seconds=self._keep(a)):
            return
        try:
            for piece, message in blocks.text_messages(text):
                for channel in channels:
                    self.client.chat_postMessage(channel=channel, text=piece, blocks=message)
        except Exception:
            self.store.unclaim(key)
            raise

    def _keep(self, a: Announcement) -> int:
        """A claim outlives the announcement's record (a day past its end), so nothing is posted twice."""
        return max(3600, int((a.end - self.clock()).total_seconds()) + 2 * 86400)
