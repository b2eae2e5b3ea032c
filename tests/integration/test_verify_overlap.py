"""The verification overlapped with the copy: each table's target side is hashed as it lands, and a difference made
on the target after that (in the copy's last moments) is still found, and named as a verification that reads
everything afresh names it."""

from __future__ import annotations

import itertools
import shutil
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgmove.sandbox.servers import PgCluster
from pgmove.state.report import VerificationReport
from pgmove.steps import copy, verify
from pgmove.steps.connect import Endpoint, connection
from pgmove.steps.prehash import SourceHashes
from pgmove.steps.targethash import TargetHashes
from pgmove.steps.tools import choose_toolset
from tests.integration.test_verify import CASES, _awkward, small_chunks  # noqa: F401  (autouse: several ranges here too)

pytestmark = pytest.mark.slow
_n = itertools.count()
DATABASES = ["appdb"]
WAIT = 600  # seconds: a bound for a broken test, never a synchronisation
# What the copy's own post-data puts back as it was before the freeze: made after the copy, before the verification.
AFTER_THE_COPY = {"a changed database setting"}
OVERLAP_CASES = [
    *CASES,
    ("a table emptied and refilled with one value changed",
     "BEGIN; CREATE TEMP TABLE keep AS SELECT * FROM public.wide; UPDATE keep SET c17 = 'changed' WHERE id = 2222; "
     "TRUNCATE public.wide; INSERT INTO public.wide SELECT * FROM keep ORDER BY id; COMMIT",
     ["public.wide: id in [", "same row count, different content"]),
]


@pytest.fixture(scope="module")
def awkward_source(golden_source, sandbox_root) -> Iterator[PgCluster]:  # type: ignore[no-untyped-def]
    source = golden_source.clone(sandbox_root / f"osrc{next(_n)}", "osrc").start()
    _awkward(source)
    yield source
    source.stop()
    shutil.rmtree(source.base, ignore_errors=True)


class _Watched(TargetHashes):
    """The copy's target hashes, telling the test each time a table is hashed."""

    def __init__(self, endpoint: Endpoint) -> None:
        super().__init__(endpoint)
        self.changed = threading.Condition()

    def hash_table(self, database: str, schema: str, name: str) -> None:
        super().hash_table(database, schema, name)
        with self.changed:
            self.changed.notify_all()


class _LastMoments:
    """The copy's progress callback: when the last table's data and indexes are in (the copy says "data in" and is
    about to finish post-data), that pool worker waits until every table is hashed on the target, then runs
    `inject` on the target, and the copy goes on."""

    def __init__(self, target: PgCluster, tables: list[tuple[str, str]], hashes: _Watched, inject: str | None) -> None:
        self.target, self.tables, self.hashes, self.inject = target, tables, hashes, inject
        self.reached = False

    def __call__(self, text: str, **fields: Any) -> None:
        if fields.get("database") != "appdb" or ": data in (" not in text or self.reached:
            return
        self.reached = True
        with self.hashes.changed:
            done = self.hashes.changed.wait_for(lambda: all(self.hashes.get("appdb", *t) for t in self.tables), WAIT)
        assert done, "the target side of some tables was never hashed during the copy"
        if self.inject:
            with psycopg.connect(self.target.admin_dsn("appdb"), autocommit=True) as conn:
                conn.execute(self.inject)


def _copy_then_verify(source: PgCluster, target: PgCluster, passwords, during: str | None = None,  # type: ignore[no-untyped-def]
                      after: str | None = None) -> tuple[VerificationReport, VerificationReport]:
    """A real copy hashing both sides as it goes, `during` injected in its last moments and `after` once it is done;
    then the overlapped verification, and one that reads everything afresh, to compare with."""
    src = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",))
    dst = Endpoint("prod-new", target.tcp_dsn("pgmove"), passwords.target_pgmove, ("app",))
    with connection(src, "appdb") as conn:
        tables = [(r[0], r[1]) for r in conn.execute(verify.TABLES).fetchall()]
    source_hashes, target_hashes = SourceHashes(src), _Watched(dst)
    moments = _LastMoments(target, tables, target_hashes, during)
    job = copy.CopyJob(src, dst, DATABASES, 2, choose_toolset(15, 15), None, None, [], source_hashes=source_hashes,
                       target_hashes=target_hashes)
    copy.run(job, moments, lambda name: None, lambda: False)
    assert moments.reached and len(target_hashes) == len(tables) >= 4
    if after:
        with psycopg.connect(target.admin_dsn("appdb"), autocommit=True) as conn:
            conn.execute(after)
    overlapped = verify.run(src, dst, DATABASES, None, lambda *a, **k: None, jobs=2, source_hashes=source_hashes,
                            target_hashes=target_hashes)
    afresh = verify.run(src, dst, DATABASES, None, lambda *a, **k: None, jobs=2)
    return overlapped, afresh


@pytest.mark.parametrize(("what", "mutation", "expected"), OVERLAP_CASES, ids=[c[0] for c in OVERLAP_CASES])
def test_a_difference_made_on_the_target_after_its_table_was_hashed_is_found_and_named_alike(  # type: ignore[no-untyped-def]
        awkward_source, target, passwords, what, mutation, expected):
    """Each kind of difference the verification tests inject, made on the target after the copy hashed the table there,
    fails the overlapped verification with exactly the problems a verification reading everything afresh reports."""
    late = what in AFTER_THE_COPY
    overlapped, afresh = _copy_then_verify(awkward_source, target, passwords, during=None if late else mutation,
                                           after=mutation if late else None)
    assert not overlapped.ok, f"{what} went unnoticed"
    assert overlapped.problems == afresh.problems
    text = "\n".join(overlapped.problems)
    for needle in expected:
        assert needle in text, f"{what}: {needle!r} not in\n{text}"
    # every table's both sides came from the copy: reused, or (changed since) read again by the proof's failure
    assert overlapped.source_hashed_during_copy == overlapped.tables >= 4
    assert overlapped.target_hashed_during_copy + overlapped.target_changed_since_hashed == overlapped.tables


def test_an_unchanged_target_reuses_every_hash_and_a_rewritten_one_is_read_again(awkward_source, target, passwords):  # type: ignore[no-untyped-def]
    """With nothing written, the verification after the copy reads no table's rows on either side; a row updated to
    the value it had fails the proof, so that table is read again, and it still passes."""
    overlapped, afresh = _copy_then_verify(awkward_source, target, passwords,
                                           during="UPDATE public.wide SET c17 = c17 WHERE id = 2222")
    assert overlapped.ok and afresh.ok, overlapped.problems
    assert overlapped.target_changed_since_hashed == 1
    assert overlapped.target_hashed_during_copy == overlapped.tables - 1 == overlapped.source_hashed_during_copy - 1


def test_hashes_taken_in_sessions_with_other_display_settings_still_compare(awkward_source, target, passwords):  # type: ignore[no-untyped-def]
    """The target's pgmove role formats dates, times, floats, intervals and bytea otherwise than the source's: every
    verification session pins those settings, so the awkward types hash alike on both sides."""
    with psycopg.connect(target.admin_dsn("postgres"), autocommit=True) as conn:
        for name, value in (("TimeZone", "Asia/Kolkata"), ("DateStyle", "SQL, DMY"), ("IntervalStyle", "sql_standard"),
                            ("extra_float_digits", "0"), ("bytea_output", "escape")):
            conn.execute(sql.SQL("ALTER ROLE pgmove SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
    overlapped, afresh = _copy_then_verify(awkward_source, target, passwords)
    assert afresh.ok, afresh.problems
    assert overlapped.ok and overlapped.target_hashed_during_copy == overlapped.tables, overlapped.problems
