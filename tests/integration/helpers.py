"""Shared helpers for tests that drive handlers directly against a real Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis

from pgmove.handlers.commands import Deps
from pgmove.state import outcome, work
from pgmove.state.config import Config
from pgmove.state.machine import Event
from pgmove.state.models import PreflightReport
from pgmove.state.store import Store

CONFIG = {
    "access": {"operators": ["U_ALICE", "U_BOB", "U_CAROL", "U_DAVE"], "approvers": ["U_BOB", "U_CAROL"],
               "channels": ["C_DBMIG"]},
    "servers": {
        "prod-old": {"dsn": "host=127.0.0.1 port=1 user=pgmove", "password_env": "NOPE_OLD", "app_roles": ["app"]},
        "prod-new": {"dsn": "host=127.0.0.1 port=2 user=pgmove", "password_env": "NOPE_NEW"},
        "spare": {"dsn": "host=127.0.0.1 port=3 user=pgmove"},
    },
}


class Clock:
    """Starts at the real time and moves only when told; the handlers and the notifier both take it."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


def make_deps(url: str, clock: Clock | None = None) -> Deps:
    config = Config.model_validate({**CONFIG, "redis_url": url})
    return Deps(config=config, store=Store.from_url(url), enqueue=None, clock=clock or Clock())


def preflight_passes(store: Store, server: str = "prod-old") -> None:
    """Stand in for the worker's preflight step: these tests are about the rules, not the servers."""
    m = store.active_for(server)
    assert m is not None

    def ok(cur: Any) -> outcome.Outcome:
        out = work.step_transition(cur, Event.PREFLIGHT_OK, datetime.now(UTC), "preflight ok", "test")
        out.migration.preflight = PreflightReport(source_version="15", target_version="15")
        return out

    store.update(m.id, ok)


def force_state(store: Store, server: str, *events: Event) -> None:
    m = store.active_for(server)
    assert m is not None
    for event in events:
        store.update(m.id, lambda cur, e=event: work.step_transition(cur, e, datetime.now(UTC), str(e), "test"))


def snapshot(url: str) -> dict[str, Any]:
    """Every key and value in Redis, whatever its type: 'changes nothing' is checked against this, and the
    leak test searches it (a refusal that enqueued a job or set a chat reference must show)."""
    client = redis.Redis.from_url(url)
    readers = {
        "string": client.get, "stream": client.xrange, "hash": client.hgetall, "set": client.smembers,
        "list": lambda key: client.lrange(key, 0, -1), "zset": lambda key: client.zrange(key, 0, -1, withscores=True),
    }
    return {key.decode(errors="replace"): readers.get(client.type(key).decode(), lambda _key: None)(key)
            for key in client.scan_iter()}
