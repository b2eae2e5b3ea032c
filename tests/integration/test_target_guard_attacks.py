"""Attacks on the target's guards while it follows the source: writes that need no table must be refused too, or
the early split brain they were built against comes back through a side door."""

from __future__ import annotations

import psycopg
import pytest

from tests.integration.test_target_guard import in_sync

pytestmark = pytest.mark.slow
REFUSED = (psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InsufficientPrivilege)


def test_the_app_cannot_write_a_large_object_on_the_target_while_in_sync(pgmove, target, passwords):  # type: ignore[no-untyped-def]
    """A large object lives in no user table, so no statement trigger sees it. Written on the target while in sync,
    the app is told it is stored; the drain's finish then unlinks every object the source lacks, so at the cutover
    it is gone without a word (and the window's verification, run after that finish, cannot see it). The target
    must refuse it, as the frozen source does (guards.LARGE_OBJECT_WRITERS)."""
    pgmove.start_worker()
    in_sync(pgmove)
    with psycopg.connect(target.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as app:
        with pytest.raises(REFUSED):
            app.execute("SELECT lo_from_bytea(0, 'early split brain'::bytea)")
        with pytest.raises(REFUSED):
            app.execute("SELECT lo_create(0)")
