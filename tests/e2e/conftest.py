"""The bot as a real process against the local Slack stand-in, plus a worker, on real servers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from pgmove.sandbox.fakeslack.driver import Driver
from pgmove.sandbox.fakeslack.server import FakeSlack, Message
from pgmove.sandbox.servers import free_port, wait_until
from pgmove.state.store import Store

SIGNING_SECRET = "e2e-signing-secret-0123456789"


@dataclass
class SlackWorld:
    slack: FakeSlack
    driver: Driver
    store: Store
    pgmove: Any
    env: dict[str, str]
    port: int

    def start_bot(self) -> None:
        self.pgmove.start_bot(self.env, self.port)
        wait_until(self.bot_ready, 30, "the bot to come up")

    def bot_ready(self) -> bool:
        if "SLACK_APP_TOKEN" in self.env:
            return self.slack.socket_connected()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def state(self) -> str | None:
        m = self.store.active_for("prod-old")
        return m.state.value if m else None

    def wait_state(self, *states: str, timeout: float = 120) -> None:
        wait_until(lambda: self.state() in states, timeout, f"state in {states} (now {self.state()})")

    def message_with(self, needle: str, timeout: float = 30) -> Message:
        return wait_until(lambda: next((m for m in reversed(self.slack.channel_messages("C_DBMIG"))
                                        if needle in m.all_text()), None), timeout, f"a message with {needle!r}")


def make_world(pgmove, mode: str) -> Iterator[SlackWorld]:  # type: ignore[no-untyped-def]
    import tomllib

    slack = FakeSlack().start()
    env = {"SLACK_BOT_TOKEN": slack.bot_token, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": slack.api_url}
    if mode == "socket":
        env["SLACK_APP_TOKEN"] = slack.app_token
    port = free_port()
    driver = Driver(slack, SIGNING_SECRET, bot_url=f"http://127.0.0.1:{port}/slack/events", socket=mode == "socket")
    store = Store.from_url(tomllib.loads(pgmove.config_path.read_text())["redis_url"])
    world = SlackWorld(slack, driver, store, pgmove, env, port)
    world.start_bot()
    try:
        yield world
    finally:
        slack.stop()


@pytest.fixture(params=["http", "socket"])
def slack_world(pgmove, request) -> Iterator[SlackWorld]:  # type: ignore[no-untyped-def]
    yield from make_world(pgmove, request.param)


@pytest.fixture
def http_world(pgmove) -> Iterator[SlackWorld]:  # type: ignore[no-untyped-def]
    yield from make_world(pgmove, "http")
