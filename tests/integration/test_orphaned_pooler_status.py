"""Status shouts when a pooler is recorded as paused and no worker holds the migration's lease: nobody would give
it back, and the app's queries wait on it until an operator acts."""

from __future__ import annotations

from datetime import UTC, datetime

from pgmove.handlers.commands import handle
from pgmove.state import outcome, work
from pgmove.state.models import Lease, Migration, PausedPooler, PoolerBackend, StepName
from tests.integration.helpers import make_deps


def test_status_says_loudly_that_a_paused_pooler_has_no_worker(redis_server):  # type: ignore[no-untyped-def]
    """With a pooler recorded paused mid-repoint and no live lock, status names it, says no worker is alive and
    what to do by hand; once a worker holds the lease, it is the ordinary line again."""
    deps = make_deps(redis_server.url)
    assert handle(deps, "U_ALICE", "plan prod-old prod-new").ok
    m = deps.store.active_for("prod-old")
    assert m is not None
    now = datetime.now(UTC)
    paused = PausedPooler(name="app", databases=["appdb"], paused_at=now, repointed=True,
                          source={"appdb": PoolerBackend(host="10.0.0.5", port=5432, dbname="appdb")})
    lease = Lease(step=StepName.CUTOVER, worker="w1", token="tok-1", started_at=now)

    def orphan(cur: Migration | None) -> outcome.Outcome:
        assert cur is not None
        return work.with_changes(cur, now, "test", "test", poolers_paused=[paused], lease=lease)

    deps.store.update(m.id, orphan)
    text = handle(deps, "U_ALICE", "status prod-old").text
    assert "POOLER APP IS PAUSED (appdb)" in text and "NO WORKER IS ALIVE" in text, text
    assert "point it back at the source (appdb -&gt; 10.0.0.5:5432/appdb), RELOAD, then RESUME appdb" in text, text

    assert deps.store.acquire_lock("prod-old", "tok-1", 30)
    text = handle(deps, "U_ALICE", "status prod-old").text
    assert "pooler app is paused (appdb)" in text and "NO WORKER" not in text, text
