"""What pgmove keeps in Redis, and for how long: no keyspace SCAN on hot paths, capped live progress, finished
migrations expire after retain_days, the audit trail is never trimmed."""

from __future__ import annotations

from datetime import UTC, datetime

import redis

from pgmove.handlers import views
from pgmove.handlers.commands import handle
from pgmove.state.models import AuditEvent, EventKind, StepName
from pgmove.state.store import Store
from pgmove.worker.reaper import reap
from tests.integration.helpers import make_deps, preflight_passes


def _calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_plan_status_and_the_reaper_never_scan_the_keyspace(redis_server):  # type: ignore[no-untyped-def]
    """With thousands of unrelated keys in Redis, plan, status and a reaper pass cost no SCAN (nor KEYS)."""
    deps = make_deps(redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    with client.pipeline(transaction=False) as pipe:
        for i in range(3000):
            pipe.set(f"pgmove:other:{i}", "x")
        pipe.execute()
    client.config_resetstat()
    assert handle(deps, "U_ALICE", "plan prod-old prod-new").ok
    assert handle(deps, "U_ALICE", "plan spare prod-old").kind == "refused"  # the conflict check still sees the first
    status = handle(deps, "U_ALICE", "status")
    assert "prod-old -> prod-new" in views.for_terminal(status.text)
    reap(deps.store)
    assert _calls(client, "scan") == 0 and _calls(client, "keys") == 0
    assert [m.source for m in deps.store.active()] == ["prod-old"]


def test_a_finished_migration_expires_after_retain_days_with_everything_it_left(redis_server):  # type: ignore[no-untyped-def]
    """Aborted or cut over, the record, its audit trail, live ticks, checkpoints, chat refs and the server's
    pointer all get retain_days of TTL; a running migration's keys never expire; a new plan clears it."""
    deps = make_deps(redis_server.url)
    deps.store = Store.from_url(redis_server.url, retain_days=2)
    client = redis.Redis.from_url(redis_server.url)
    assert handle(deps, "U_ALICE", "plan prod-old prod-new").ok
    preflight_passes(deps.store)
    m = deps.store.active_for("prod-old")
    assert m is not None
    deps.store.add_checkpoint(m.id, "db1")
    deps.store.append_event(m.id, _tick())
    deps.store.set_chat_ref(m.id, "channel", "C_DBMIG")
    keys = deps.store.keys.per_migration(m.id) + [deps.store.keys.active("prod-old")]
    assert all(client.ttl(k) == -1 for k in keys)  # running: kept

    assert handle(deps, "U_ALICE", "abort prod-old").ok  # nothing frozen yet: aborted at once
    assert deps.store.get(m.id).state.value == "aborted"  # type: ignore[union-attr]
    deps.store.set_chat_ref(m.id, "status_ts", "123.456")  # the notifier writes after the end: it expires too
    for key in keys:
        assert 2 * 86400 - 60 < client.ttl(key) <= 2 * 86400, key

    assert handle(deps, "U_ALICE", "plan prod-old prod-new").ok  # the server starts over
    assert client.ttl(deps.store.keys.active("prod-old")) == -1
    assert deps.store.active_for("prod-old").id != m.id  # type: ignore[union-attr]


def test_live_ticks_are_capped_and_never_push_a_decision_out_of_the_audit_trail(redis_server):  # type: ignore[no-untyped-def]
    """Hours of copy progress stay within live_events_max; every transition and decision stays in the audit trail."""
    deps = make_deps(redis_server.url)
    deps.store = Store.from_url(redis_server.url, live_events_max=100)
    client = redis.Redis.from_url(redis_server.url)
    assert handle(deps, "U_ALICE", "plan prod-old prod-new").ok
    preflight_passes(deps.store)
    assert handle(deps, "U_ALICE", "freeze prod-old").ok
    assert handle(deps, "U_BOB", "approve prod-old").ok
    m = deps.store.active_for("prod-old")
    assert m is not None
    before = [e.event for e in deps.store.events(m.id) if e.kind in (EventKind.TRANSITION, EventKind.DECISION)]
    for _ in range(5000):
        deps.store.append_event(m.id, _tick())
    assert client.xlen(deps.store.keys.live(m.id)) < 300  # ~100: Redis trims whole nodes
    after = [e.event for e in deps.store.events(m.id) if e.kind in (EventKind.TRANSITION, EventKind.DECISION)]
    assert after == before and "approved" in after
    assert deps.store.latest_live(m.id) is not None


def _tick() -> AuditEvent:
    return AuditEvent(kind=EventKind.PROGRESS, at=datetime.now(UTC), actor="worker:w", step=StepName.COPY,
                      message="copying db.t: 10 MB at 1.0 MB/s", data={"tick": True})
