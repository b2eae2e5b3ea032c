"""Recovery paths that work: after a failed verification, retry copies again while the source stays frozen."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.integration.test_source_after_verification import _verified
from tests.integration.test_worker import source_is_frozen

pytestmark = pytest.mark.slow


def _orders(cluster) -> int:  # type: ignore[no-untyped-def]
    with psycopg.connect(cluster.admin_dsn("appdb")) as conn:
        return int(conn.execute("SELECT count(*) FROM public.orders").fetchone()[0])


def test_retry_after_a_failed_verification_copies_again_and_verifies(pgmove, source, target):  # type: ignore[no-untyped-def]
    """Rows lost on the target fail verification; the reply names retry, and retry re-copies them, source frozen."""
    _verified(pgmove)
    with psycopg.connect(target.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("DELETE FROM public.orders WHERE id IN (SELECT id FROM public.orders ORDER BY id LIMIT 5)")
    failed = pgmove.do("U_ALICE", "verify prod-old", "--wait", "--json")
    assert failed.returncode == 1 and json.loads(failed.stdout)["state"] == "verify_failed"
    assert 'pgmove do "retry prod-old" copies everything again' in json.loads(failed.stdout)["text"]
    again = pgmove.do("U_ALICE", "retry prod-old", "--wait", "--json")
    assert again.returncode == 0, again.stderr
    done = json.loads(again.stdout)
    assert done["state"] == "verified", done.get("failure")
    assert _orders(target) == _orders(source) and source_is_frozen(source)
    assert "(frozen -> copying)" in again.stderr and "(copying -> verifying)" in again.stderr
