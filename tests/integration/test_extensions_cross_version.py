"""PostgreSQL 15 to 18 with contrib extensions in use: a perfect copy verifies and cuts over, the versions reported."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql

pytestmark = pytest.mark.slow

# Contrib extensions both the system's 15 and the embedded 18 ship; pg_stat_statements' view gains columns and
# its reset function gains an argument between the two.
EXTENSIONS = ("pg_stat_statements", "hstore", "citext", "pg_trgm", "ltree")


def test_databases_using_contrib_extensions_move_from_15_to_18_verify_and_cut_over(pgmove18, source, target18):  # type: ignore[no-untyped-def]
    """Members of an extension are the extension's business: their new shapes on 18 are no difference."""
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        for name in EXTENSIONS:
            conn.execute(sql.SQL("CREATE EXTENSION {}").format(sql.Identifier(name)))
        conn.execute("CREATE TABLE public.tagged (id int PRIMARY KEY, email citext, attrs hstore, path ltree)")
        conn.execute("INSERT INTO public.tagged SELECT g, 'User' || g || '@Example.com', hstore('k', g::text), "
                     "('top.n' || g)::ltree FROM generate_series(1, 200) g")
        conn.execute("CREATE INDEX tagged_trgm ON public.tagged USING gin ((email::text) gin_trgm_ops)")
    with psycopg.connect(source.admin_dsn("pagila"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
    pgmove18.start_worker()
    planned = json.loads(pgmove18.do("U_ALICE", "plan prod-old prod-new", "--wait", "--json").stdout)
    assert planned["state"] == "ready", (planned.get("failure"), planned.get("preflight", {}).get("problems"))
    assert pgmove18.do("U_ALICE", "freeze prod-old").returncode == 0
    verified = json.loads(pgmove18.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)
    report = verified.get("verification") or {}
    assert verified["state"] == "verified", (verified.get("failure"), report.get("problems"))
    notes = "\n".join(report.get("notes", []))
    with psycopg.connect(target18.admin_dsn("appdb")) as conn:
        new = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone()[0]
    with psycopg.connect(source.admin_dsn("appdb")) as conn:
        old = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone()[0]
    assert old != new, "the test needs an extension whose version differs between 15 and 18"
    assert f"appdb: extension pg_stat_statements is {old} on the source, {new} on the target" in notes, notes
    assert pgmove18.do("U_ALICE", "cutover prod-old").returncode == 0
    assert json.loads(pgmove18.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)["state"] == "cut_over"
    with psycopg.connect(target18.admin_dsn("appdb")) as conn:
        assert conn.execute("SELECT count(*) FROM public.tagged WHERE email = 'user7@example.com'").fetchone()[0] == 1
