"""Attacks on the target's guards while it follows the source: writes that need no table must be refused too, or
the early split brain they were built against comes back through a side door."""

from __future__ import annotations

import sys
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgmove.sandbox.servers import wait_until
from tests.integration.test_logical_flow import do_json, zero_leftovers
from tests.integration.test_target_guard import MOVED, guard_objects, in_sync

pytestmark = pytest.mark.slow
REFUSED = (psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InsufficientPrivilege)


def window_with_a_failing_hook(pgmove, said: str) -> tuple[dict, Any, str]:  # type: ignore[no-untyped-def, type-arg]
    """In sync, then a one-approval window whose cutover hook says `said` and exits 3: the failed record, the hook's
    path and its working text (to put back)."""
    hook = pgmove.config_path.parent / "switch-app"
    working = hook.read_text()
    hook.write_text(f"#!{sys.executable}\nimport sys\nprint({said!r})\nsys.exit(3)\n")
    pgmove.start_worker()
    in_sync(pgmove)
    assert do_json(pgmove, "U_ALICE", "cutover prod-old --window 60s", wait=False)["state"] == \
        "awaiting_cutover_approval"
    return do_json(pgmove, "U_BOB", "approve prod-old"), hook, working


def test_the_app_cannot_write_a_large_object_on_the_target_while_in_sync(pgmove, target, passwords):  # type: ignore[no-untyped-def]
    """A large object lives in no user table, so no statement trigger sees it. Written on the target while in sync,
    the app is told it is stored; the drain's finish then unlinks every object the source lacks, so at the cutover
    it is gone without a word (and the window's verification, run after that finish, cannot see it). The target
    must refuse it, as the frozen source does (guards.LARGE_OBJECT_WRITERS)."""
    pgmove.start_worker()
    in_sync(pgmove)
    with psycopg.connect(target.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as app:
        with pytest.raises(REFUSED):
            app.execute("SELECT lo_from_bytea(0, 'early split brain'::bytea)")
        with pytest.raises(REFUSED):
            app.execute("SELECT lo_create(0)")



def test_a_failing_hook_leaves_the_target_open_and_the_approved_unfreeze_leaves_it_clean(  # type: ignore[no-untyped-def]
        pgmove, source, target, passwords):
    """The window opens the target for the app right before the hook. A hook that fails may have switched part of
    the app already, so the target must stay writable for it while the migration waits for a decision (the source
    stays frozen); the unfreeze a second person approves then gives writes back to the source and leaves neither
    guard nor replication object on the target."""
    failed = window_with_a_failing_hook(pgmove, "the load balancer said no")[0]
    assert failed["state"] == "failed" and "status 3" in failed["failure"]["reason"], failed.get("failure")
    with psycopg.connect(target.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as app:
        app.execute("INSERT INTO orders (id, customer, total) VALUES (990002, 'switched by the failed hook', 1)")
    assert do_json(pgmove, "U_ALICE", "unfreeze prod-old", wait=False)["state"] == "awaiting_unfreeze_approval"
    back = do_json(pgmove, "U_BOB", "approve prod-old")
    assert back["state"] not in ("failed", "cut_over"), (back["state"], back.get("failure"))
    assert {db: guard_objects(target, db) for db in MOVED} == {db: 0 for db in MOVED}
    assert zero_leftovers(source, target, passwords) == {}
    with psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as app:
        app.execute("INSERT INTO orders (customer, total) VALUES ('source writable again', 1)")


def test_a_table_made_on_the_target_while_in_sync_refuses_the_app_too(pgmove, source, target, passwords):  # type: ignore[no-untyped-def]
    """The monitor's advice for a schema change on the source is to make the same change on the target; past the
    DDL guard that takes the documented override (a superuser in replica mode). A table so made must be guarded like
    every other, or the app writes rows into it on the target that the source never had."""
    pgmove.start_worker()
    in_sync(pgmove)
    for cluster in (source, target):
        with psycopg.connect(cluster.admin_dsn("appdb"), autocommit=True) as admin:
            if cluster is target:
                admin.execute("SET session_replication_role = replica")  # the documented override, past the DDL guard
            admin.execute("CREATE TABLE made_in_sync (id int PRIMARY KEY, note text)")
            admin.execute("CREATE TABLE made_in_sync_parted (id int, note text) PARTITION BY RANGE (id)")
            admin.execute("CREATE TABLE made_in_sync_part PARTITION OF made_in_sync_parted FOR VALUES FROM (0) TO (100)")
            admin.execute("GRANT ALL ON made_in_sync, made_in_sync_parted, made_in_sync_part TO app")
    with psycopg.connect(target.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as app:
        for table in ("made_in_sync", "made_in_sync_parted", "made_in_sync_part"):
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                app.execute(sql.SQL("INSERT INTO {} VALUES (1, 'early split brain')").format(sql.Identifier(table)))
    aborted = do_json(pgmove, "U_ALICE", "abort prod-old")
    assert aborted["state"] == "aborted", aborted.get("failure")
    assert {db: guard_objects(target, db) for db in MOVED} == {db: 0 for db in MOVED}
    assert zero_leftovers(source, target, passwords) == {}


def test_a_worker_killed_during_the_cutover_hook_leaves_the_target_open_and_retry_cuts_over_without_guards(  # type: ignore[no-untyped-def]
        pgmove, source, target, passwords, tmp_path):
    """SIGKILL of the worker while the cutover hook runs, that is after the target was opened for the app: the app
    may be on the target already, so it must take the app's writes while the migration waits for a decision, and the
    retry (the hook succeeding this time) cuts over leaving no guard in any moved database."""
    hook, started = pgmove.config_path.parent / "switch-app", tmp_path / "hook-started"
    hook.write_text(f"#!{sys.executable}\nimport os, sys, time\n"
                    f"if os.path.exists({str(started)!r}):\n    print('app switched'); sys.exit(0)\n"
                    f"open({str(started)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)\n")
    doomed = pgmove.start_worker("doomed")
    in_sync(pgmove)
    assert do_json(pgmove, "U_ALICE", "cutover prod-old --window 60s", wait=False)["state"] == \
        "awaiting_cutover_approval"
    do_json(pgmove, "U_BOB", "approve prod-old", wait=False)
    wait_until(started.exists, 60, "the cutover hook started")
    pgmove.kill_worker(doomed)
    pgmove.start_worker("second")
    failed = do_json(pgmove, "U_ALICE", "status prod-old")
    assert failed["state"] == "failed", (failed["state"], failed.get("failure"))
    with psycopg.connect(target.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as app:
        app.execute("INSERT INTO orders (id, customer, total) VALUES (990003, 'moved by the killed hook', 1)")
    done = do_json(pgmove, "U_ALICE", "retry prod-old")
    assert done["state"] == "cut_over", (done["state"], done.get("failure"))
    assert {db: guard_objects(target, db) for db in MOVED} == {db: 0 for db in MOVED}


def test_the_retry_after_a_failed_hook_does_not_rewind_the_sequences_the_app_used_on_the_target(  # type: ignore[no-untyped-def]
        pgmove, source, target, passwords):
    """A failed hook may have moved part of the app to the target, which is open for it from then on. Its inserts
    there take ids from the target's sequences; the retry must not set those back to the frozen source's values,
    or the app's next insert after the cutover collides with a row it wrote itself."""
    failed, hook, working = window_with_a_failing_hook(pgmove, "half the app switched")
    assert failed["state"] == "failed", failed.get("failure")
    with psycopg.connect(target.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as app:
        for _ in range(3):
            app.execute("INSERT INTO orders (customer, total) VALUES ('on the target after the failed hook', 1)")
    hook.write_text(working)
    done = do_json(pgmove, "U_ALICE", "retry prod-old")
    assert done["state"] == "cut_over", (done["state"], done.get("failure"))
    with psycopg.connect(target.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as app:
        app.execute("INSERT INTO orders (customer, total) VALUES ('after the cutover', 1)")


def test_a_table_locked_on_the_target_at_the_cutover_keeps_a_harmless_guard_that_is_named(  # type: ignore[no-untyped-def]
        pgmove, target, passwords):
    """A reader holding a table of the target through the cutover: the guard's removal gives up on that table
    instead of queuing the app behind it. The cutover stands, the app writes that very table at once (the guard
    lets everything through by then), and what is left is named with how to remove it by hand."""
    pgmove.start_worker()
    in_sync(pgmove)
    with psycopg.connect(target.tcp_dsn("app", "appdb"), password=passwords.app) as reader:
        reader.execute("SELECT count(*) FROM orders")  # its transaction stays open: ACCESS SHARE until the end
        assert do_json(pgmove, "U_ALICE", "cutover prod-old --window 30s", wait=False)["state"] == \
            "awaiting_cutover_approval"
        final = do_json(pgmove, "U_BOB", "approve prod-old")
        assert final["state"] == "cut_over", final.get("failure")
        with psycopg.connect(target.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as app:
            app.execute("INSERT INTO orders (customer, total) VALUES ('while the reader holds orders', 1)")
        said = " ".join(str(s.get("message")) for s in final["steps"])
        assert "NOT fully removed" in said and "orders" in said and "DROP TRIGGER" in said, said
        reader.rollback()
    assert guard_objects(target, "appdb") > 0  # left, as said
    assert guard_objects(target, "pagila") == 0
