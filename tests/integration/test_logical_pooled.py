"""The logical method's one-approval window through a real PgBouncer: the app waits in its pooler from before the
freeze to after the switch, so a probe committing every 10 ms sees no error and every write it was told of is on
the target."""

from __future__ import annotations

import psycopg
import pytest

from pgmove.sandbox.servers import wait_until
from tests.integration.test_logical_flow import do_json, zero_leftovers
from tests.integration.test_pooler import Probe

pytestmark = pytest.mark.slow


def test_a_probe_through_pgbouncer_sees_no_error_across_the_logical_window(pgmove_pooled, source, target, pgbouncer, passwords):  # type: ignore[no-untyped-def]
    """plan --method logical, sync, cutover with one approval: the probe's reads and inserts through transaction
    pooling never fail, each acknowledged insert is on the target, later ones land there, and nothing is left
    paused or replicating."""
    pgmove_pooled.start_worker()
    probe = Probe(pgbouncer.dsn("app", "appdb"), passwords.app)
    probe.start()
    try:
        wait_until(lambda: len(probe.acked) >= 20, 20, "the probe's first writes")
        assert do_json(pgmove_pooled, "U_ALICE", "plan prod-old prod-new --method logical")["state"] == "ready"
        synced = do_json(pgmove_pooled, "U_ALICE", "sync prod-old")
        assert synced["state"] == "in_sync", synced.get("failure")
        assert do_json(pgmove_pooled, "U_ALICE", "cutover prod-old --window 20s", wait=False)["state"] == \
            "awaiting_cutover_approval"
        final = do_json(pgmove_pooled, "U_BOB", "approve prod-old")
        assert final["state"] == "cut_over", final.get("failure")
        seen = len(probe.acked)
        wait_until(lambda: len(probe.acked) >= seen + 20, 20, "the probe's writes after the switch")
    finally:
        probe.stop.set()
        probe.join()
    assert probe.errors == [], probe.errors[:3]
    with psycopg.connect(target.admin_dsn("appdb")) as conn:
        on_target = {r[0] for r in conn.execute("SELECT id FROM orders WHERE customer = 'probe'").fetchall()}
    assert {i for i, _ in probe.acked} <= on_target, "an acknowledged write is missing on the target"
    assert {port for _, port in probe.acked[:5]} == {source.port}
    assert {port for _, port in probe.acked[-5:]} == {target.port}
    assert pgbouncer.database("appdb")["paused"] == 0 and final["poolers_paused"] == []
    assert zero_leftovers(source, target, passwords) == {}
    switch = next(s for s in final["steps"] if s["name"] == "switch")
    paused = switch["result"]["poolers"]["app"]["paused_seconds"]
    p99 = sorted(probe.latencies)[int(len(probe.latencies) * 0.99)]
    print(f"logical window through pgbouncer: paused {paused:.3f}s, probe p99 {p99:.3f}s, max "
          f"{max(probe.latencies):.3f}s, {len(probe.acked)} writes, 0 errors")
