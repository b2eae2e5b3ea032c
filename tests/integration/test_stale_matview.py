"""A materialized view the app has not refreshed since its tables changed: the copy refreshes it on the target
(as pg_dump | pg_restore does), so its rows differ from the source's stale ones, and the verification calls that a
difference. With a live app (the logical method) such views are the rule, and every cutover window gave up on
them: verification compares a view's populated state, not its rows (the tables under it are compared)."""

from __future__ import annotations

import json

import psycopg
import pytest

pytestmark = pytest.mark.slow


def test_a_stale_materialized_view_on_the_source_does_not_fail_the_verification(pgmove, source):  # type: ignore[no-untyped-def]
    """The offline move of a source whose materialized view is stale reaches verified."""
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("CREATE MATERIALIZED VIEW order_count AS SELECT count(*) AS n FROM orders")
        conn.execute("INSERT INTO orders (customer, total) VALUES ('after the refresh', 1)")
    pgmove.start_worker()
    assert json.loads(pgmove.do("U_ALICE", "plan prod-old prod-new", "--wait", "--json").stdout)["state"] == "ready"
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    done = json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)
    assert done["state"] == "verified", (done.get("failure"), (done.get("verification") or {}).get("problems"))
    assert any("1 materialized view(s) refreshed on the target" in n for n in done["verification"]["notes"])
