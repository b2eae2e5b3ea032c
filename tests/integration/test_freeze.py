"""The freeze against real sessions of an app role that owns its tables, and the exact unfreeze."""

from __future__ import annotations

import subprocess
import threading
import time

import psycopg
import pytest

from pgmove.sandbox.servers import wait_until
from pgmove.state.models import FreezeMode
from pgmove.steps import freeze
from pgmove.steps.connect import Endpoint
from tests.integration.catalog import customize, snapshot
from tests.integration.freezeworld import Events

pytestmark = pytest.mark.slow
LABEL = "prod-old is frozen for its move to prod-new (pgmove test)"


@pytest.fixture
def src(source, passwords) -> Endpoint:  # type: ignore[no-untyped-def]
    return Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",))


def do_freeze(src: Endpoint, mode: FreezeMode = FreezeMode.READ_ONLY, grace: float = 1.0):  # type: ignore[no-untyped-def]
    snap = freeze.capture(src, mode, LABEL)
    events = Events()
    result = freeze.apply(src, snap, grace, events)
    return snap, result, events


def app_conn(source, passwords, db="appdb"):  # type: ignore[no-untyped-def]
    return psycopg.connect(source.tcp_dsn("app", db), password=passwords.app, autocommit=True)


WRITES = [
    ("a plain insert", "INSERT INTO orders (customer) VALUES ('x')"),
    ("an insert in BEGIN READ WRITE", "BEGIN READ WRITE; INSERT INTO orders (customer) VALUES ('x'); COMMIT"),
    ("an update after turning the default off", ("SET default_transaction_read_only = off", "UPDATE orders SET total = 0")),
    ("a delete", "BEGIN READ WRITE; DELETE FROM orders WHERE id = 1; COMMIT"),
    ("a truncate", "BEGIN READ WRITE; TRUNCATE events; COMMIT"),
    ("copy from stdin", None),
    ("copy from stdin in a read-write transaction", ("BEGIN READ WRITE", None)),
    ("a create table", "BEGIN READ WRITE; CREATE TABLE sneaky (x int); COMMIT"),
    ("disabling the guard", "BEGIN READ WRITE; ALTER TABLE orders DISABLE TRIGGER ALL; COMMIT"),
    ("dropping the guard", "BEGIN READ WRITE; DROP TRIGGER pgmove_freeze_guard ON orders; COMMIT"),
    ("granting oneself back", "BEGIN READ WRITE; GRANT ALL ON SEQUENCE orders_id_seq TO app; COMMIT"),
    ("a sequence advance", "BEGIN READ WRITE; SELECT nextval('orders_id_seq'); COMMIT"),
    ("a setval", "BEGIN READ WRITE; SELECT setval('orders_id_seq', 1); COMMIT"),
    ("a large-object create", "BEGIN READ WRITE; SELECT lo_from_bytea(0, 'x'); COMMIT"),
    ("a large-object write", "BEGIN READ WRITE; SELECT lo_put(4242, 0, 'x'); COMMIT"),
    ("a large-object unlink", "BEGIN READ WRITE; SELECT lo_unlink(4242); COMMIT"),
    ("a materialized view refresh", "BEGIN READ WRITE; REFRESH MATERIALIZED VIEW totals; COMMIT"),
]


def test_a_read_only_freeze_refuses_every_kind_of_write_and_keeps_reads(source, passwords, src):  # type: ignore[no-untyped-def]
    """The app role owns its tables; every write path listed in the issue fails loudly, reads work, pgmove can dump."""
    customize(source)
    with app_conn(source, passwords) as conn:
        conn.execute("CREATE MATERIALIZED VIEW totals AS SELECT sum(total) FROM orders")
    do_freeze(src)
    failures = {}
    for what, statement in WRITES:
        with app_conn(source, passwords) as conn:
            try:
                for step in statement if isinstance(statement, tuple) else (statement,):
                    if step is None:
                        with conn.cursor().copy("COPY orders (customer) FROM STDIN") as copy:
                            copy.write_row(("copied",))
                    else:
                        conn.execute(step)  # separately: a SET must take effect before the next transaction
            except psycopg.Error as exc:
                failures[what] = (exc.sqlstate, str(exc))
    assert set(failures) == {w for w, _ in WRITES}, f"these writes got through: {set(w for w, _ in WRITES) - set(failures)}"
    for what, (sqlstate, message) in failures.items():
        assert sqlstate in ("25006", "42501"), (what, sqlstate, message)  # read-only, or permission denied
        if sqlstate == "25006" and "read-only transaction" not in message:
            assert LABEL in message, (what, message)  # the guard names the maintenance
    for what in ("an insert in BEGIN READ WRITE", "an update after turning the default off",
                 "copy from stdin in a read-write transaction", "disabling the guard", "a create table"):
        assert "pgmove freeze" in failures[what][1], (what, failures[what])
    with app_conn(source, passwords) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 5000
        assert conn.execute("SELECT lo_get(4242)").fetchone()[0] == b"hello"
    with psycopg.connect(source.admin_dsn(), autocommit=True) as conn:  # a superuser's new session starts read-only
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
    dump = subprocess.run([str(source.bin_dir / "pg_dump"), "-d", src.conninfo("appdb"), "-f", "/dev/null"],
                          env={"PGPASSWORD": passwords.source_pgmove}, capture_output=True, text=True)
    assert dump.returncode == 0, dump.stderr


def test_reads_keep_working_and_unfreeze_restores_writes_exactly(source, passwords, src):  # type: ignore[no-untyped-def]
    """After unfreeze the catalog equals the one before the freeze, pre-existing customizations included."""
    customize(source)
    before = snapshot(source)
    snap, _, _ = do_freeze(src)
    assert snapshot(source) != before
    freeze.unfreeze(src, snap, Events())
    assert snapshot(source) == before
    with app_conn(source, passwords) as conn:
        conn.execute("INSERT INTO orders (customer) VALUES ('after unfreeze')")
        conn.execute("SELECT nextval('orders_id_seq')")


def test_a_no_connect_freeze_keeps_the_app_out_and_restores_only_the_logins_it_took(source, passwords, src):  # type: ignore[no-untyped-def]
    """The app cannot connect; a role that was NOLOGIN before stays NOLOGIN after; pgmove can still dump."""
    customize(source)
    before = snapshot(source)
    snap, result, _ = do_freeze(src, FreezeMode.NO_CONNECT)
    assert "app" in result["no_login"] and "retired" not in result["no_login"] and "pgmove" not in result["no_login"]
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        app_conn(source, passwords)
    dump = subprocess.run([str(source.bin_dir / "pg_dump"), "-d", src.conninfo("appdb"), "-f", "/dev/null"],
                          env={"PGPASSWORD": passwords.source_pgmove}, capture_output=True, text=True)
    assert dump.returncode == 0, dump.stderr
    freeze.unfreeze(src, snap, Events())
    assert snapshot(source) == before
    with app_conn(source, passwords) as conn:
        conn.execute("INSERT INTO orders (customer) VALUES ('back')")


def test_sessions_are_ended_gracefully_and_reported(source, passwords, src):  # type: ignore[no-untyped-def]
    """Idle sessions go at once; an open transaction and a long read get the grace period; the report names them."""
    idle = app_conn(source, passwords)
    in_tx = app_conn(source, passwords)
    in_tx.execute("BEGIN; SELECT 1")
    reader = psycopg.connect(source.tcp_dsn("reporter", "appdb"), password=passwords.reporter, autocommit=True,
                             application_name="nightly-report")
    read_error: list[Exception] = []

    def long_read() -> None:
        try:
            reader.execute("SELECT pg_sleep(60), 'secret literal'")
        except psycopg.Error as exc:
            read_error.append(exc)

    thread = threading.Thread(target=long_read)
    thread.start()
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as watcher:
        wait_until(lambda: watcher.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = 'nightly-report' "
                                           "AND state = 'active'").fetchone(), 10, "the long read to be running")
    started = time.monotonic()
    _, result, events = do_freeze(src, grace=2.0)
    took = time.monotonic() - started
    thread.join(timeout=10)
    ended = {(s["role"], s["state"]): s for s in result["sessions_ended"]}
    assert ended[("app", "idle")]["reason"] == "idle"
    assert "grace period" in ended[("app", "idle in transaction")]["reason"]
    long_one = ended[("reporter", "active")]
    assert "grace period" in long_one["reason"] and long_one["application"] == "nightly-report"
    assert long_one["client"] == "127.0.0.1" and long_one["transaction_age_s"] >= 0
    assert took >= 2.0 and read_error, "the long read was not given the grace period, or was not ended"
    assert any("get 2s to finish" in m for m in events.messages)
    assert not any("secret literal" in m or "pg_sleep" in m for m in events.messages), "query text leaked into the report"
    for conn in (idle, in_tx, reader):
        conn.close()


def test_unfreeze_ends_idle_sessions_opened_under_the_freeze_so_no_pool_stays_read_only(source, passwords, src):  # type: ignore[no-untyped-def]
    """A session the app (or its pooler) opened during a read-only freeze keeps its read-only default: unfreeze ends
    it while idle, and a new one writes."""
    snap, _, _ = do_freeze(src)
    during = app_conn(source, passwords)
    assert during.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
    freeze.unfreeze(src, snap, Events())
    with pytest.raises(psycopg.Error, match="terminating connection"):
        during.execute("SELECT 1")
    with app_conn(source, passwords) as after:
        after.execute("INSERT INTO orders (customer, total) VALUES ('after the freeze', 1)")


def test_unfreeze_ends_sessions_opened_under_the_freeze_even_inside_a_transaction(source, passwords, src):  # type: ignore[no-untyped-def]
    """A session opened during the freeze and sitting in a transaction at unfreeze gets the grace period, then is
    ended too (it could never write again), and the report names it; writes are back before that wait begins."""
    snap, _, _ = do_freeze(src)
    held = app_conn(source, passwords)
    held.execute("BEGIN")
    held.execute("SELECT count(*) FROM orders")
    events = Events()
    outcome: list[dict] = []  # type: ignore[type-arg]
    thread = threading.Thread(target=lambda: outcome.append(freeze.unfreeze(src, snap, events, grace_seconds=5)))
    thread.start()
    wait_until(lambda: any("get 5s to finish" in m for m in events.messages), 20, "the grace period to begin")
    with app_conn(source, passwords) as after:
        after.execute("INSERT INTO orders (customer, total) VALUES ('during the grace period', 1)")
    assert thread.is_alive(), "the grace period ended before the write was tried"
    thread.join(timeout=30)
    with pytest.raises(psycopg.Error, match="terminating connection"):
        held.execute("SELECT 1")
    (session,) = [s for s in outcome[0]["sessions_ended"] if s["role"] == "app"]
    assert session["state"] == "idle in transaction" and "grace period" in session["reason"]


def test_unfreeze_gives_writes_back_while_a_spared_reader_holds_a_lock(source, passwords, src):  # type: ignore[no-untyped-def]
    """A reader unfreeze must not end (pgmove's own role) holds a lock on a guarded table: the app writes again at once,
    without waiting for it, and once it lets go the guards are gone and the catalog is exactly as before."""
    before = snapshot(source)
    snap, _, _ = do_freeze(src)
    reader = psycopg.connect(source.tcp_dsn("pgmove", "appdb"), password=passwords.source_pgmove, autocommit=True)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM orders")
    outcome: list[object] = []
    events = Events()
    thread = threading.Thread(target=lambda: outcome.append(freeze.unfreeze(src, snap, events, grace_seconds=0.5)))
    thread.start()
    try:
        # A session opened while the default is being lifted may have started read-only and is ended on purpose;
        # the app's contract starts at "writes are back".
        wait_until(lambda: any(m.startswith("writes are back") for m in events.messages), 20, "writes to be back")
        app = app_conn(source, passwords)
        assert app.execute("SHOW default_transaction_read_only").fetchone() == ("off",)
        app.execute("SET statement_timeout = '10s'")

        def written() -> bool:
            try:
                app.execute("INSERT INTO orders (customer, total) VALUES ('while the reader holds its lock', 1)")
                return True
            except psycopg.errors.ReadOnlySqlTransaction:
                return False  # the guard is not neutralized yet
        wait_until(written, 20, "the app's write to be taken")
        assert thread.is_alive(), "unfreeze finished although the reader still holds its lock"
        app.execute("DELETE FROM orders WHERE customer = 'while the reader holds its lock'")
        app.close()
    finally:
        reader.execute("COMMIT")
        reader.close()
        thread.join(timeout=60)
    assert outcome, "unfreeze did not finish once the reader let go"
    assert snapshot(source) == before
