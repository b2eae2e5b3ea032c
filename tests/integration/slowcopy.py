"""A copy slow enough to watch: tables whose CHECK sleeps per row on the target only (a setting of the target)."""

from __future__ import annotations

import psycopg
from psycopg import sql

from pgmove.sandbox.servers import PgCluster

SLOW_TABLES = 3
ROWS = 200
ROW_SLEEP = 0.01  # seconds per row on the target: each slow table takes about ROWS * ROW_SLEEP to land

_SLOW_OK = """
CREATE FUNCTION public.slow_ok(x integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.pg_sleep(coalesce(nullif(pg_catalog.current_setting('pgmove_test.row_sleep', true), ''), '0')::float8);
    RETURN true;
END $$
"""


def make_copy_slow(source: PgCluster, target: PgCluster, rows: int = ROWS) -> None:
    """`slowdb` on the source with SLOW_TABLES tables of `rows` rows whose CHECK sleeps ROW_SLEEP per row where
    pgmove_test.row_sleep is set: only for pgmove on the target, so the copy streams slowly and nothing else does."""
    source.psql("-c", "CREATE DATABASE slowdb")
    with psycopg.connect(source.admin_dsn("slowdb"), autocommit=True) as conn:
        conn.execute(_SLOW_OK)
        for n in range(SLOW_TABLES):
            conn.execute(sql.SQL("CREATE TABLE {} (id integer PRIMARY KEY CHECK (public.slow_ok(id)), pad text)").format(
                sql.Identifier("public", f"slow{n}")))
            conn.execute(sql.SQL("INSERT INTO {} SELECT i, repeat('x', 100) FROM generate_series(1, %s) i").format(
                sql.Identifier("public", f"slow{n}")), (rows,))
        conn.execute("ANALYZE")
    with psycopg.connect(target.admin_dsn("postgres"), autocommit=True) as conn:
        # The role pgmove copies as: a target-only setting outside the moved databases, which verification leaves be.
        conn.execute(sql.SQL("ALTER ROLE pgmove SET pgmove_test.row_sleep = {}").format(sql.Literal(str(ROW_SLEEP))))
