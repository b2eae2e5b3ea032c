"""The freeze against a hostile app: a non-superuser that owns its tables and has CREATEDB and CREATEROLE, a
transaction it prepared before the freeze, and a subscription applying into the source. Every write path fails,
every read works, and unfreeze gives back the catalog exactly, role attributes included."""

from __future__ import annotations

import psycopg
import pytest

from pgmove.sandbox.servers import wait_until
from pgmove.state.models import FreezeMode
from pgmove.steps import freeze
from pgmove.steps.connect import Endpoint
from tests.integration.catalog import customize, snapshot
from tests.integration.freezeworld import (
    Events,
    allow_prepared_transactions,
    fed,
    prepare,
    publish,
    slot_active,
    subscribe,
)
from tests.integration.test_freeze import LABEL, WRITES

pytestmark = pytest.mark.slow

# Writes no table trigger or event trigger sees: shared objects, two-phase commit, the subscribed table.
SHARED_WRITES = [
    ("a create database", "CREATE DATABASE sneaky"),
    ("a create role", "CREATE ROLE sneaky LOGIN PASSWORD 'x'"),
    ("another role's password", "ALTER ROLE reporter PASSWORD 'taken over'"),
    ("another role's attributes", "ALTER ROLE reporter CONNECTION LIMIT 1"),
    ("renaming another role", "ALTER ROLE readers RENAME TO readers2"),
    ("granting oneself a role", "GRANT readers TO app"),
    ("committing the transaction prepared before the freeze", "COMMIT PREPARED 'app-2pc'"),
    ("preparing a new write", "BEGIN READ WRITE; INSERT INTO orders (customer) VALUES ('2pc'); PREPARE TRANSACTION 'new'"),
    ("a write to the subscribed table", "BEGIN READ WRITE; INSERT INTO feed VALUES (99, 'x'); COMMIT"),
]


def attempt(source, passwords, statement, db: str = "appdb", default_off: bool = False) -> psycopg.Error | None:  # type: ignore[no-untyped-def]
    """Run one write path as the app, the way a determined app would; the error it met, if any."""
    with psycopg.connect(source.tcp_dsn("app", db), password=passwords.app, autocommit=True) as conn:
        try:
            if default_off:
                conn.execute("SET default_transaction_read_only = off")  # shared-object commands refuse read-only
            for step in statement if isinstance(statement, tuple) else (statement,):
                if step is None:
                    with conn.cursor().copy("COPY orders (customer) FROM STDIN") as copy:
                        copy.write_row(("copied",))
                else:
                    conn.execute(step)
        except psycopg.Error as exc:
            return exc
    return None


def test_a_hostile_app_cannot_write_anywhere_during_the_freeze_and_unfreeze_is_exact(source, target, passwords):  # type: ignore[no-untyped-def]
    """Every write path fails loudly (read-only, permission denied, or the gid is gone), reads work, the
    subscription applies nothing until the unfreeze, and the catalog afterwards equals the one before."""
    allow_prepared_transactions(source)
    customize(source)
    with psycopg.connect(source.admin_dsn(), autocommit=True) as conn:
        conn.execute("ALTER ROLE app CREATEDB CREATEROLE")
    with psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as conn:
        conn.execute("CREATE MATERIALIZED VIEW totals AS SELECT sum(total) FROM orders")
    subscribe(source, target, passwords)
    prepare(source, "app", passwords.app, "app-2pc", "INSERT INTO orders (customer) VALUES ('two-phase')")
    before = snapshot(source)

    src = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",))
    snap = freeze.capture(src, FreezeMode.READ_ONLY, LABEL)
    events = Events()
    result = freeze.apply(src, snap, 1.0, events, lock_timeout_s=5)
    assert [x["gid"] for x in result["prepared_rolled_back"]] == ["app-2pc"]
    assert result["subscriptions_disabled"] == ["feed_sub"] and result["role_grants_taken"] == ["app"]

    failures = {what: attempt(source, passwords, statement) for what, statement in WRITES}
    failures |= {what: attempt(source, passwords, statement, default_off=True) for what, statement in SHARED_WRITES}
    failures["a create table in another database"] = attempt(
        source, passwords, "BEGIN READ WRITE; CREATE TABLE sneaky (x int); COMMIT", db="pagila")
    got_through = sorted(what for what, error in failures.items() if error is None)
    assert got_through == [], f"these writes got through the freeze: {got_through}"
    for what, error in failures.items():
        assert error is not None and error.sqlstate in ("25006", "42501", "42704"), (what, error)
    wait_until(lambda: not slot_active(target, "feed_sub"), 30, "the publisher's walsender for feed_sub to stop")
    publish(target, 2, "during the freeze")
    assert not fed(source, 2), "the subscription applied into the frozen source"

    with psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 5000
        assert conn.execute("SELECT count(*) FROM feed").fetchone()[0] == 1
        assert conn.execute("SELECT lo_get(4242)").fetchone()[0] == b"hello"
        assert conn.execute("SELECT * FROM totals").fetchone()[0] is not None
    with psycopg.connect(source.tcp_dsn("reporter", "appdb"), password=passwords.reporter, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 5000

    freeze.unfreeze(src, snap, Events())
    assert snapshot(source) == before
    wait_until(lambda: fed(source, 2), 30, "the row published during the freeze to arrive after it")
    with psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as conn:
        conn.execute("INSERT INTO orders (customer) VALUES ('after the freeze')")
        conn.execute("CREATE DATABASE app_scratch")
        conn.execute("DROP DATABASE app_scratch")
