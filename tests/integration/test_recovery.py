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


def test_a_plan_after_an_abort_that_left_databases_says_whose_they_are_and_how_to_clear_them(  # type: ignore[no-untyped-def]
        pgmove, source, target):
    """An abort without --drop-created leaves appdb on the target; the next plan to it names the migration that
    created it and the statement that clears it, and tells a colliding database of someone else's apart; done
    as it says, the plan is ready."""
    for cluster in (source, target):
        cluster.psql("-c", "CREATE DATABASE theirs")
    verified = _verified_only(pgmove, "appdb")
    aborted = pgmove.do("U_ALICE", "abort prod-old", "--wait", "--json")
    assert aborted.returncode == 0 and json.loads(aborted.stdout)["state"] == "aborted", aborted.stderr
    assert "a later plan to prod-new is refused while they exist" in json.loads(aborted.stdout)["text"]

    planned = pgmove.do("U_ALICE", "plan prod-old prod-new", "--wait", "--json")
    said = json.loads(planned.stdout)
    assert planned.returncode == 1 and said["state"] == "failed" and said["id"] != verified["id"], said
    problems = said["preflight"]["problems"]
    mine = next(p for p in problems if "named appdb" in p)
    assert f"created by pgmove's migration {verified['id']} (prod-old -> prod-new, aborted) and left there" in mine
    assert 'clear it on prod-new as a superuser (DROP DATABASE "appdb" WITH (FORCE))' in mine, mine
    theirs = next(p for p in problems if "named theirs" in p)
    assert "that no pgmove migration recorded creating: it is someone else's" in theirs and "--databases" in theirs, theirs
    assert f"problem: {mine}" in said["text"] and f"problem: {theirs}" in said["text"], said["text"]

    with psycopg.connect(target.admin_dsn("postgres"), autocommit=True) as conn:
        conn.execute(mine.split("superuser (")[1].split(")")[0] + ")")  # the statement as the sentence gives it
    again = pgmove.do("U_ALICE", "plan prod-old prod-new --databases appdb", "--wait", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["state"] == "ready", again.stdout


def _verified_only(pgmove, database: str) -> dict:  # type: ignore[type-arg,no-untyped-def]
    """Plan, freeze and copy only `database`: verified."""
    pgmove.start_worker()
    done = pgmove.do("U_ALICE", f"plan prod-old prod-new --databases {database}", "--wait")
    assert done.returncode == 0, done.stderr
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    verified = json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)
    assert verified["state"] == "verified", verified.get("failure")
    return verified  # type: ignore[no-any-return]
