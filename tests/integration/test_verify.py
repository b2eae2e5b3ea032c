"""Verification against a perfect copy with one kind of difference injected at a time."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql

from pgmove.sandbox.servers import PgCluster
from pgmove.steps import checksum, copy, largeobjects, verify
from pgmove.steps.connect import Endpoint, connection
from pgmove.steps.prehash import SourceHashes
from pgmove.steps.tools import choose_toolset

pytestmark = pytest.mark.slow
_n = itertools.count()
DATABASES = ["appdb", "archive", "pagila"]


def _awkward(source: PgCluster) -> None:
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_trgm")
        conn.execute("""CREATE TABLE public.awkward (label text, n float8, r real, tags text[], doc jsonb, blob bytea,
                        price numeric, at timestamptz)""")  # no primary key
        conn.execute("""INSERT INTO public.awkward VALUES
            ('a', 0.1, 1.5, '{x,y}', '{"k": [1, 2, {"z": null}]}', '\\x00ff10', 1.10, '2024-02-29 23:59:59.999999+00'),
            (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
            ('', 'NaN', '-Infinity', '{}', '[]', '', 0, 'infinity'),
            ('dup', 1e-300, 3.4e38, '{"quoted, comma",NULL}', '"s"', '\\x', -0.0, '1970-01-01+00'),
            ('dup', 1e-300, 3.4e38, '{"quoted, comma",NULL}', '"s"', '\\x', -0.0, '1970-01-01+00')""")
        columns = sql.SQL(", ").join(sql.SQL("{} varchar(40)").format(sql.Identifier(f"c{i}")) for i in range(30))
        conn.execute(sql.SQL("CREATE TABLE public.wide (id int PRIMARY KEY, {})").format(columns))
        values = sql.SQL(", ").join(sql.SQL("{} || g").format(sql.Literal(f"v{i}-")) for i in range(30))
        conn.execute(sql.SQL("INSERT INTO public.wide SELECT g, {} FROM generate_series(1, 3000) g").format(values))
        conn.execute("CREATE INDEX wide_c5 ON public.wide (c5)")
        # Large objects: a small one, a sparse one (holes read as zeros), and one of many pages.
        conn.execute("SELECT lo_from_bytea(4242, 'hello large object')")
        conn.execute("SELECT lo_create(4243); SELECT lo_put(4243, 100000, 'after a hole')")
        conn.execute("SELECT lo_from_bytea(4244, convert_to(repeat(md5('x'), 5000), 'UTF8'))")
        conn.execute("COMMENT ON LARGE OBJECT 4244 IS 'many pages'")


@pytest.fixture(scope="module")
def pair(golden_source, golden_target, sandbox_root, passwords) -> Iterator[tuple[PgCluster, PgCluster, Endpoint, Endpoint]]:  # type: ignore[no-untyped-def]
    source = golden_source.clone(sandbox_root / f"vsrc{next(_n)}", "vsrc").start()
    target = golden_target.clone(sandbox_root / f"vdst{next(_n)}", "vdst").start()
    _awkward(source)
    src = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",))
    dst = Endpoint("prod-new", target.tcp_dsn("pgmove"), passwords.target_pgmove, ("app",))
    job = copy.CopyJob(src, dst, DATABASES, 2, choose_toolset(15, 15), None, None, [])
    copy.run(job, lambda *a, **k: None, lambda name: None, lambda: False)
    target.stop()  # the perfect copy, cloned for every case
    yield source, target, src, dst
    source.stop()
    shutil.rmtree(source.base, ignore_errors=True)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(checksum, "CHUNK_ROWS", 500)  # several key ranges even in small tables
    monkeypatch.setattr(largeobjects, "CHUNK_OBJECTS", 2)  # and several oid ranges of large objects


def hashed_ahead(src: Endpoint) -> SourceHashes:
    """The source's side of every table hashed before the verification, as a copy with idle cores would."""
    hashes = SourceHashes(src)
    for db in DATABASES:
        with connection(src, db) as conn:
            for schema, name, _ in conn.execute(verify.TABLES).fetchall():
                hashes.hash_table(db, schema, name)
    hashes.close()
    return hashes


def _verify_with(pair, sandbox_root, mutation: str | None, db: str = "appdb", **options):  # type: ignore[no-untyped-def]
    source, perfect, src, dst = pair
    target = perfect.clone(sandbox_root / f"vcase{next(_n)}", "vcase").start()
    try:
        if mutation:
            with psycopg.connect(target.admin_dsn(db), autocommit=True) as conn:
                conn.execute(mutation)
        dst_here = Endpoint(dst.name, target.tcp_dsn("pgmove"), dst.password, dst.app_roles)
        return verify.run(src, dst_here, DATABASES, None, lambda *a, **k: None, jobs=2, **options)
    finally:
        target.stop()
        shutil.rmtree(target.base, ignore_errors=True)


def test_an_identical_copy_passes_including_awkward_types_and_tables_without_a_key(pair, sandbox_root):  # type: ignore[no-untyped-def]
    """No primary key, NULLs, arrays, jsonb, bytea, NaN and infinities, duplicate rows: all equal, nothing flagged."""
    result = _verify_with(pair, sandbox_root, None)
    assert result.ok, result.problems
    counts = {t.table: t for d in result.databases for t in d.table_counts}
    assert counts["public.awkward"].source_rows == counts["public.awkward"].target_rows == 5
    assert counts["public.wide"].target_rows == 3000 and result.rows > 50000
    assert result.smoke, "the write test as the app role did not run"
    appdb = next(d for d in result.databases if d.database == "appdb")
    assert appdb.large_objects.source_objects == appdb.large_objects.target_objects == 3


CASES = [
    ("a deleted row", "DELETE FROM public.orders WHERE id = 1234", ["public.orders: id in [", "rows on the source"]),
    ("a changed value in a wide row", "UPDATE public.wide SET c17 = 'changed' WHERE id = 2222",
     ["public.wide: id in [", "same row count, different content"]),
    ("a row moved to another chunk", "DELETE FROM public.orders WHERE id = 4998; UPDATE public.orders SET id = 4998 WHERE id = 17",
     ["public.orders: id in [1, ", "rows on the source", "same row count, different content"]),
    ("a changed value in a table without a key", "UPDATE public.awkward SET n = 0.2 WHERE label = 'a'",
     ["public.awkward: whole table (no primary key): same row count, different content"]),
    ("a missing index", "DROP INDEX public.wide_c5", ["index public.wide_c5 is missing on the target"]),
    ("an invalid index", "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'public.wide_c5'::regclass",
     ["index public.wide_c5 is invalid on the target"]),
    ("a sequence behind", "SELECT setval('public.orders_id_seq', 5)", ["sequence public.orders_id_seq is behind"]),
    ("an extra table", "CREATE TABLE public.extra (x int)", ["table public.extra exists only on the target"]),
    ("a missing extension", "DROP EXTENSION pg_trgm", ["extension pg_trgm is missing on the target"]),
    ("a changed column type", "ALTER TABLE public.wide ALTER COLUMN c3 TYPE text",
     ["column public.wide.c3 differs", "character varying(40)"]),
    ("a changed byte in a large object", "SELECT lo_put(4244, 70000, 'Z')",
     ["large object 4244: same size (160000 bytes), different content"]),
    ("a truncated large object", "SELECT lo_truncate(lo_open(4242, 131072), 5)",
     ["large object 4242: 18 bytes on the source, 5 on the target"]),
    ("a missing large object", "SELECT lo_unlink(4243)", ["large object 4243 is missing on the target"]),
    ("an extra large object", "SELECT lo_from_bytea(9999, 'extra')", ["large object 9999 exists only on the target"]),
    ("a large object's comment", "COMMENT ON LARGE OBJECT 4244 IS 'changed'", ["large object 4244: comment differ"]),
    ("a changed database setting", "ALTER DATABASE appdb SET work_mem = '16MB'",
     ["setting work_mem (database appdb) is '16MB' on the target, '8MB' before the freeze"]),
]


@pytest.mark.parametrize("ahead", [False, True], ids=["source read now", "source hashed during the copy"])
@pytest.mark.parametrize(("what", "mutation", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_kind_of_difference_is_detected_and_named(pair, sandbox_root, what, mutation, expected, ahead):  # type: ignore[no-untyped-def]
    """Each kind of difference injected into a perfect copy fails verification with a problem that names the object
    and how it differs, whether the source's side is read now or was hashed while the copy ran."""
    hashes = hashed_ahead(pair[2]) if ahead else None
    result = _verify_with(pair, sandbox_root, mutation, source_hashes=hashes)
    assert not result.ok, f"{what} went unnoticed"
    text = "\n".join(result.problems)
    for needle in expected:
        assert needle in text, f"{what}: {needle!r} not in\n{text}"
    if hashes is not None:
        assert result.source_hashed_during_copy == len(hashes) > 10


def test_a_real_database_of_500_tables_with_3_differences_fits_slack_and_names_all_3(source, target, passwords):  # type: ignore[no-untyped-def]
    """Real copy, real verification, three injected differences: the summary fits and names each; the report has all 500."""
    from pgmove.handlers import blocks
    from pgmove.sandbox.fakeslack.limits import check_blocks
    from pgmove.state import actions
    from pgmove.state.models import Plan

    with psycopg.connect(source.admin_dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE many")
    with psycopg.connect(source.admin_dsn("many"), autocommit=True) as conn:
        conn.execute("DO $$ BEGIN FOR i IN 1..500 LOOP EXECUTE format("
                     "'CREATE TABLE t%s (id int PRIMARY KEY, v text); INSERT INTO t%s SELECT g, md5(g::text) "
                     "FROM generate_series(1, 20) g', i, i); END LOOP; END $$")
    src = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ())
    dst = Endpoint("prod-new", target.tcp_dsn("pgmove"), passwords.target_pgmove, ())
    copy.run(copy.CopyJob(src, dst, ["many"], 2, choose_toolset(15, 15), None, None, []),
             lambda *a, **k: None, lambda name: None, lambda: False)
    with psycopg.connect(target.admin_dsn("many"), autocommit=True) as conn:
        conn.execute("DELETE FROM t7 WHERE id = 3")
        conn.execute("UPDATE t250 SET v = 'changed' WHERE id = 11")
        conn.execute("INSERT INTO t499 VALUES (21, 'extra')")
    result = verify.run(src, dst, ["many"], None, lambda *a, **k: None, jobs=2)
    assert not result.ok and result.tables == 500
    m = actions.new_migration("mig-500", Plan(source="prod-old", target="prod-new"), "U_ALICE", datetime.now(UTC)).migration
    m.verification = result
    (text, summary), full = blocks.verification_message(m)
    check_blocks(summary)
    shown = str(summary)
    for table in ("public.t7", "public.t250", "public.t499"):
        assert table in shown, f"{table} not named in the summary"
    assert full is not None and all(f"public.t{i}:" in full for i in range(1, 501))


def test_a_freshness_check_compares_the_newest_value(pair, sandbox_root):  # type: ignore[no-untyped-def]
    """A configured freshness check names the table and both maxima when they differ."""
    check = [{"database": "appdb", "table": "public.orders", "column": "created_at"}]
    assert _verify_with(pair, sandbox_root, None, freshness=check).ok
    result = _verify_with(pair, sandbox_root, "UPDATE public.orders SET created_at = '2099-01-01' WHERE id = 2", freshness=check)
    assert any("freshness of public.orders.created_at" in p for p in result.problems), result.problems


def test_quick_mode_keeps_exact_counts_and_says_it_was_quick(pair, sandbox_root):  # type: ignore[no-untyped-def]
    """Quick samples content but still counts every row: a deleted row is always found."""
    assert _verify_with(pair, sandbox_root, None, quick=True).mode == "quick"
    result = _verify_with(pair, sandbox_root, "DELETE FROM public.wide WHERE id = 2999", quick=True)
    assert any("public.wide" in p and "rows on the source" in p for p in result.problems), result.problems


def test_a_table_with_equal_counts_but_different_content_is_not_marked_ok(pair, sandbox_root):  # type: ignore[no-untyped-def]
    """The per-table line agrees with the headline: equal counts with a changed value or column are a DIFF."""
    from pgmove.handlers import blocks

    result = _verify_with(pair, sandbox_root, "UPDATE public.wide SET c17 = 'changed' WHERE id = 2222; "
                                              "ALTER TABLE public.awkward ALTER COLUMN label TYPE varchar(20)")
    tables = {t.table: t for d in result.databases for t in d.table_counts}
    assert tables["public.wide"].source_rows == tables["public.wide"].target_rows
    assert tables["public.wide"].ok is False and tables["public.awkward"].ok is False
    assert tables["public.orders"].ok is True
    report = blocks.full_verification_report("verification failed", result) or ""
    assert "DIFF public.wide: source 3000, target 3000" in report and "DIFF public.awkward:" in report
    assert "ok   public.orders:" in report


def test_the_copy_hashes_the_source_in_idle_time_and_the_verification_reads_only_the_target_for_those(source, target, passwords):  # type: ignore[no-untyped-def]
    """A real copy hashes source tables while it runs, and the verification after it uses those sums and still passes,
    then still finds a row changed on the target after the copy."""
    src = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",))
    dst = Endpoint("prod-new", target.tcp_dsn("pgmove"), passwords.target_pgmove, ("app",))
    hashes = SourceHashes(src)
    job = copy.CopyJob(src, dst, DATABASES, 2, choose_toolset(15, 15), None, None, [], source_hashes=hashes)
    copy.run(job, lambda *a, **k: None, lambda name: None, lambda: False)
    assert len(hashes) > 0, "no idle core hashed anything during the copy"
    result = verify.run(src, dst, DATABASES, None, lambda *a, **k: None, jobs=2, source_hashes=hashes)
    assert result.ok, result.problems
    assert result.source_hashed_during_copy == len(hashes)
    with psycopg.connect(target.admin_dsn("pagila"), autocommit=True) as conn:
        conn.execute("UPDATE public.actor SET first_name = 'X' WHERE actor_id = 7")
    again = verify.run(src, dst, DATABASES, None, lambda *a, **k: None, jobs=2, source_hashes=hashes)
    assert not again.ok and any("public.actor" in p for p in again.problems), again.problems
