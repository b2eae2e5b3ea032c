"""The frozen source after verification: a write past the freeze refuses the cutover, and a cut-over source is never
unfrozen on one person's word, even after its migration expired from Redis."""

from __future__ import annotations

import json

import psycopg
import pytest
import redis

from pgmove.state.store import Store
from pgmove.steps import handover
from pgmove.steps.connect import Endpoint
from tests.integration.catalog import snapshot
from tests.integration.test_worker import source_is_frozen

pytestmark = pytest.mark.slow
LATE_ROW = "INSERT INTO public.orders (id, customer, total) VALUES (900001, 'late', 1)"


def _superuser(cluster, db: str, *statements: str) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(cluster.admin_dsn(db), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _late_row_on(cluster) -> bool:  # type: ignore[no-untyped-def]
    with psycopg.connect(cluster.admin_dsn("appdb")) as conn:
        return conn.execute("SELECT count(*) FROM public.orders WHERE id = 900001").fetchone()[0] == 1


def _records(cluster) -> dict[str, dict]:  # type: ignore[type-arg,no-untyped-def]
    """The freeze record each database keeps on the server, by database."""
    found = {}
    with psycopg.connect(cluster.admin_dsn("postgres")) as conn:
        databases = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datallowconn")]
    for db in databases:
        with psycopg.connect(cluster.admin_dsn(db)) as conn:
            row = conn.execute("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace "
                               "WHERE nspname = '_pgmove_freeze'").fetchone()
            if row is not None and row[0]:
                found[db] = json.loads(row[0])
    return found


def _verified(pgmove) -> dict:  # type: ignore[type-arg,no-untyped-def]
    pgmove.start_worker()
    assert pgmove.do("U_ALICE", "plan prod-old prod-new", "--wait").returncode == 0
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    verified = json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)
    assert verified["state"] == "verified", verified.get("failure")
    return verified  # type: ignore[no-any-return]


def _cut_over(pgmove) -> dict:  # type: ignore[type-arg,no-untyped-def]
    assert pgmove.do("U_ALICE", "cutover prod-old").returncode == 0
    return json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)  # type: ignore[no-any-return]


def test_a_write_past_the_freeze_after_verification_refuses_the_cutover_until_a_new_copy(pgmove, source, target, passwords, redis_server):  # type: ignore[no-untyped-def]
    """A superuser writes to the frozen source after verification: the approved cutover refuses by name before the
    target or the hook is touched, a second try without a new copy refuses again, and `retry` re-copies the row."""
    verified = _verified(pgmove)
    _superuser(source, "appdb", "SET session_replication_role = replica", f"BEGIN READ WRITE; {LATE_ROW}; COMMIT")

    refused = _cut_over(pgmove)
    assert refused["state"] == "failed" and refused["failure"]["step"] == "cutover", refused.get("failure")
    reason = refused["failure"]["reason"]
    assert "Cutover refused" in reason and "appdb: public.orders: rows written by 1 transaction" in reason, reason
    assert "Nothing was changed on prod-new" in reason and "retry prod-old" in reason, reason
    assert not pgmove.hook_output.exists(), "the cutover hook ran"
    assert refused["hook"] is None and not _late_row_on(target) and source_is_frozen(source)
    assert not any(r.get("cut_over") for r in _records(source).values()), "the source was marked as cut over"
    # The baseline the verification used is kept: the cutover, run again on this record, refuses again.
    assert (refused["quiet_baseline"], refused["quiet_mark"]) == (verified["quiet_baseline"], verified["quiet_mark"])
    m = Store.from_url(redis_server.url).get(refused["id"])
    assert m is not None and m.quiet_baseline is not None and m.quiet_mark is not None
    src = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",))
    with pytest.raises(handover.SourceMoved, match="appdb: public.orders"):
        handover.prove_quiet(src, "prod-new", m.id, m.quiet_baseline, m.quiet_mark, ["appdb", "archive", "pagila"],
                             lambda *a, **k: None)
    again = pgmove.do("U_ALICE", "cutover prod-old")
    assert again.returncode == 2, again.stdout

    recopied = json.loads(pgmove.do("U_ALICE", "retry prod-old", "--wait", "--json").stdout)
    assert recopied["state"] == "verified", recopied.get("failure")
    assert _late_row_on(target)
    done = _cut_over(pgmove)
    assert done["state"] == "cut_over", done.get("failure")
    assert pgmove.hook_output.exists() and _late_row_on(target)


def test_a_cut_over_source_is_not_taken_over_by_a_freeze_after_its_migration_expired(pgmove, source, redis_server):  # type: ignore[no-untyped-def]
    """After cutover the server's freeze record says so in every database; once Redis forgot the migration, a new
    freeze is refused by name, takes nothing over, and one person cannot unfreeze the old server."""
    _verified(pgmove)
    done = _cut_over(pgmove)
    assert done["state"] == "cut_over", done.get("failure")
    records = _records(source)
    assert set(records) >= {"postgres", "appdb", "archive", "pagila"}, records
    assert all(r["cut_over"]["target"] == "prod-new" and r["cut_over"]["migration_id"] == done["id"]
               for r in records.values()), records

    keys = Store.from_url(redis_server.url).keys
    redis.Redis.from_url(redis_server.url).delete(*keys.per_migration(done["id"]), keys.active("prod-old"))  # expired
    before = snapshot(source)
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    refused = json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)
    assert refused["state"] == "failed" and refused["freeze"] is None, "the cut-over freeze was taken over"
    reason = refused["failure"]["reason"]
    assert f"was cut over to prod-new by pgmove {done['id']}" in reason and "two people" in reason, reason
    unfreeze = pgmove.do("U_ALICE", "unfreeze prod-old")
    assert unfreeze.returncode == 2, unfreeze.stdout
    assert source_is_frozen(source) and snapshot(source) == before and _records(source) == records

    # The README's procedure: a superuser removes only the cut-over mark; then the approved freeze takes the record
    # over and the unfreeze restores the server.
    for db in records:
        _superuser(source, db, "SET default_transaction_read_only = off", "SET session_replication_role = replica",
                   "DO $$ BEGIN EXECUTE format('COMMENT ON SCHEMA _pgmove_freeze IS %L', (obj_description("
                   "'_pgmove_freeze'::regnamespace, 'pg_namespace')::jsonb - 'cut_over')::text); END $$")
    assert pgmove.do("U_ALICE", "retry prod-old").returncode == 0
    taken = json.loads(pgmove.do("U_ALICE", "status prod-old", "--wait", "--json").stdout)
    assert taken["state"] == "failed" and taken["freeze"] is not None, taken.get("failure")
    back = json.loads(pgmove.do("U_ALICE", "unfreeze prod-old", "--wait", "--json").stdout)
    assert back["state"] == "ready", back.get("failure")
    assert not source_is_frozen(source)


def test_a_cutover_retried_after_its_hook_failed_is_not_refused_by_its_own_cut_over_mark(pgmove, source, tmp_path):  # type: ignore[no-untyped-def]
    """The first attempt marks the source's record cut over, then the hook fails; the retry's quiet check knows those
    marks are pgmove's own and the cutover goes through."""
    ready = tmp_path / "app-ready"
    hook = tmp_path / "switch-app"  # the fixture's configured hook, replaced
    hook.write_text(f"#!/bin/sh\n[ -e {ready} ] || {{ echo 'app not ready' >&2; exit 3; }}\necho 'app switched'\n")
    _verified(pgmove)
    failed = _cut_over(pgmove)
    assert failed["state"] == "failed" and failed["failure"]["step"] == "cutover", failed.get("failure")
    assert "exited with status 3" in failed["failure"]["reason"]
    assert all(r.get("cut_over") for r in _records(source).values())
    ready.touch()
    done = json.loads(pgmove.do("U_ALICE", "retry prod-old", "--wait", "--json").stdout)
    assert done["state"] == "cut_over", done.get("failure")
