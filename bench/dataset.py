"""The reference dataset of the copy and verify benchmarks: about 1.1 GB in three databases.

pgbench scale 50 with foreign keys, a 2-million-row table with jsonb and two secondary indexes, Pagila.
"""

from __future__ import annotations

import subprocess

import psycopg
from psycopg import sql

from pgmove.sandbox.sampledata import PAGILA
from pgmove.sandbox.servers import PgCluster

DATABASES = ["bench", "docs", "pagila"]


def build(cluster: PgCluster, scale: int = 50, doc_rows: int = 2_000_000) -> None:
    with psycopg.connect(cluster.admin_dsn(), autocommit=True) as conn:
        for db in DATABASES:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    subprocess.run([str(cluster.bin_dir / "pgbench"), "-i", "-q", "-s", str(scale), "-I", "dtGvpf",
                    "-d", cluster.admin_dsn("bench")], check=True, capture_output=True)
    with psycopg.connect(cluster.admin_dsn("docs"), autocommit=True) as conn:
        conn.execute("""CREATE TABLE documents (id bigint PRIMARY KEY, customer int NOT NULL, created_at timestamptz NOT NULL,
                        body jsonb NOT NULL)""")
        conn.execute("""INSERT INTO documents SELECT g, g %% 50000, '2020-01-01'::timestamptz + g * interval '1 minute',
                        jsonb_build_object('n', g, 'tags', jsonb_build_array('a' || g %% 7, 'b' || g %% 11),
                                           'text', md5(g::text) || md5((g + 1)::text))
                        FROM generate_series(1, %s) g""", (doc_rows,))
        conn.execute("CREATE INDEX documents_customer ON documents (customer)")
        conn.execute("CREATE INDEX documents_created ON documents (created_at)")
        conn.execute("VACUUM ANALYZE documents")
    cluster.psql("-f", str(PAGILA / "pagila-schema.sql"), dbname="pagila")
    cluster.psql("-f", str(PAGILA / "pagila-data.sql"), dbname="pagila")


def size_bytes(cluster: PgCluster) -> int:
    with psycopg.connect(cluster.admin_dsn()) as conn:
        return int(conn.execute("SELECT sum(pg_database_size(datname)) FROM pg_database WHERE datname = ANY(%s)",
                                (DATABASES,)).fetchone()[0])  # type: ignore[index]
