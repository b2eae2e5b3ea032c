"""Unfreeze while a step runs: the step stops within seconds (its sessions and client programs ended on both
servers), the source is put back at once, and a later freeze and copy start clean."""

from __future__ import annotations

import json
import time
import tomllib

import psycopg
import pytest

from pgmove.sandbox.servers import wait_until
from pgmove.state.store import Store

pytestmark = pytest.mark.slow

STOPPED_WITHIN = 15.0  # seconds from the unfreeze request to a writable source; the step alone would take 60+


def store_of(pgmove) -> Store:  # type: ignore[no-untyped-def]
    return Store.from_url(tomllib.loads(pgmove.config_path.read_text())["redis_url"])


def state(pgmove) -> str:  # type: ignore[no-untyped-def]
    return str(json.loads(pgmove.do("U_ALICE", "status prod-old", "--json").stdout)["state"])


def read_only(source) -> bool:  # type: ignore[no-untyped-def]
    with psycopg.connect(source.admin_dsn("appdb")) as conn:
        return conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"


def active(cluster, needle: str) -> int:  # type: ignore[no-untyped-def]
    with psycopg.connect(cluster.admin_dsn("postgres")) as conn:
        return int(conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
                                (f"%{needle}%",)).fetchone()[0])


def unfreeze_and_time_it(pgmove, source) -> float:  # type: ignore[no-untyped-def]
    asked = time.monotonic()
    assert pgmove.do("U_ALICE", "unfreeze prod-old").returncode == 0
    wait_until(lambda: state(pgmove) == "ready" and not read_only(source), 200, "the source unfrozen", every=0.2)
    return time.monotonic() - asked


def test_unfreeze_during_the_copy_stops_it_at_once_and_a_new_freeze_copies_afresh(pgmove, source, target):  # type: ignore[no-untyped-def]
    """The copy is in a 60 s REFRESH on the target when alice unfreezes: the refresh is ended there, the source
    is writable within seconds, and the next freeze copies everything again and verifies."""
    source.psql("-c", "CREATE DATABASE slowdb")
    with psycopg.connect(source.admin_dsn("slowdb"), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.knob (s float8 PRIMARY KEY)")
        conn.execute("INSERT INTO public.knob VALUES (0)")
        conn.execute("CREATE MATERIALIZED VIEW public.slow AS "
                     "SELECT s, (SELECT 1 FROM pg_catalog.pg_sleep(s)) AS one FROM public.knob")
        conn.execute("UPDATE public.knob SET s = 60")  # the copy's REFRESH on the target will sleep a minute
    pgmove.start_worker()
    assert pgmove.do("U_ALICE", "plan prod-old prod-new", "--wait").returncode == 0
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    assert pgmove.do("U_BOB", "approve prod-old").returncode == 0
    wait_until(lambda: active(target, "REFRESH MATERIALIZED VIEW"), 120, "the copy's slow refresh", every=0.2)

    took = unfreeze_and_time_it(pgmove, source)
    assert took < STOPPED_WITHIN, f"the source was writable again only after {took:.0f}s"
    assert active(target, "REFRESH MATERIALIZED VIEW") == 0, "the stopped copy left its refresh running on the target"
    m = store_of(pgmove).active_for("prod-old")
    copy = m.last_step("copy")
    assert copy.status == "failed" and "stopped" in copy.message
    assert not store_of(pgmove).checkpoints(m.id), "the source took writes again: no earlier table may be kept"

    with psycopg.connect(source.admin_dsn("slowdb"), autocommit=True) as conn:
        conn.execute("UPDATE public.knob SET s = 0")  # written after the unfreeze: the next copy must carry it
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    done = json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)
    assert done["state"] == "verified", done.get("failure")
    with psycopg.connect(target.admin_dsn("slowdb")) as conn:
        assert conn.execute("SELECT s FROM public.knob").fetchall() == [(0.0,)]


def test_unfreeze_during_the_grace_period_stops_the_freeze_at_once(pgmove, source):  # type: ignore[no-untyped-def]
    """A session in a transaction gets 60 s to finish; alice unfreezes 1 s into it: the source is back within
    seconds, the session was never ended, and a later freeze works."""
    pgmove.start_worker()
    assert pgmove.do("U_ALICE", "plan prod-old prod-new", "--wait").returncode == 0
    busy = psycopg.connect(source.admin_dsn("appdb"))
    try:
        busy.execute("SELECT count(*) FROM public.orders")  # now idle in transaction
        assert pgmove.do("U_ALICE", "freeze prod-old --grace 60s").returncode == 0
        assert pgmove.do("U_BOB", "approve prod-old").returncode == 0
        store = store_of(pgmove)
        m = store.active_for("prod-old")
        wait_until(lambda: any("to finish" in e.message for e in store.events(m.id)), 60, "the grace period", every=0.2)

        took = unfreeze_and_time_it(pgmove, source)
        assert took < STOPPED_WITHIN, f"the source was writable again only after {took:.0f}s"
        assert busy.execute("SELECT 1").fetchone() == (1,), "the session in its grace period was ended"
        freeze = store.get(m.id).last_step("freeze")
        assert freeze.status == "failed" and "stopped" in freeze.message
    finally:
        busy.close()
    assert pgmove.do("U_ALICE", "freeze prod-old --grace 1s").returncode == 0
    done = json.loads(pgmove.do("U_BOB", "approve prod-old", "--wait", "--json").stdout)
    assert done["state"] == "verified", done.get("failure")
