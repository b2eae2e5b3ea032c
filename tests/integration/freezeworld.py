"""What a hostile app brings to a freeze: prepared transactions, a subscription fed by a real publisher, role powers."""

from __future__ import annotations

import psycopg
from psycopg import sql

from pgmove.sandbox.sampledata import Secrets
from pgmove.sandbox.servers import PgCluster, wait_until

FEED = "CREATE TABLE public.feed (id int PRIMARY KEY, note text)"


class Events:
    """The progress callback of a step, kept for the test to read."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.data: list[dict] = []

    def __call__(self, message: str, **data: object) -> None:
        self.messages.append(message)
        self.data.append(data)


def allow_prepared_transactions(cluster: PgCluster) -> None:
    """max_prepared_transactions needs a restart; the cluster keeps its port."""
    with psycopg.connect(cluster.admin_dsn(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET max_prepared_transactions = 10")
    port = cluster.port
    cluster.stop()
    cluster.start(port)


def prepare(cluster: PgCluster, user: str, password: str, gid: str, statement: str, db: str = "appdb") -> None:
    """A two-phase transaction left prepared by `user`, as a crashed coordinator leaves it."""
    with psycopg.connect(cluster.tcp_dsn(user, db), password=password, autocommit=True) as conn:
        conn.execute("BEGIN READ WRITE")
        conn.execute(statement)
        conn.execute(sql.SQL("PREPARE TRANSACTION {}").format(sql.Literal(gid)))


def subscribe(source: PgCluster, publisher: PgCluster, passwords: Secrets) -> None:
    """public.feed in appdb on the source, fed from the publisher's postgres database; proven to replicate."""
    with psycopg.connect(publisher.admin_dsn(), autocommit=True) as conn:
        conn.execute(FEED)
        conn.execute("CREATE PUBLICATION feed_pub FOR TABLE public.feed")
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute(FEED)
        conn.execute("ALTER TABLE public.feed OWNER TO app")
        dsn = f"{publisher.tcp_dsn('pgmove')} password={passwords.target_pgmove}"
        conn.execute(sql.SQL("CREATE SUBSCRIPTION feed_sub CONNECTION {} PUBLICATION feed_pub").format(sql.Literal(dsn)))
        # One that was off before the freeze must still be off after it.
        conn.execute(sql.SQL("CREATE SUBSCRIPTION idle_sub CONNECTION {} PUBLICATION feed_pub WITH (connect = false)"
                             ).format(sql.Literal(dsn)))
    publish(publisher, 1, "before the freeze")
    wait_until(lambda: fed(source, 1), 30, "the subscription to apply the first row")


def publish(publisher: PgCluster, row_id: int, note: str) -> None:
    with psycopg.connect(publisher.admin_dsn(), autocommit=True) as conn:
        conn.execute("INSERT INTO public.feed VALUES (%s, %s)", (row_id, note))


def fed(source: PgCluster, row_id: int) -> bool:
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM public.feed WHERE id = %s", (row_id,)).fetchone()[0] == 1  # type: ignore[index]


def apply_worker_running(source: PgCluster, name: str) -> bool:
    with psycopg.connect(source.admin_dsn(), autocommit=True) as conn:
        return bool(conn.execute("SELECT count(*) FROM pg_stat_subscription WHERE subname = %s AND pid IS NOT NULL",
                                 (name,)).fetchone()[0])  # type: ignore[index]


def slot_active(publisher: PgCluster, slot: str) -> bool:
    with psycopg.connect(publisher.admin_dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
    return bool(row and row[0])
