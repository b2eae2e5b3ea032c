"""pgmove against a real PgBouncer: preflight findings, a switch the app only sees as latency, a held transaction
that makes PAUSE give up cleanly and named, and the include file rewritten without touching anything else."""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from pgmove.sandbox.pgbouncer import PgBouncer, scram_verifier
from pgmove.sandbox.servers import PgCluster, wait_until
from pgmove.state.errors import StepFailed
from pgmove.state.models import PausedPooler, PoolerBackend
from pgmove.steps import poolercheck, poolerfile
from pgmove.steps.connect import Endpoint
from pgmove.steps.pooler import PauseTimedOut, Pooler
from pgmove.steps.poolerswitch import PoolerSwitch, point, release


def pooler(bouncer: PgBouncer, **options: object) -> Pooler:
    settings: dict[str, object] = {"databases_file": str(bouncer.databases_file), "pause_timeout": 5.0, **options}
    return Pooler(name="app", admin_dsn=bouncer.admin_dsn(), databases=("appdb",), password=bouncer.admin_password,
                  **settings)  # type: ignore[arg-type]


def source_endpoint(cluster: PgCluster) -> Endpoint:
    return Endpoint("prod-old", cluster.tcp_dsn("pgmove"))


@pytest.fixture
def copy_of_source(golden_source: PgCluster, sandbox_root: Path) -> Iterator[PgCluster]:
    """A second server with the source's databases and roles: where a switch sends the app."""
    base = sandbox_root / f"copy{time.monotonic_ns() % 10**9}"
    cluster = golden_source.clone(base, "copy").start()
    yield cluster
    cluster.stop()
    shutil.rmtree(base, ignore_errors=True)


def test_preflight_names_version_pool_mode_mapping_and_a_short_query_wait_timeout(source, pgbouncer, sandbox_root):  # type: ignore[no-untyped-def]
    """A transaction-mode pooler on the source passes with its version and mapping stated; a session-mode one
    with query_wait_timeout 5 s gets both named; one whose appdb points elsewhere is a problem."""
    found = poolercheck.check([pooler(pgbouncer)], source_endpoint(source), ["appdb"], window_seconds=40)
    assert not found.problems and not found.warnings, found
    assert "PgBouncer 1.18" in found.facts[0] and "transaction pooling" in found.facts[0]
    assert f"appdb -> 127.0.0.1:{source.port}/appdb" in found.facts[0]

    session = PgBouncer(sandbox_root / "pgb-session", pool_mode="session", query_wait_timeout=5)
    session.start(source, ["appdb"], {"app": scram_verifier(source, "app")})
    try:
        found = poolercheck.check([pooler(session)], source_endpoint(source), ["appdb"], window_seconds=40)
        assert not found.problems, found.problems
        warned = " ".join(found.warnings)
        assert "session pooling" in warned and "disconnects" in warned
        assert "query_wait_timeout is 5s" in warned and "40s" in warned
        elsewhere = Endpoint("prod-old", f"host=127.0.0.1 port={source.port + 1} user=pgmove")
        found = poolercheck.check([pooler(session)], elsewhere, ["appdb"], window_seconds=1)
        assert any("not at prod-old" in p for p in found.problems), found.problems
        found = poolercheck.check([pooler(session)], source_endpoint(source), ["pagila"], window_seconds=1)
        assert any("which this plan does not move" in p for p in found.problems), found.problems
    finally:
        session.stop()


def test_an_unreachable_pooler_is_a_problem_named_by_its_name(source):  # type: ignore[no-untyped-def]
    """Nothing listens on the admin port: preflight reports the pooler by name, it does not crash."""
    gone = Pooler(name="edge", admin_dsn="host=127.0.0.1 port=1 user=pgmove_admin dbname=pgbouncer connect_timeout=2",
                  databases=("appdb",), databases_file="/nonexistent")
    found = poolercheck.check([gone], source_endpoint(source), ["appdb"], window_seconds=10)
    assert found.problems and all("pooler edge" in p for p in found.problems), found.problems
    assert any("Cannot reach pooler edge's admin console" in p for p in found.problems), found.problems


class Probe(threading.Thread):
    """The app through the pooler: a read and an insert every 10 ms, each its own transaction."""

    def __init__(self, dsn: str, password: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.password = dsn, password
        self.acked: list[tuple[int, int]] = []  # (id, the server port that took it)
        self.errors: list[str] = []
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, password=self.password, autocommit=True, prepare_threshold=None) as conn:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    conn.execute("SELECT count(*) FROM orders WHERE id < 10")
                    row = conn.execute("INSERT INTO orders (customer, total) VALUES ('probe', 1) "
                                       "RETURNING id, inet_server_port()").fetchone()
                    assert row is not None
                    self.acked.append((int(row[0]), int(row[1])))
                except psycopg.Error as exc:
                    self.errors.append(str(exc).strip())
                self.latencies.append(time.monotonic() - started)
                time.sleep(0.01)


def test_the_app_sees_latency_not_errors_while_the_switch_pauses_repoints_and_resumes(source, copy_of_source, pgbouncer, passwords):  # type: ignore[no-untyped-def]
    """A probe committing every 10 ms through transaction pooling gets no error across PAUSE, repoint and RESUME;
    its writes after RESUME land on the new server, and the pause is recorded before it is sent, cleared after."""
    probe = Probe(pgbouncer.dsn("app", "appdb"), passwords.app)
    probe.start()
    wait_until(lambda: len(probe.acked) >= 20, 20, "the probe's first writes")
    recorded: list[list[PausedPooler]] = []
    said: list[str] = []
    with PoolerSwitch([pooler(pgbouncer)], "127.0.0.1", copy_of_source.port, lambda m, **_: said.append(m),
                      recorded.append, set()) as switch:
        assert recorded[0][0].source["appdb"] == PoolerBackend(host="127.0.0.1", port=source.port, dbname="appdb")
        assert pgbouncer.database("appdb")["paused"] == 1
        time.sleep(0.3)  # the app waits here while a real cutover moves the writes
        switch.repoint()
    acked_at_resume = len(probe.acked)
    wait_until(lambda: len(probe.acked) >= acked_at_resume + 20, 20, "the probe's writes after RESUME")
    probe.stop.set()
    probe.join()
    assert probe.errors == [], probe.errors[:3]
    assert [len(r) for r in recorded] == [1, 1, 1, 0] and recorded[1][0].repointed and recorded[2][0].stays_on_target
    assert {port for _, port in probe.acked[acked_at_resume + 1:]} == {copy_of_source.port}
    assert pgbouncer.database("appdb")["paused"] == 0 and pgbouncer.database("appdb")["port"] == copy_of_source.port
    line = switch.timeline["app"]
    assert 0.3 <= line["paused_seconds"] < 10 and line["resumed_at"] and line["repointed_at"]
    assert any("paused at" in s for s in said) and any("resumed on the target" in s for s in said)
    print(f"switch: paused {line['paused_seconds']:.3f}s, probe p99 {sorted(probe.latencies)[int(len(probe.latencies) * .99)]:.3f}s")


def test_a_transaction_held_past_the_pause_timeout_resumes_on_the_source_and_names_the_client(source, copy_of_source, pgbouncer, passwords):  # type: ignore[no-untyped-def]
    """A client sits in an open transaction: PAUSE gives up after its timeout, the pooler is resumed still pointing
    at the source, other clients work on, and the error names the holder's role, application and address."""
    holder = psycopg.connect(pgbouncer.dsn("app", "appdb"), password=passwords.app, application_name="nightly-report")
    holder.execute("SELECT 1")  # BEGIN ... and never commits
    recorded: list[list[PausedPooler]] = []
    started = time.monotonic()
    with pytest.raises(PauseTimedOut) as raised, \
            PoolerSwitch([pooler(pgbouncer, pause_timeout=1.0)], "127.0.0.1", copy_of_source.port,
                         lambda m, **_: None, recorded.append, set()) as switch:
        switch.repoint()
    took = time.monotonic() - started
    message = raised.value.message
    assert "within 1s" in message and "app (application 'nightly-report') from 127.0.0.1:" in message, message
    assert [h.application for h in raised.value.holders] == ["nightly-report"]
    assert took < 5
    assert recorded[-1] == []
    row = pgbouncer.database("appdb")
    assert row["paused"] == 0 and row["port"] == source.port
    with psycopg.connect(pgbouncer.dsn("app", "appdb"), password=passwords.app, autocommit=True,
                         prepare_threshold=None, connect_timeout=5) as other:
        assert other.execute("SELECT inet_server_port()").fetchone()[0] == source.port  # type: ignore[index]
    holder.rollback()
    holder.close()


def test_a_failure_after_the_repoint_points_the_pooler_back_at_the_source(source, copy_of_source, pgbouncer, passwords):  # type: ignore[no-untyped-def]
    """The cutover fails once the pooler was repointed: it is pointed back at the source, then resumed."""
    with pytest.raises(StepFailed, match="hook failed"), \
            PoolerSwitch([pooler(pgbouncer)], "127.0.0.1", copy_of_source.port, lambda m, **_: None,
                         lambda paused: None, set()) as switch:
        switch.repoint()
        assert pgbouncer.database("appdb")["port"] == copy_of_source.port
        raise StepFailed("hook failed")
    row = pgbouncer.database("appdb")
    assert row["paused"] == 0 and row["port"] == source.port


def test_the_include_file_rewrite_changes_only_the_named_databases_address(tmp_path):  # type: ignore[no-untyped-def]
    """host, port and dbname of appdb change; its pool_size, other entries and comments stay; an entry that is not
    there refuses the rewrite and leaves the file as it was."""
    path = tmp_path / "databases.ini"
    path.write_text("; managed by hand\n[databases]\nappdb = host=10.0.0.5 port=5432 dbname=appdb pool_size=40\n"
                    "reports = host=10.0.0.9 dbname=reports\n")
    poolerfile.rewrite(str(path), {"appdb": PoolerBackend(host="10.0.0.6", port=6543, dbname="appdb")})
    assert path.read_text() == ("; managed by hand\n[databases]\n"
                                "appdb = host=10.0.0.6 port=6543 dbname=appdb pool_size=40\n"
                                "reports = host=10.0.0.9 dbname=reports\n")
    before = path.read_text()
    with pytest.raises(StepFailed, match="no entry for billing"):
        poolerfile.rewrite(str(path), {"billing": PoolerBackend(host="h", port=1, dbname="billing")})
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["databases.ini"]  # no temporary file left behind


def test_a_repoint_command_is_told_where_never_a_password_and_its_failure_resumes_on_the_source(source, copy_of_source, pgbouncer, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """The team's command gets PGHOST/PGPORT/PGDATABASE and the pooler's names, no PGPASSWORD nor configured secret;
    pgmove RELOADs after it and checks the mapping. A command that fails leaves the pooler resumed on the source."""
    monkeypatch.setenv("PGPASSWORD", "libpq-secret")
    monkeypatch.setenv("PGMOVE_SECRET_X", "configured-secret")
    seen, fail = tmp_path / "env.json", tmp_path / "fail-now"
    script = tmp_path / "repoint"
    script.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                      f"env = dict(os.environ)\njson.dump(env, open({str(seen)!r}, 'w'))\n"
                      f"if os.path.exists({str(fail)!r}) and env['PGPORT'] != '{source.port}':\n"
                      "    print('load balancer said no'); sys.exit(3)\n"
                      f"open({str(pgbouncer.databases_file)!r}, 'w').write('[databases]\\n' + env['PGMOVE_POOLER_DATABASE'] "
                      "+ ' = host=' + env['PGHOST'] + ' port=' + env['PGPORT'] + ' dbname=' + env['PGDATABASE'] + '\\n')\n")
    script.chmod(0o755)
    by_command = pooler(pgbouncer, databases_file=None, repoint_command=(str(script),))
    with PoolerSwitch([by_command], "127.0.0.1", copy_of_source.port, lambda m, **_: None, lambda p: None,
                      {"PGMOVE_SECRET_X"}) as switch:
        switch.repoint()
    env = json.loads(seen.read_text())
    assert (env["PGHOST"], env["PGPORT"], env["PGDATABASE"]) == ("127.0.0.1", str(copy_of_source.port), "appdb")
    assert env["PGMOVE_POOLER"] == "app" and env["PGMOVE_POOLER_DATABASE"] == "appdb"
    assert "libpq-secret" not in seen.read_text() and "configured-secret" not in seen.read_text()
    assert pgbouncer.database("appdb")["port"] == copy_of_source.port

    fail.touch()  # now it refuses to point anywhere but the source
    pgbouncer.databases_file.write_text(f"[databases]\nappdb = host=127.0.0.1 port={source.port} dbname=appdb\n")
    with pgbouncer.admin() as conn:
        conn.execute("RELOAD")
    with pytest.raises(StepFailed, match="exited with status 3 for appdb: load balancer said no"), \
            PoolerSwitch([by_command], "127.0.0.1", copy_of_source.port, lambda m, **_: None, lambda p: None,
                         set()) as switch:
        switch.repoint()
    row = pgbouncer.database("appdb")
    assert row["paused"] == 0 and row["port"] == source.port


def test_release_points_a_half_switched_pooler_back_but_leaves_a_finished_switch_on_the_target(source, copy_of_source, pgbouncer):  # type: ignore[no-untyped-def]
    """What the reaper does with a dead worker's record: repointed but not finished -> back to the source, then
    RESUME; finished (stays_on_target) -> RESUME where it points. Either way nothing stays paused."""
    p = pooler(pgbouncer)
    on_source = PoolerBackend(host="127.0.0.1", port=source.port, dbname="appdb")
    on_copy = PoolerBackend(host="127.0.0.1", port=copy_of_source.port, dbname="appdb")
    for stays, expected in ((False, source.port), (True, copy_of_source.port)):
        point(p, {"appdb": on_copy}, set())
        with pgbouncer.admin() as conn:
            conn.execute('PAUSE "appdb"')
        entry = PausedPooler(name="app", databases=["appdb"], source={"appdb": on_source},
                             paused_at=datetime.now(UTC), repointed=True, stays_on_target=stays)
        said: list[str] = []
        assert release({"app": p}, [entry], set(), said.append) == []
        row = pgbouncer.database("appdb")
        assert row["paused"] == 0 and row["port"] == expected, (stays, row, said)
    unknown = PausedPooler(name="gone", databases=["appdb"], source={}, paused_at=datetime.now(UTC))
    assert release({"app": p}, [unknown], set(), lambda m, **_: None) == [unknown]  # kept, to be named and retried


def test_a_pooler_that_cannot_be_pointed_back_is_resumed_only_if_it_still_maps_to_the_source(source, copy_of_source, pgbouncer, tmp_path):  # type: ignore[no-untyped-def]
    """The include file is gone, so pointing back fails: a pooler the repoint never reached is resumed anyway (it
    sends the app to the source); one already pointing at the target stays paused, kept in the record, named."""
    broken = pooler(pgbouncer, databases_file=str(tmp_path / "gone.ini"))
    on_source = PoolerBackend(host="127.0.0.1", port=source.port, dbname="appdb")
    entry = PausedPooler(name="app", databases=["appdb"], source={"appdb": on_source}, paused_at=datetime.now(UTC),
                         repointed=True)
    with pgbouncer.admin() as conn:
        conn.execute('PAUSE "appdb"')
    assert release({"app": broken}, [entry], set(), lambda m, **_: None) == []
    assert pgbouncer.database("appdb")["paused"] == 0

    point(pooler(pgbouncer), {"appdb": PoolerBackend(host="127.0.0.1", port=copy_of_source.port, dbname="appdb")}, set())
    with pgbouncer.admin() as conn:
        conn.execute('PAUSE "appdb"')
    said: list[str] = []
    assert release({"app": broken}, [entry], set(), said.append) == [entry]
    assert pgbouncer.database("appdb")["paused"] == 1
    assert "could NOT be resumed on the source" in said[0] and "gone.ini" in said[0]
    with pgbouncer.admin() as conn:
        conn.execute('RESUME "appdb"')
