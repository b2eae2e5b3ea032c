"""The holes a hostile review found in the freeze, each closed: shared objects, prepared transactions,
subscriptions, an unfreeze after renames and drops, and a freeze that the server itself remembers."""

from __future__ import annotations

import subprocess

import psycopg
import pytest
from psycopg import sql

from pgmove.sandbox.servers import wait_until
from pgmove.state.errors import StepFailed
from pgmove.state.models import FreezeMode
from pgmove.steps import freeze, freezerecord, freezeroles, guards, preflight
from pgmove.steps.connect import Endpoint
from pgmove.steps.roles import copy_roles
from tests.integration.catalog import customize, snapshot
from tests.integration.freezeworld import (
    Events,
    allow_prepared_transactions,
    apply_worker_running,
    fed,
    prepare,
    publish,
    slot_active,
    subscribe,
)

pytestmark = pytest.mark.slow
LABEL = "prod-old is frozen for its move to prod-new (pgmove test)"


@pytest.fixture
def src(source, passwords) -> Endpoint:  # type: ignore[no-untyped-def]
    return Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",))


def admin(cluster, db="postgres"):  # type: ignore[no-untyped-def]
    conn = psycopg.connect(cluster.admin_dsn(db), autocommit=True)
    conn.execute("SET default_transaction_read_only = off")  # a superuser acting on purpose, past the freeze's default
    return conn


def as_app(source, passwords, db="appdb"):  # type: ignore[no-untyped-def]
    conn = psycopg.connect(source.tcp_dsn("app", db), password=passwords.app, autocommit=True)
    conn.execute("SET default_transaction_read_only = off")  # what a determined app does first
    return conn


def test_createdb_and_createrole_are_taken_from_every_non_superuser_and_given_back_exactly(source, target, passwords, src):  # type: ignore[no-untyped-def]
    """No event trigger sees databases or roles: the freeze takes CREATEDB/CREATEROLE, the copy carries the originals."""
    with admin(source) as conn:
        conn.execute("ALTER ROLE app CREATEDB CREATEROLE")
        conn.execute("ALTER ROLE reporter CREATEDB")
        conn.execute("ALTER ROLE readers CREATEROLE")
    before = snapshot(source)
    snap = freeze.capture(src, FreezeMode.READ_ONLY, LABEL)
    result = freeze.apply(src, snap, 0.5, Events())
    assert result["role_grants_taken"] == ["app", "readers", "reporter"]
    with admin(source) as conn:
        powers = dict(conn.execute("SELECT rolname, rolcreatedb OR rolcreaterole FROM pg_roles "
                                   "WHERE rolname IN ('app', 'reporter', 'readers')").fetchall())
    assert powers == {"app": False, "reporter": False, "readers": False}
    with as_app(source, passwords) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE DATABASE sneaky")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE ROLE sneaky LOGIN")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("ALTER ROLE reporter PASSWORD 'taken over'")

    with psycopg.connect(src.conninfo(), password=src.password) as s, admin(target) as d:
        copy_roles(s, d, freezeroles.before_freeze(snap), with_passwords=False)
        copied = dict((r[0], (r[1], r[2])) for r in d.execute(
            "SELECT rolname, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname IN ('app', 'reporter', 'readers')"))
    assert copied == {"app": (True, True), "reporter": (True, False), "readers": (False, True)}, "the freeze reached the target"

    freeze.unfreeze(src, snap, Events())
    assert snapshot(source) == before
    with as_app(source, passwords) as conn:
        conn.execute("CREATE DATABASE after_unfreeze")
        conn.execute("DROP DATABASE after_unfreeze")


def test_prepared_transactions_get_the_grace_period_then_are_rolled_back_before_the_guards(source, passwords, src):  # type: ignore[no-untyped-def]
    """One holds a table lock (the guards could never go in), one created a table (unguarded if committed):
    preflight lists them, the freeze names them, waits the grace period, rolls them back, and their gids are gone."""
    allow_prepared_transactions(source)
    prepare(source, "app", passwords.app, "order-import-7", "INSERT INTO orders (customer) VALUES ('prepared')")
    prepare(source, "app", passwords.app, "ddl-1", "CREATE TABLE public.late_table (x int)")
    report = preflight.run(src, None, None, [], None, Events())
    assert any("order-import-7" in w and "ddl-1" in w and "rolls them back" in w for w in report.warnings), report.warnings

    events = Events()
    snap = freeze.capture(src, FreezeMode.READ_ONLY, LABEL)
    result = freeze.apply(src, snap, 1.0, events, lock_timeout_s=5)
    gone = {x["gid"]: x for x in result["prepared_rolled_back"]}
    assert set(gone) == {"order-import-7", "ddl-1"}
    assert gone["ddl-1"]["owner"] == "app" and gone["ddl-1"]["database"] == "appdb" and "grace period" in gone["ddl-1"]["reason"]
    assert any("get 1s to be committed" in m and "order-import-7" in m for m in events.messages)
    with as_app(source, passwords) as conn:
        for gid in ("order-import-7", "ddl-1"):
            with pytest.raises(psycopg.errors.UndefinedObject):
                conn.execute(sql.SQL("COMMIT PREPARED {}").format(gid))
        assert conn.execute("SELECT count(*) FROM orders WHERE customer = 'prepared'").fetchone()[0] == 0
        assert conn.execute("SELECT to_regclass('public.late_table')").fetchone()[0] is None
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO orders (customer) VALUES ('x')")


def test_a_guard_that_cannot_take_its_lock_undoes_the_whole_freeze_and_names_the_holder(source, passwords, src):  # type: ignore[no-untyped-def]
    """A session born during the freeze holds a lock the write guards need: the freeze says who, and leaves
    the source exactly as it was (no half-frozen server), its on-server record included."""
    customize(source)
    before = snapshot(source)
    holder: list[psycopg.Connection] = []

    def progress(message: str, **data: object) -> None:
        if "now start read-only" in message and not holder:
            conn = psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True,
                                   application_name="batch-loader")
            conn.execute("BEGIN READ WRITE")
            conn.execute("LOCK TABLE orders IN SHARE MODE")  # not DDL: no event trigger stops it
            holder.append(conn)

    snap = freeze.capture(src, FreezeMode.READ_ONLY, LABEL)
    with pytest.raises(StepFailed) as failed:
        freeze.apply(src, snap, 0.5, progress, lock_timeout_s=1)
    message = failed.value.message
    assert "could not lock public.orders in appdb" in message and "of app (batch-loader)" in message, message
    assert "undone" in message and "takes writes as before" in message, message
    holder[0].close()
    assert snapshot(source) == before
    with as_app(source, passwords) as conn:
        conn.execute("INSERT INTO orders (customer) VALUES ('after the failed freeze')")
    freeze.apply(src, snap, 0.5, Events())  # the retry, with the same record, now goes through


def test_subscriptions_on_the_source_are_disabled_while_frozen_and_enabled_again_as_they_were(source, target, passwords, src):  # type: ignore[no-untyped-def]
    """An apply worker writes past every guard (replica mode): the freeze disables it and unfreeze enables it;
    one that was disabled before stays disabled, and what was published meanwhile arrives after the unfreeze."""
    subscribe(source, target, passwords)
    before = snapshot(source)
    report = preflight.run(src, None, None, [], None, Events())
    assert any("feed_sub (in appdb, enabled)" in w and "idle_sub (in appdb, disabled)" in w for w in report.warnings)

    snap = freeze.capture(src, FreezeMode.READ_ONLY, LABEL)
    result = freeze.apply(src, snap, 0.5, Events())
    assert result["subscriptions_disabled"] == ["feed_sub"]
    assert not apply_worker_running(source, "feed_sub")
    # Once the publisher's slot has no reader, nothing published can reach the source: no timing involved.
    wait_until(lambda: not slot_active(target, "feed_sub"), 30, "the publisher's walsender for feed_sub to stop")
    publish(target, 2, "during the freeze")
    assert not fed(source, 2), "the subscription applied a row into the frozen source"
    assert not slot_active(target, "feed_sub")

    done = freeze.unfreeze(src, snap, Events())
    assert done["subscriptions_enabled"] == ["feed_sub"]
    assert snapshot(source) == before
    wait_until(lambda: fed(source, 2), 30, "the row published during the freeze to arrive after it")


def test_unfreeze_finishes_when_roles_and_databases_were_renamed_or_dropped_meanwhile(source, passwords, src):  # type: ignore[no-untyped-def]
    """Recorded by oid: a renamed role or database is restored under its new name, a dropped one is reported,
    and the unfreeze (and any retry of it) finishes."""
    customize(source)
    with admin(source) as conn:
        conn.execute("CREATE ROLE temp_worker LOGIN CREATEDB")
    before = snapshot(source)
    snap = freeze.capture(src, FreezeMode.NO_CONNECT, LABEL)
    freeze.apply(src, snap, 0.5, Events())
    with admin(source) as conn:  # a superuser tidying up during the freeze
        conn.execute("ALTER ROLE app RENAME TO app_renamed")
        conn.execute("ALTER DATABASE archive RENAME TO archive_old")
        conn.execute("DROP ROLE temp_worker")

    events = Events()
    result = freeze.unfreeze(src, snap, events)
    assert set(result["changed"]) == {
        "role app was renamed to app_renamed during the freeze: restored under its new name",
        "database archive was renamed to archive_old during the freeze: restored under its new name",
        "role temp_worker was dropped during the freeze: what the freeze changed on it is gone with it"}
    assert "changed during the freeze" in events.messages[-1]
    freeze.unfreeze(src, snap, Events())  # a retry finishes too

    with admin(source) as conn:
        conn.execute("ALTER ROLE app_renamed RENAME TO app")
        conn.execute("ALTER DATABASE archive_old RENAME TO archive")
    after = snapshot(source)
    before["roles"] = [r for r in before["roles"] if r[0] != "temp_worker"]
    assert after == before
    with as_app(source, passwords) as conn:
        conn.execute("INSERT INTO orders (customer) VALUES ('back')")


def test_the_server_remembers_its_freeze_and_refuses_a_second_one(source, passwords, src):  # type: ignore[no-untyped-def]
    """The record lives on the server too: another freeze is refused by name, this freeze's own retry gets the
    original record back, and nothing of the record survives into a dump that the copy restores."""
    customize(source)
    before = snapshot(source)
    snap = freeze.capture(src, FreezeMode.READ_ONLY, LABEL, "m-first")
    freeze.apply(src, snap, 0.5, Events())
    with psycopg.connect(src.conninfo("pagila"), password=src.password) as conn:
        found = freezerecord.read(conn, "pagila")
    assert found is not None and found.record == snap

    with pytest.raises(freezerecord.AlreadyFrozen, match="already frozen by pgmove m-first since"):
        freeze.capture(src, FreezeMode.READ_ONLY, LABEL, "m-second")
    assert freeze.capture(src, FreezeMode.READ_ONLY, LABEL, "m-first") == snap, "a retry re-recorded the frozen state"
    other = snap.model_copy(update={"freeze_id": "m-second"})
    frozen = snapshot(source)
    with pytest.raises(freezerecord.AlreadyFrozen):
        freeze.apply(src, other, 0.5, Events())
    assert snapshot(source) == frozen, "a refused freeze changed something (or undid the first one)"

    dump = subprocess.run([str(source.bin_dir / "pg_dump"), "-Fc", "-d", src.conninfo("appdb"), "-f", "/dev/stdout"],
                          env={"PGPASSWORD": passwords.source_pgmove}, capture_output=True)
    listing = subprocess.run([str(source.bin_dir / "pg_restore"), "-l"], input=dump.stdout, capture_output=True).stdout
    kept = [line for line in listing.decode().splitlines()
            if line and not line.startswith(";") and not guards.RESTORE_EXCLUDE.match(line)]
    assert [line for line in kept if guards.SCHEMA in line or "pgmove_freeze" in line] == []

    with admin(source, "appdb") as conn:  # guards whose record is gone (an older pgmove): still refused
        conn.execute("SET session_replication_role = replica")  # the superuser's override of the DDL guard
        conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS NULL").format(sql.Identifier(guards.SCHEMA)))
    with pytest.raises(freezerecord.AlreadyFrozen, match="with no record of what they replaced"):
        freeze.capture(src, FreezeMode.READ_ONLY, LABEL, "m-first")
    freeze.unfreeze(src, snap, Events())
    assert snapshot(source) == before
    freeze.capture(src, FreezeMode.READ_ONLY, LABEL, "m-second")  # unfrozen: a new freeze may begin
