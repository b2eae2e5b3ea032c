"""Fidelity: Pagila and a database of awkward cases copy with no difference, to PostgreSQL 15 and to 18.

Through the real flow (plan, freeze, approve, copy, verify), with tables split into ranges (above 1 MB
here) and both the in-process and the psql-streamed paths in use. The source is measured before the
freeze; the target after the copy; both with the same pg_dump. Across versions the schema is compared
with what the target's server makes of the source's schema through a plain pg_dump | psql.
"""

from __future__ import annotations

import json

import pytest

from pgmove.steps.tools import choose_toolset
from tests.integration import fidelity

pytestmark = pytest.mark.slow

DATABASES = ["appdb", "archive", "awkward", "pagila"]


def small_ranges(pgmove) -> None:  # type: ignore[no-untyped-def]
    """Split every table above 1 MB, so ranges are exercised on test-sized data."""
    text = pgmove.config_path.read_text()
    pgmove.config_path.write_text(text.replace("redis_url =", "split_table_mb = 1\nredis_url =", 1))


@pytest.mark.parametrize("target_major", [15, 18])
def test_everything_arrives_exactly(request, source, target_major):  # type: ignore[no-untyped-def]
    """Every database's schema, rows, sequences and large objects arrive on a PostgreSQL 15 or 18 target with no
    difference a pg_dump can see."""
    pgmove = request.getfixturevalue("pgmove" if target_major == 15 else "pgmove18")
    target = request.getfixturevalue("target" if target_major == 15 else "target18")
    fidelity.add_awkward_database(source)
    toolset = choose_toolset(15, target_major)
    assert toolset is not None
    pg_dump = toolset.path("pg_dump")
    before = fidelity.snapshot(source, DATABASES, pg_dump)
    source_schemas = {db: fidelity.raw_schema(source, db, pg_dump) for db in DATABASES}
    small_ranges(pgmove)
    pgmove.start_worker()

    assert json.loads(pgmove.do("U_ALICE", "plan prod-old prod-new --jobs 3", "--wait", "--json").stdout)["state"] == "ready"
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    done = json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)
    assert done["state"] == "verified", (done.get("failure"), (done.get("verification") or {}).get("problems"))

    after = fidelity.snapshot(target, DATABASES, pg_dump)
    if target_major != 15:
        for db in DATABASES:
            before[db]["schema"] = fidelity.reference_schema(source_schemas[db], target, db, pg_dump)
    problems = fidelity.differences(before, after)
    assert not problems, "\n".join(problems)
    copied = next(s for s in done["steps"] if s["name"] == "copy")["result"]
    awkward = next(d for d in copied["databases"] if d["database"] == "awkward")
    assert awkward["large_objects"] == 3 and awkward["sequences"] >= 8
