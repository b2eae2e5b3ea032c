"""Holes a review found in proving the copy: a write hidden behind an ANALYZE, and two tables that read alike."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from pgmove.steps import copy, quiet, verify
from pgmove.steps.connect import Endpoint
from pgmove.steps.prehash import SourceHashes
from pgmove.steps.targethash import TargetHashes
from pgmove.steps.tools import choose_toolset

pytestmark = pytest.mark.slow
TWINS = {'"a.b".c': sql.Identifier("a.b", "c"), 'a."b.c"': sql.Identifier("a", "b.c")}  # as verify names them


def _endpoints(source, target, passwords) -> tuple[Endpoint, Endpoint]:  # type: ignore[no-untyped-def]
    return (Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",)),
            Endpoint("prod-new", target.tcp_dsn("pgmove"), passwords.target_pgmove, ("app",)))


def test_a_write_committed_with_an_analyze_and_counters_off_is_still_a_write_past_the_freeze(source, target, passwords):  # type: ignore[no-untyped-def]
    """A superuser bypassing the guards updates a row, ANALYZEs and commits with track_counts off: its row is found
    by its transaction id, not excused as autovacuum's ANALYZE."""
    src, dst = _endpoints(source, target, passwords)
    baseline, mark = quiet.fingerprint(src, ["appdb"]), quiet.mark(src, True)
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("SET track_counts = off")
        conn.execute("BEGIN READ WRITE")
        conn.execute("UPDATE public.orders SET total = total + 1000 WHERE id = (SELECT min(id) FROM public.orders)")
        conn.execute("ANALYZE public.orders")
        conn.execute("COMMIT")
    found = quiet.check(src, baseline, mark, ["appdb"])
    assert any("appdb: public.orders: rows written by 1 transaction" in p for p in found.problems), found.problems


def test_an_analyze_alone_is_not_a_write(source, target, passwords):  # type: ignore[no-untyped-def]
    """ANALYZE by itself (what autovacuum does during a freeze) leaves rows only in pg_statistic: no problem."""
    src, _ = _endpoints(source, target, passwords)
    baseline, mark = quiet.fingerprint(src, ["appdb"]), quiet.mark(src, True)
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("ANALYZE public.orders")
    assert quiet.check(src, baseline, mark, ["appdb"]).problems == []


def test_two_tables_whose_dotted_names_read_alike_are_both_compared(source, target, passwords):  # type: ignore[no-untyped-def]
    """"a.b".c and a."b.c" are two tables: a difference in either fails verification and names the right one, with
    both sides read now or hashed during the copy."""
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "a.b"; CREATE SCHEMA a')
        for table in TWINS.values():
            conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v text)").format(table))
            conn.execute(sql.SQL("INSERT INTO {} SELECT g, md5(g::text) FROM generate_series(1, 1000) g").format(table))
    src, dst = _endpoints(source, target, passwords)
    hashes, landed = SourceHashes(src), TargetHashes(dst)
    copy.run(copy.CopyJob(src, dst, ["appdb"], 2, choose_toolset(15, 15), None, None, [], source_hashes=hashes,
                          target_hashes=landed),
             lambda *a, **k: None, lambda name: None, lambda: False)
    assert verify.run(src, dst, ["appdb"], None, lambda *a, **k: None, jobs=2).ok
    for victim, table in TWINS.items():
        with psycopg.connect(target.admin_dsn("appdb"), autocommit=True) as conn:
            conn.execute(sql.SQL("UPDATE {} SET v = 'corrupt' WHERE id = 7").format(table))
        for ahead, before in ((None, None), (hashes, landed)):
            result = verify.run(src, dst, ["appdb"], None, lambda *a, **k: None, jobs=2, source_hashes=ahead,
                                target_hashes=before)
            assert not result.ok and any(p.startswith(f"appdb: {victim}: ") for p in result.problems), result.problems
        with psycopg.connect(target.admin_dsn("appdb"), autocommit=True) as conn:
            conn.execute(sql.SQL("UPDATE {} SET v = md5('7') WHERE id = 7").format(table))
