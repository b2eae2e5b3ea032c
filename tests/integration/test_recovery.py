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


def _databases(cluster) -> set[str]:  # type: ignore[no-untyped-def]
    with psycopg.connect(cluster.admin_dsn("postgres")) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")}


def test_abort_offers_and_drops_only_the_target_databases_pgmove_created(pgmove, source, target):  # type: ignore[no-untyped-def]
    """The status offers --drop-created; the abort unfreezes the source and drops what the copy created, and
    leaves the target's own databases alone."""
    before = _databases(target)
    verified = _verified(pgmove)
    created = set(verified["created_target_databases"])
    assert created and created <= _databases(target) and not created & before
    status = pgmove.do("U_ALICE", "status prod-old").stdout
    assert f"pgmove created {', '.join(verified['created_target_databases'])} on prod-new" in status
    assert 'pgmove do "abort prod-old --drop-created" drops them with the abort' in status
    done = pgmove.do("U_ALICE", "abort prod-old --drop-created", "--wait", "--json")
    aborted = json.loads(done.stdout)
    assert done.returncode == 0 and aborted["state"] == "aborted", done.stderr
    assert aborted["created_target_databases"] == [] and _databases(target) == before
    assert not source_is_frozen(source)
    assert any(line.endswith("pgmove created it for this migration") for line in done.stderr.splitlines()), done.stderr
