"""Logical replication subscriptions on the source: their apply workers write past every guard.

An apply worker is no client session (ending sessions misses it) and runs in replica mode (table
triggers do not fire), so the freeze disables each enabled subscription, waits until its worker is
gone, and unfreeze enables exactly those again, found by oid in whatever database holds them now.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

from pgmove.state.errors import StepFailed
from pgmove.state.models import SubscriptionRow
from pgmove.steps.connect import Endpoint, connection

WORKER_STOP_SECONDS = 30.0

_ALL = """
    SELECT s.oid::bigint, s.subname, d.datname, d.oid::bigint, s.subenabled
    FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid ORDER BY d.datname, s.subname
"""


def capture(conn: psycopg.Connection[Any]) -> list[SubscriptionRow]:
    return [SubscriptionRow(oid=oid, name=name, database=db, database_oid=db_oid, enabled=enabled)
            for oid, name, db, db_oid, enabled in conn.execute(_ALL).fetchall()]


def describe(rows: list[SubscriptionRow]) -> str:
    return ", ".join(f"{s.name} (in {s.database}, {'enabled' if s.enabled else 'disabled'})" for s in rows)


def disable(src: Endpoint, rows: list[SubscriptionRow], stop_seconds: float = WORKER_STOP_SECONDS) -> list[str]:
    """Disable the enabled ones and wait for their apply workers to exit; returns their names."""
    enabled = [s for s in rows if s.enabled]
    for sub in enabled:
        with connection(src, sub.database) as conn:
            conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(sql.Identifier(sub.name)))
    if enabled:
        with connection(src) as conn:
            _wait_for_workers(conn, [s.oid for s in enabled], stop_seconds)
    return [s.name for s in enabled]


def _wait_for_workers(conn: psycopg.Connection[Any], oids: list[int], stop_seconds: float) -> None:
    deadline = time.monotonic() + stop_seconds
    while True:
        running = [r[0] for r in conn.execute(
            "SELECT DISTINCT subname FROM pg_stat_subscription WHERE subid = ANY(%s) AND pid IS NOT NULL",
            (oids,)).fetchall()]
        if not running:
            return
        if time.monotonic() >= deadline:
            raise StepFailed(f"the apply worker of subscription(s) {', '.join(running)} did not stop within "
                             f"{stop_seconds:g}s of being disabled")
        time.sleep(0.1)


def enable(src: Endpoint, rows: list[SubscriptionRow], databases: dict[int, str]) -> tuple[list[str], list[str]]:
    """Enable again those the freeze disabled, under their names of today; returns (enabled, gone)."""
    done, gone = [], []
    for sub in (s for s in rows if s.enabled):
        database = databases.get(sub.database_oid)
        name = None
        if database is not None:
            with connection(src, database) as conn:
                row = conn.execute("SELECT subname FROM pg_subscription WHERE oid = %s", (sub.oid,)).fetchone()
                name = row[0] if row else None
                if name is not None:
                    conn.execute(sql.SQL("ALTER SUBSCRIPTION {} ENABLE").format(sql.Identifier(name)))
        if name is None:
            gone.append(f"subscription {sub.name} was dropped during the freeze")
        else:
            done.append(name)
    return done, gone
