"""Real worker processes: a worker killed mid-copy, two workers on one server, no password anywhere."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql

from pgmove.sandbox.servers import wait_until
from pgmove.state.models import EventKind
from pgmove.state.store import Store
from pgmove.steps.tools import choose_toolset
from pgmove.worker.queue import JOB
from tests.integration import fidelity
from tests.integration.helpers import snapshot

pytestmark = pytest.mark.slow


def wait_for(predicate, timeout=120):  # type: ignore[no-untyped-def]
    return wait_until(predicate, timeout, "the condition", every=0.05)


def store_of(pgmove) -> Store:  # type: ignore[no-untyped-def]
    return Store.from_url(_url(pgmove))


def source_is_frozen(source) -> bool:  # type: ignore[no-untyped-def]
    with psycopg.connect(source.admin_dsn("appdb")) as conn:
        return conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"


def test_a_worker_killed_during_the_copy_fails_the_step_and_retry_ends_with_an_identical_target(pgmove, source, target):  # type: ignore[no-untyped-def]
    """SIGKILL mid-copy (its psql children with it): the migration turns failed naming the copy, the source stays
    frozen, and retry resumes and ends with a target identical to the source: no half-copied table kept as done."""
    toolset = choose_toolset(15, 15)
    assert toolset is not None
    databases = ["appdb", "archive", "pagila"]
    before = fidelity.snapshot(source, databases, toolset.path("pg_dump"))
    worker = pgmove.start_worker("doomed")
    assert pgmove.do("U_ALICE", "plan prod-old prod-new --jobs 1", "--wait").returncode == 0
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    assert pgmove.do("U_BOB", "approve prod-old").returncode == 0
    store = store_of(pgmove)
    m = store.active_for("prod-old")
    wait_for(lambda: sum('"table ' in key for key in store.checkpoints(m.id)) >= 3)
    pgmove.kill_worker(worker)
    copied_when_killed = sum('"table ' in key for key in store.checkpoints(m.id))

    done = pgmove.do("U_ALICE", "status prod-old", "--wait", "--json")
    failed = json.loads(done.stdout)
    assert done.returncode == 1
    assert failed["state"] == "failed"
    assert failed["failure"]["step"] == "copy"
    assert "stopped responding" in failed["failure"]["reason"]
    assert source_is_frozen(source)

    pgmove.start_worker("second")
    done = pgmove.do("U_ALICE", "retry prod-old", "--wait", "--json")
    assert json.loads(done.stdout)["state"] == "verified", json.loads(done.stdout).get("failure")
    final = store.active_for("prod-old")
    assert final.verification is not None and final.verification.ok and final.verification.rows > 40000
    messages = " ".join(e.message for e in store.events(m.id))
    assert "resuming" in messages, copied_when_killed  # finished tables were kept, not copied again
    problems = fidelity.differences(before, fidelity.snapshot(target, databases, toolset.path("pg_dump")))
    assert not problems, "\n".join(problems)


def test_two_workers_never_run_steps_on_one_server_at_once(pgmove, source, target):  # type: ignore[no-untyped-def]
    """With two workers and duplicated jobs, each step runs once and no two steps overlap."""
    pgmove.start_worker("one")
    pgmove.start_worker("two")
    assert pgmove.do("U_ALICE", "plan prod-old prod-new", "--wait").returncode == 0
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    store = store_of(pgmove)
    m = store.active_for("prod-old")
    from rq import Queue

    queue = store.bind(lambda client: Queue("pgmove", connection=client))
    assert pgmove.do("U_BOB", "approve prod-old").returncode == 0
    for _ in range(4):
        queue.enqueue_call(JOB, args=(m.id,), timeout=-1)
    done = pgmove.do("U_ALICE", "status prod-old", "--wait", "--json")
    assert json.loads(done.stdout)["state"] == "verified", done.stderr

    steps = store.get(m.id).steps
    assert [s.name for s in steps] == ["preflight", "freeze", "copy", "verify"]
    spans = sorted((s.started_at, s.finished_at) for s in steps)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end <= start
    starts = [e for e in store.events(m.id) if e.kind == EventKind.STEP and e.message.endswith("started")]
    assert len(starts) == 4


def test_no_password_appears_in_any_reply_log_or_redis_value(pgmove, source, target, passwords):  # type: ignore[no-untyped-def]
    """A full run, then every output, log line and Redis value is searched for the passwords and hashes."""
    pgmove.start_worker()
    for user, text in [("U_ALICE", "plan prod-old prod-new"), ("U_ALICE", "servers"), ("U_ALICE", "freeze prod-old"),
                       ("U_BOB", "approve prod-old"), ("U_ALICE", "status prod-old"), ("U_ALICE", "cutover prod-old"),
                       ("U_BOB", "approve prod-old"), ("U_ALICE", "history prod-old")]:
        pgmove.do(user, text, "--wait")
        pgmove.do(user, text.replace("approve", "status"), "--json")
    assert '"cut_over"' in pgmove.do("U_ALICE", "status prod-old", "--json").stdout

    haystacks = list(pgmove.outputs) + [pgmove.worker_logs()]
    haystacks += [repr(snapshot(_url(pgmove)))]
    text = "\n".join(haystacks)
    assert len(text) > 10000  # we really looked at a full run
    for secret in passwords.all():
        assert secret not in text
    assert "SCRAM-SHA-256$" not in text  # nor the hashes the role copy moves between servers


def _url(pgmove) -> str:  # type: ignore[no-untyped-def]
    import tomllib

    return tomllib.loads(pgmove.config_path.read_text())["redis_url"]


def test_a_write_to_the_frozen_source_between_attempts_makes_the_retry_start_over(pgmove, source, target):  # type: ignore[no-untyped-def]
    """Tables copied before an overriding write may miss it: the quiet check refuses, forgets every checkpoint,
    and the next retry copies everything again, the write included."""
    worker = pgmove.start_worker("doomed")
    assert pgmove.do("U_ALICE", "plan prod-old prod-new --jobs 1", "--wait").returncode == 0
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    assert pgmove.do("U_BOB", "approve prod-old").returncode == 0
    store = store_of(pgmove)
    m = store.active_for("prod-old")
    wait_for(lambda: sum('"table ' in key for key in store.checkpoints(m.id)) >= 5)
    pgmove.kill_worker(worker)
    copied = [json.loads(k) for k in store.checkpoints(m.id) if '"table ' in k]
    database = copied[0][0]
    with psycopg.connect(source.admin_dsn(database), autocommit=True) as conn:
        # A copied table no foreign key points at, so the write leaves the source consistent.
        table = conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c WHERE c.oid = ANY(%s) AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint k WHERE k.confrelid = c.oid) ORDER BY 1 LIMIT 1",
            ([int(what.split()[1]) for db, what in copied if db == database],)).fetchone()[0]
        conn.execute("SET session_replication_role = replica")  # a superuser overriding the freeze
        name = sql.SQL(table)  # regclass text: already quoted and qualified
        conn.execute(sql.SQL("BEGIN READ WRITE; DELETE FROM {} WHERE ctid = (SELECT min(ctid) FROM {}); COMMIT").format(
            name, name))
        expected = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()[0]
    assert json.loads(pgmove.do("U_ALICE", "status prod-old", "--wait", "--json").stdout)["state"] == "failed"

    pgmove.start_worker("second")
    refused = json.loads(pgmove.do("U_ALICE", "retry prod-old", "--wait", "--json").stdout)
    assert refused["state"] == "failed" and "something wrote" in refused["failure"]["reason"]
    assert store.checkpoints(m.id) == set()
    done = json.loads(pgmove.do("U_ALICE", "retry prod-old", "--wait", "--json").stdout)
    assert done["state"] == "verified", done.get("failure")
    with psycopg.connect(target.admin_dsn(database)) as conn:
        assert conn.execute(sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()[0] == expected
