"""The watch after cutover against real servers: commits on the new server, a client still on the frozen old one
named by role, application and address, one reading per period among several workers, the summary in the stream."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pgmove.handlers import views
from pgmove.sandbox.servers import wait_until
from pgmove.state.config import Config
from pgmove.state.machine import State
from pgmove.state.models import FreezeMode, Migration, Plan, StepName, StepRecord, StepStatus
from pgmove.state.outcome import Outcome
from pgmove.state.store import Store
from pgmove.steps import freeze
from pgmove.steps.connect import Endpoint
from pgmove.worker.queue import make_queue
from pgmove.worker.runtime import Runtime
from pgmove.worker.watch import watch_all
from tests.integration.freezeworld import Events

pytestmark = pytest.mark.slow


def _app_world(cluster, passwords) -> None:  # type: ignore[no-untyped-def]
    """The target as a cutover leaves it: the app's role and database, with a table and a sequence."""
    with psycopg.connect(cluster.admin_dsn(), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE ROLE app LOGIN PASSWORD {}").format(passwords.app))
        conn.execute("CREATE DATABASE appdb OWNER app")
    with psycopg.connect(cluster.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("SET ROLE app")
        conn.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, customer text)")
        conn.execute("CREATE SEQUENCE tickets AS smallint")
        conn.execute("SELECT setval('tickets', 30000)")  # 92% of a smallint's range: named as near its end


def _runtime(url: str, source, target, passwords, monkeypatch, worker: str) -> Runtime:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PGMOVE_T_OLD", passwords.source_pgmove)
    monkeypatch.setenv("PGMOVE_T_NEW", passwords.target_pgmove)
    config = Config.model_validate({
        "redis_url": url, "watch_minutes": 15, "watch_sample_seconds": 10,
        "access": {"operators": ["U_ALICE"], "approvers": ["U_BOB"], "channels": ["C_DBMIG"]},
        "servers": {"prod-old": {"dsn": source.tcp_dsn("pgmove"), "password_env": "PGMOVE_T_OLD", "app_roles": ["app"]},
                    "prod-new": {"dsn": target.tcp_dsn("pgmove"), "password_env": "PGMOVE_T_NEW", "app_roles": ["app"]}},
    })
    store = Store.from_url(url)
    return Runtime(config, store, make_queue(store), worker)


def _cut_over(store: Store, at: datetime) -> Migration:
    """A migration as the cutover step leaves it (the watch reads the record, not how it got there)."""
    plan = Plan(source="prod-old", target="prod-new")
    m = Migration(id="mig-watch", source="prod-old", target="prod-new", state=State.CUT_OVER, plan=plan,
                  plan_digest=plan.digest(), created_by="U_ALICE", created_at=at - timedelta(hours=1), updated_at=at,
                  steps=[StepRecord(name=StepName.CUTOVER, status=StepStatus.DONE, started_at=at - timedelta(seconds=5),
                                    finished_at=at)])
    store.update_server("prod-old", lambda _cur: Outcome(m))
    return m


def _commits(cluster, db: str, column: str = "xact_commit") -> int:  # type: ignore[no-untyped-def]
    with psycopg.connect(cluster.admin_dsn(), autocommit=True) as conn:
        row = conn.execute(psycopg.sql.SQL("SELECT {} FROM pg_stat_database WHERE datname = %s").format(
            psycopg.sql.Identifier(column)), (db,)).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize("new", ["target", "target18"])
def test_the_watch_reports_commits_on_the_new_server_and_names_a_client_still_on_the_old_one(  # type: ignore[no-untyped-def]
        redis_server, source, passwords, monkeypatch, request, new):
    """prod-old frozen (read-only): an app session left on it is named by role, application and address; prod-new's
    commits since cutover are counted; of two workers one takes each reading; the summary is one audit event."""
    target = request.getfixturevalue(new)
    _app_world(target, passwords)
    src = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",))
    freeze.apply(src, freeze.capture(src, FreezeMode.READ_ONLY, "prod-old moved (test)"), 1.0, Events())
    workers = [_runtime(redis_server.url, source, target, passwords, monkeypatch, f"w{n}") for n in (1, 2)]
    t0 = datetime.now(UTC).replace(microsecond=0)
    m = _cut_over(workers[0].store, t0)
    assert watch_all(workers[0], now=t0 + timedelta(seconds=1)) == [m.id]  # the baseline
    assert watch_all(workers[1], now=t0 + timedelta(seconds=2)) == []  # started already, no sample due yet
    assert "watching prod-new and prod-old until" in views.status_text(workers[0].store.get(m.id))  # type: ignore[arg-type]

    before = _commits(target, "appdb")
    with psycopg.connect(target.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as app:
        for n in range(25):
            app.execute("INSERT INTO orders (customer) VALUES (%s)", (f"c{n}",))
    wait_until(lambda: _commits(target, "appdb") >= before + 25, 30, "the app's commits in the statistics")
    straggler = psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True,
                                application_name="orders-worker")
    try:
        refused_before = _commits(source, "appdb", "xact_rollback")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # the freeze refuses it, loudly
            straggler.execute("INSERT INTO orders (customer) VALUES ('lost?')")
        # An idle session sends its statistics within seconds, not at once: wait for them, not a fixed time.
        wait_until(lambda: _commits(source, "appdb", "xact_rollback") > refused_before, 30, "the refusal counted")
        took: list[list[str]] = []
        go = threading.Barrier(2)

        def sample(rt: Runtime) -> None:
            go.wait()
            took.append(watch_all(rt, now=t0 + timedelta(seconds=11)))

        threads = [threading.Thread(target=sample, args=(rt,)) for rt in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(took) == [[], [m.id]]  # one reading for the period, whichever worker claimed it
        assert watch_all(workers[0], now=t0 + timedelta(minutes=15, seconds=1)) == [m.id]
    finally:
        straggler.close()
    assert watch_all(workers[1], now=t0 + timedelta(minutes=15, seconds=3)) == []  # ended once

    done = workers[0].store.get(m.id)
    assert done is not None and done.watch is not None and done.watch.finished_at is not None
    assert "prod-new took" in views.status_text(done)  # `status` shows the headline
    summaries = [e.message for e in workers[0].store.events(m.id) if e.data.get("watch")]
    assert len(summaries) == 1
    summary = summaries[0]
    found = re.search(r"prod-new took ([\d,]+) commits from app in 15 min, 1 client still on prod-old", summary)
    assert found and int(found.group(1).replace(",", "")) >= 25, summary
    assert "app (orders-worker) from 127.0.0.1 to appdb (seen 2x" in summary
    assert "transaction(s) rolled back on prod-old since cutover (writes the freeze refused)" in summary
    assert "appdb.public.tickets 92% used" in summary
    assert "app connections on prod-new: app 0 now, peak" in summary
