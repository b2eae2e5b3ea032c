"""Large objects copy in oid ranges across the pool: many small ones batched, big ones streamed, all exact."""

from __future__ import annotations

import psycopg
import pytest

from pgmove.steps import copy, largeobjects, verify
from pgmove.steps.connect import Endpoint
from pgmove.steps.tools import choose_toolset

pytestmark = pytest.mark.slow


def _fill(source) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("SELECT lo_from_bytea(100000 + g, convert_to(repeat(md5(g::text), g % 40), 'UTF8')) "
                     "FROM generate_series(1, 3000) g")  # empty ones included (g % 40 = 0)
        conn.execute("ALTER LARGE OBJECT 100007 OWNER TO app")
        conn.execute("GRANT SELECT ON LARGE OBJECT 100011 TO reporter")
        conn.execute("COMMENT ON LARGE OBJECT 100013 IS 'small, commented'")
        conn.execute("SELECT lo_from_bytea(7, decode(repeat(md5('big'), 100000), 'hex'))")  # 1.6 MB: streamed
        conn.execute("SELECT lo_create(8); SELECT lo_put(8, 3000000, 'after a 3 MB hole')")
        conn.execute("COMMENT ON LARGE OBJECT 7 IS 'big'")


def test_thousands_of_small_and_a_few_big_large_objects_copy_exactly_and_again(source, target, passwords, monkeypatch):  # type: ignore[no-untyped-def]
    """3000 small objects in several oid ranges copied in parallel, plus two big ones (one sparse), with owners, ACLs
    and comments: verification finds them equal, and a second copy over the first changes nothing."""
    _fill(source)
    monkeypatch.setattr(largeobjects, "CHUNK_OBJECTS", 700)  # several ranges, so several pool tasks
    src = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",))
    dst = Endpoint("prod-new", target.tcp_dsn("pgmove"), passwords.target_pgmove, ("app",))
    progress: list[str] = []
    job = copy.CopyJob(src, dst, ["appdb"], 2, choose_toolset(15, 15), None, None, [])
    result = copy.run(job, lambda message, **_: progress.append(message), lambda name: None, lambda: False)
    appdb = next(d for d in result["databases"] if d["database"] == "appdb")
    assert appdb["large_objects"] == 3002
    report = verify.run(src, dst, ["appdb"], None, lambda *a, **k: None, jobs=2)
    assert report.ok, report.problems
    counts = report.databases[0].large_objects
    assert counts.source_objects == counts.target_objects == 3002 and counts.source_bytes == counts.target_bytes

    again = copy.CopyJob(src, dst, ["appdb"], 2, choose_toolset(15, 15), None, None, ["appdb"])
    copy.run(again, lambda *a, **k: None, lambda name: None, lambda: False)
    assert verify.run(src, dst, ["appdb"], None, lambda *a, **k: None, jobs=2).ok


def test_more_large_objects_than_the_target_can_lock_in_one_transaction_still_copy(source, target, passwords):  # type: ignore[no-untyped-def]
    """30000 objects: far more than the target's shared lock table holds, which the schema's one-transaction
    restore once took a lock for each of (out of shared memory); they copy and verify."""
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("SELECT lo_from_bytea(0, convert_to(g::text, 'UTF8')) FROM generate_series(1, 30000) g")
    src = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",))
    dst = Endpoint("prod-new", target.tcp_dsn("pgmove"), passwords.target_pgmove, ("app",))
    job = copy.CopyJob(src, dst, ["appdb"], 2, choose_toolset(15, 15), None, None, [])
    copy.run(job, lambda *a, **k: None, lambda name: None, lambda: False)
    report = verify.run(src, dst, ["appdb"], None, lambda *a, **k: None, jobs=2)
    assert report.ok, report.problems
    assert report.databases[0].large_objects.target_objects == 30000
