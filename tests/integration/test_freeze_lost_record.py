"""pgmove's store loses the record of a freeze: the server's own copy keeps a second freeze from recording the
frozen state as the original, and unfreeze still puts the server back exactly."""

from __future__ import annotations

import json

import pytest
import redis

from tests.integration.catalog import customize, snapshot
from tests.integration.test_worker import source_is_frozen

pytestmark = pytest.mark.slow


def test_a_freeze_after_the_store_lost_the_first_one_takes_over_its_record_and_unfreeze_is_exact(pgmove, source, redis_server):  # type: ignore[no-untyped-def]
    """Redis is wiped while prod-old is frozen; a new freeze is refused by what the server carries, takes over the
    record kept there, and the unfreeze that follows restores the catalog as it was before the first freeze."""
    customize(source)
    before = snapshot(source)
    pgmove.start_worker()
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    first = json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)
    assert first["state"] == "frozen", first.get("failure")
    frozen = snapshot(source)

    redis.Redis.from_url(redis_server.url).flushall()  # the store's record of the freeze is gone
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    second = json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)
    assert second["state"] == "failed", "a second freeze went through on a frozen server"
    reason = second["failure"]["reason"]
    assert f"already frozen by pgmove {first['id']}" in reason and "unfreeze prod-old" in reason, reason
    assert second["freeze"]["taken_at"] == first["freeze"]["taken_at"], "the frozen state was recorded as the original"
    assert snapshot(source) == frozen and source_is_frozen(source)

    done = json.loads(pgmove.do("U_ALICE", "unfreeze prod-old", "--wait", "--json").stdout)
    assert done["state"] == "ready" and done["freeze"] is None, done.get("failure")
    assert snapshot(source) == before
