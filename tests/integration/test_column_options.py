"""The cross-version column-option filter touches table definitions only, and only across major versions."""

from __future__ import annotations

import re

import psycopg
import pytest
from psycopg import sql

from pgmove.steps import copy
from pgmove.steps.connect import Endpoint
from pgmove.steps.tools import choose_toolset

pytestmark = pytest.mark.slow

# A line that looks exactly like a table's column options, inside a comment and inside a function body.
LOOKALIKE = "ALTER TABLE ONLY public.orders ALTER COLUMN customer SET (n_distinct=-1, made_up_option=5);"


def _user_text(cluster) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    with psycopg.connect(cluster.admin_dsn("appdb")) as conn:
        row = conn.execute("""SELECT obj_description('public.orders'::regclass, 'pg_class'),
                                     (SELECT prosrc FROM pg_proc WHERE proname = 'runbook'),
                                     (SELECT attoptions::text FROM pg_attribute
                                      WHERE attrelid = 'public.orders'::regclass AND attname = 'total')""").fetchone()
    assert row is not None
    # This build of PostgreSQL 15 gives every column its own pg_attver option (see fidelity.py): not ours to compare.
    return row[0], row[1], re.sub(r"pg_attver=[^,}]*,?", "", row[2])


def _prepare(source) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute(sql.SQL("COMMENT ON TABLE public.orders IS {}").format(f"how we tuned it:\n{LOOKALIKE}\n"))
        body = sql.SQL(" SELECT {} ").format(f"\n{LOOKALIKE}\n").as_string(conn)
        conn.execute(sql.SQL("CREATE FUNCTION public.runbook() RETURNS text LANGUAGE sql AS {}").format(body))
        conn.execute("ALTER TABLE public.orders ALTER COLUMN total SET (n_distinct = 42)")
    return _user_text(source)


@pytest.mark.parametrize("target_fixture", ["target", "target18"])
def test_function_bodies_and_comments_arrive_byte_for_byte(source, passwords, request, target_fixture):  # type: ignore[no-untyped-def]
    """Between equal versions nothing is filtered; across versions only the tables' own column options are."""
    target = request.getfixturevalue(target_fixture)
    expected = _prepare(source)
    src = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ())
    dst = Endpoint("prod-new", target.tcp_dsn("pgmove"), passwords.target_pgmove, ())
    with psycopg.connect(target.admin_dsn()) as conn:
        major = int(conn.info.server_version) // 10000
    result = copy.run(copy.CopyJob(src, dst, ["appdb"], 2, choose_toolset(15, major), None, None, []),
                      lambda *a, **k: None, lambda name: None, lambda: False)
    assert _user_text(target) == expected
    assert expected[2] == "{n_distinct=42}"
    # Across versions the build's own option is the one left out; between equal versions nothing is.
    assert result["column_options_left_out"] == ([] if target_fixture == "target" else ["pg_attver"])
