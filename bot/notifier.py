"""Turns each migration's event stream into Slack: one status message updated in place, details in its
thread, approval messages whose buttons become the decision. The bot is the only Slack speaker.

Where it got to is kept in Redis (message ids, the stream cursor), so a restarted bot resumes exactly:
it posts what it had not posted and nothing twice.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from pgmove.bot.announcements import AnnouncementPoster
from pgmove.handlers import blocks, views
from pgmove.state.config import Config
from pgmove.state.errors import Unavailable
from pgmove.state.machine import Event, State
from pgmove.state.models import (
    Approval,
    ApprovalAction,
    AuditEvent,
    Decision,
    EventKind,
    Migration,
    StepStatus,
)
from pgmove.state.store import Store

log = logging.getLogger("pgmove.notifier")

STATUS, CURSOR, CHANNEL = "status_ts", "cursor", "channel"
LIVE_EVERY = timedelta(seconds=5)  # between status-message edits for live progress (chat.update is rate limited)
CATCH_UP = 50  # at start, the newest migrations looked at once: a restarted bot may owe an ended one its last posts


def _now() -> datetime:
    return datetime.now(UTC)


class Notifier:
    """Waits on the streams of the migrations it watches (every server's current one, and any that still owes
    posts) with one blocking read, and syncs those that moved or have something due (a live line, an expiry).

    `clock` says what time it is: approvals expire and live lines are paced by it, so tests move it instead
    of sleeping.
    """

    def __init__(self, store: Store, client: WebClient, config: Config, clock: Callable[[], datetime] = _now) -> None:
        self.store, self.client, self.config, self.clock = store, client, config, clock
        self.default_channel = config.access.channels[0] if config.access.channels else None
        self._live_shown: dict[str, datetime] = {}
        self._live_seen: dict[str, str] = {}  # the newest live tick id known, per migration
        self._live_looked: dict[str, str] = {}  # the newest one the status message was considered for
        self._expired: set[str] = set()  # approval ids whose expiry was handled
        self._stuck: set[str] = set()  # migrations with events and no record or channel yet: retried each pass
        self._watched: set[str] | None = None
        self.announcements = AnnouncementPoster(store, client, config, clock)

    def run_forever(self, stop: threading.Event, wait_seconds: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.run_once(wait_seconds)
            except Unavailable as exc:  # Redis down: one line, not a traceback a second; the cursor resumes later
                log.warning("notifier paused: %s", exc.message)
                stop.wait(2.0)
            except Exception:  # Slack down for a moment: the cursor makes the next pass pick up
                log.warning("notifier pass failed; retrying", exc_info=True)
                stop.wait(2.0)

    def run_once(self, wait_seconds: float = 1.0) -> None:
        """Sync what is due, then block until a watched stream moves (at most `wait_seconds`: a new plan has a
        stream nobody waits on yet) and sync what moved."""
        self.announcements.run_once()
        watched = self._watch()
        for m in watched.values():
            if m.id in self._stuck or self._due(m):
                self.sync(m.id)
        audit = {i: self._cursor(i) for i in watched if i not in self._stuck}
        live = {i: self._live_seen.setdefault(i, self.store.last_live_id(i) or "0-0") for i in watched}
        if not audit and not live:  # no stream to block on: without this pause the loop spins on Redis
            time.sleep(wait_seconds)
        for migration_id in sorted(self.store.wait_moved(audit, live, int(wait_seconds * 1000))):
            self._live_seen[migration_id] = self.store.last_live_id(migration_id) or "0-0"
            self.sync(migration_id)

    def sync_all(self) -> None:
        """One pass over every watched migration, without waiting."""
        for migration_id in self._watch():
            self.sync(migration_id)

    def _watch(self) -> dict[str, Migration]:
        """Every server's current migration (read from the set of servers, never a SCAN), and the ones no longer
        current that still have events to post (an aborted migration replaced by a new plan)."""
        if self._watched is None:
            self._watched = {m.id for m in self.store.migrations(limit=CATCH_UP)}
        current = {m.id: m for m in self.store.active()}
        for migration_id in sorted(self._watched - set(current)):
            m = self.store.get(migration_id)
            if m is None or self._cursor(migration_id) == (self.store.last_event_id(migration_id) or "0-0"):
                self._watched.discard(migration_id)
                self._live_seen.pop(migration_id, None)
                self._live_looked.pop(migration_id, None)
            else:
                current[migration_id] = m
        self._watched |= set(current)
        return current

    def _cursor(self, migration_id: str) -> str:
        cursor = self.store.chat_ref(migration_id, CURSOR)
        return cursor if cursor and cursor != "-" else "0-0"

    def _due(self, m: Migration) -> bool:
        """Something to show that no stream entry announces: an approval past its expiry, a live line held back."""
        now = self.clock()
        a = m.approval
        if a is not None and a.decision == Decision.PENDING and now >= a.expires_at and a.id not in self._expired:
            return True
        running = (bool(m.steps) and m.steps[-1].status == StepStatus.RUNNING) or m.state == State.IN_SYNC
        shown = self._live_shown.get(m.id)
        unseen = self._live_seen.get(m.id, "0-0") not in ("0-0", self._live_looked.get(m.id))
        return running and unseen and (shown is None or now - shown >= LIVE_EVERY)

    def sync(self, migration_id: str) -> None:
        cursor = self.store.chat_ref(migration_id, CURSOR) or "-"
        events = self.store.events(migration_id, after=cursor)
        # Read the record after its events: a transition writes both in one transaction, so this record
        # is at least as new as every event just read (read before, it could miss the approval an event announces).
        m = self.store.get(migration_id)
        channel = self.store.chat_ref(migration_id, CHANNEL) or self.default_channel
        if m is None or channel is None:
            if events:
                self._stuck.add(migration_id)
            return
        self._stuck.discard(migration_id)
        status_ts = self.store.chat_ref(migration_id, STATUS)
        if status_ts is None:
            text, message = blocks.status_message(m, events[0] if events else None)
            status_ts = self._post(channel, text, message)
            self.store.set_chat_ref(migration_id, STATUS, status_ts)
        pending: list[AuditEvent] = []
        for event in events:
            if event.data.get("tick"):  # an old record from before ticks had their own stream
                continue
            pending.append(event)
            if event.kind in (EventKind.TRANSITION, EventKind.DECISION):
                self._thread_lines(channel, status_ts, pending)
                pending = []
                self._on_milestone(m, channel, status_ts, event)
                self.store.set_chat_ref(migration_id, CURSOR, event.id or cursor)
        if pending:
            self._thread_lines(channel, status_ts, pending)
        if events:
            self.store.set_chat_ref(migration_id, CURSOR, events[-1].id or cursor)
        self._show_live(m, channel, status_ts)
        self._expire(m, channel)

    def _show_live(self, m: Migration, channel: str, status_ts: str) -> None:
        """Live progress edits the status message (in the thread it would flood it), only while its step runs:
        after a milestone the status message shows that instead."""
        now = self.clock()
        shown = self._live_shown.get(m.id)
        if shown is not None and now - shown < LIVE_EVERY:
            return
        running = m.steps[-1] if m.steps and m.steps[-1].status == StepStatus.RUNNING else None
        reading = running is None and m.state == State.IN_SYNC  # the monitor's lag line, with no step running
        event = self.store.latest_live(m.id) if running is not None or reading else None
        if event is not None and event.id:
            self._live_looked[m.id] = event.id
        live = views.live_line(m, event)  # the same line `status` shows
        if live is None:
            return
        self._live_shown[m.id] = now
        text, message = blocks.status_message(m, None, live=live)
        self._update(channel, status_ts, text, message)

    def _on_milestone(self, m: Migration, channel: str, status_ts: str, event: AuditEvent) -> None:
        if event.kind == EventKind.TRANSITION:
            text, message = blocks.status_message(m, event)
            self._update(channel, status_ts, text, message)
        if event.to_state in (State.AWAITING_FREEZE_APPROVAL, State.AWAITING_CUTOVER_APPROVAL, State.AWAITING_UNFREEZE_APPROVAL):
            self._post_approval(m, channel, event)
        if event.kind == EventKind.DECISION or event.event in (Event.REPLANNED.value, Event.UNFREEZE_REQUESTED.value):
            self._refresh_approvals(m, channel)
        if event.event in (Event.VERIFY_PASSED.value, Event.VERIFY_FAILED.value):
            (text, message), full = blocks.verification_message(m)
            self._post(channel, text, message, thread_ts=status_ts)
            if full is not None:
                self._attach(channel, status_ts, f"verification-{m.id}.txt", full, "Full verification report")
        if event.event == Event.CUT_OVER.value:
            text, message = blocks.final_report(m)
            self._post(channel, text, message, thread_ts=status_ts)
            self._post(channel, text, message)

    def _post_approval(self, m: Migration, channel: str, event: AuditEvent) -> None:
        approval = self._approval_at(m, event)
        if approval is None or self.store.chat_ref(m.id, f"approval:{approval.id}"):
            return
        text, message = blocks.approval_message(m, approval, self.config.access.approvers, self.clock())
        ts = self._post(channel, text, message)
        self.store.set_chat_ref(m.id, f"approval:{approval.id}", ts)

    def _refresh_approvals(self, m: Migration, channel: str) -> None:
        """Replace the buttons of a decided (or voided) request with the decision."""
        if m.approval is None:
            return
        ts = self.store.chat_ref(m.id, f"approval:{m.approval.id}")
        if ts and m.approval.decision != Decision.PENDING and not self.store.chat_ref(m.id, f"decided:{m.approval.id}"):
            text, message = blocks.approval_message(m, m.approval, self.config.access.approvers, self.clock())
            self._update(channel, ts, text, message)
            self.store.set_chat_ref(m.id, f"decided:{m.approval.id}", m.approval.decision.value)

    def _expire(self, m: Migration, channel: str) -> None:
        a = m.approval
        if a is None or a.decision != Decision.PENDING or self.clock() < a.expires_at:
            return
        ts = self.store.chat_ref(m.id, f"approval:{a.id}")
        if ts and self.store.set_chat_ref(m.id, f"decided:{a.id}", "expired", only_if_missing=True):
            text, message = blocks.approval_message(m, a, self.config.access.approvers, self.clock())
            self._update(channel, ts, text, message)
        self._expired.add(a.id)

    @staticmethod
    def _approval_at(m: Migration, event: AuditEvent) -> Approval | None:
        """The request this event opened. After downtime only the latest request of that kind is posted."""
        want = {State.AWAITING_FREEZE_APPROVAL: ApprovalAction.FREEZE, State.AWAITING_CUTOVER_APPROVAL: ApprovalAction.CUTOVER,
                State.AWAITING_UNFREEZE_APPROVAL: ApprovalAction.UNFREEZE}.get(event.to_state) if event.to_state else None
        return m.approval if m.approval is not None and m.approval.action == want else None

    # -- Slack calls (retries on 429 happen inside the client) --------------------------------------

    def _thread_lines(self, channel: str, thread_ts: str, events: Iterable[AuditEvent]) -> None:
        text = "\n".join(views.event_line(e) for e in events)
        if text:
            for piece, message in blocks.text_messages(text):
                self._post(channel, piece, message, thread_ts=thread_ts)

    def _post(self, channel: str, text: str, message: list[dict], thread_ts: str | None = None) -> str:  # type: ignore[type-arg]
        response = self.client.chat_postMessage(channel=channel, text=text, blocks=message, thread_ts=thread_ts)
        return str(response["ts"])

    def _update(self, channel: str, ts: str, text: str, message: list[dict]) -> None:  # type: ignore[type-arg]
        try:
            self.client.chat_update(channel=channel, ts=ts, text=text, blocks=message)
        except SlackApiError as exc:
            log.warning("could not update message %s: %s", ts, exc.response.get("error"))

    def _attach(self, channel: str, thread_ts: str, filename: str, content: str, title: str) -> None:
        self.client.files_upload_v2(channel=channel, thread_ts=thread_ts, file=io.BytesIO(content.encode()),
                                    filename=filename, title=title, initial_comment=title)
