"""The quiet check and verification see every write past the freeze, and only those."""

from __future__ import annotations

import psycopg
import pytest

from pgmove.state.models import FreezeMode
from pgmove.steps import copy, freeze, quiet, verify
from pgmove.steps.connect import Endpoint
from pgmove.steps.tools import choose_toolset

pytestmark = pytest.mark.slow
MOVED = ["appdb", "archive", "pagila"]


def _frozen(source, passwords, setup: str | None = None):  # type: ignore[no-untyped-def]
    """Freeze the source as pgmove does; return the endpoint, the snapshot and both halves of the baseline."""
    if setup:
        with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
            conn.execute(setup)
    src = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",))
    snap = freeze.capture(src, FreezeMode.READ_ONLY, "test")
    freeze.apply(src, snap, 0.5, lambda *a, **k: None)
    return src, snap, quiet.fingerprint(src, snap.databases), quiet.mark(src, with_passwords=True)


def _superuser(source, db: str, *statements: str) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(source.admin_dsn(db), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def test_a_write_with_track_counts_off_is_seen_through_transaction_ids(source, passwords):  # type: ignore[no-untyped-def]
    """Counters that a session turned off stay still; the transaction id it took names the database and table."""
    src, snap, baseline, mark = _frozen(source, passwords)
    assert quiet.server_changes(src, mark, MOVED, snap.databases).problems == []
    _superuser(source, "appdb", "SET track_counts = off", "SET session_replication_role = replica",
               "BEGIN READ WRITE; UPDATE public.orders SET total = total + 1 WHERE id = 7; COMMIT")
    assert quiet.changed(baseline, quiet.fingerprint(src, snap.databases)) == []  # the counters are blind to it
    problems = quiet.server_changes(src, mark, MOVED, snap.databases).problems
    assert any(p.startswith("appdb: public.orders: rows written by 1 transaction") for p in problems), problems


def test_a_delete_with_track_counts_off_leaves_no_row_and_still_blocks(source, passwords):  # type: ignore[no-untyped-def]
    """A committed transaction whose rows cannot be placed is a write we cannot explain: it blocks."""
    src, snap, _baseline, mark = _frozen(source, passwords)
    _superuser(source, "pagila", "SET track_counts = off", "SET session_replication_role = replica",
               "BEGIN READ WRITE; DELETE FROM public.payment WHERE payment_id IN "
               "(SELECT payment_id FROM public.payment LIMIT 3); COMMIT")
    problems = quiet.server_changes(src, mark, MOVED, snap.databases).problems
    assert any("1 committed transaction(s) left no row we can place" in p for p in problems), problems


def test_autovacuum_analyze_and_an_unmoved_database_do_not_cry_wolf(source, passwords):  # type: ignore[no-untyped-def]
    """ANALYZE writes only statistics; a database that is not moved is noted, not blocking."""
    _superuser(source, "postgres", "CREATE DATABASE scratch")
    _superuser(source, "scratch", "CREATE TABLE notes (x int)")
    src, snap, _baseline, mark = _frozen(source, passwords)
    _superuser(source, "appdb", "BEGIN READ WRITE; ANALYZE public.orders; COMMIT")
    _superuser(source, "pagila", "BEGIN READ WRITE; ANALYZE; COMMIT")
    assert quiet.server_changes(src, mark, MOVED, snap.databases).problems == []
    _superuser(source, "scratch", "SET session_replication_role = replica",
               "BEGIN READ WRITE; INSERT INTO notes VALUES (1); COMMIT")
    found = quiet.server_changes(src, mark, MOVED, snap.databases)
    assert found.problems == [] and any(n.startswith("scratch (not moved): public.notes") for n in found.notes), found


def test_a_large_object_changed_through_a_security_definer_function_moves_the_fingerprint(source, passwords):  # type: ignore[no-untyped-def]
    """Same count of large objects, new content: the per-database fingerprint sees the new pages."""
    src, snap, baseline, mark = _frozen(source, passwords, """
        SELECT lo_from_bytea(4242, 'hello');
        CREATE FUNCTION public.touch(o oid) RETURNS int SECURITY DEFINER LANGUAGE sql AS $$ SELECT lo_put(o, 0, 'J'); SELECT 1 $$;
        GRANT EXECUTE ON FUNCTION public.touch(oid) TO app""")
    with psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as conn:
        conn.execute("BEGIN READ WRITE; SELECT public.touch(4242); COMMIT")
    with psycopg.connect(source.admin_dsn("appdb")) as conn:
        assert conn.execute("SELECT lo_get(4242)").fetchone()[0] == b"Jello"
    assert quiet.changed(baseline, quiet.fingerprint(src, snap.databases)) == ["appdb"]
    problems = quiet.server_changes(src, mark, MOVED, snap.databases).problems
    assert any(p.startswith("appdb: pg_catalog.pg_largeobject") for p in problems), problems


def test_databases_and_roles_created_renamed_or_changed_during_the_freeze_are_named(source, passwords):  # type: ignore[no-untyped-def]
    """Event triggers do not fire for shared objects; the comparison with the source as a whole does."""
    src, snap, _baseline, mark = _frozen(source, passwords)
    # The freeze takes CREATEDB and CREATEROLE from everyone else, so only a superuser can still do this.
    with psycopg.connect(source.admin_dsn(), autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")  # a session default anyone may change
        conn.execute("CREATE DATABASE sneaky")
        conn.execute("BEGIN READ WRITE; CREATE ROLE newbie; COMMIT")
    with psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as conn:
        conn.execute("BEGIN READ WRITE; ALTER ROLE app PASSWORD 'rotated'; COMMIT")
    _superuser(source, "postgres", "BEGIN READ WRITE; ALTER ROLE reporter RENAME TO reporter2; COMMIT")
    problems = quiet.server_changes(src, mark, MOVED, snap.databases).problems
    for needle in ("during the freeze, database sneaky was created", "during the freeze, role newbie was created",
                   "during the freeze, the password of role app was changed",
                   "during the freeze, role reporter was dropped or renamed", "during the freeze, role reporter2 was created"):
        assert needle in problems, (needle, problems)
    assert "rotated" not in str(problems) and "SCRAM" not in str(problems)


def test_a_password_rotated_after_the_copy_fails_verification_by_name(source, target, passwords):  # type: ignore[no-untyped-def]
    """Verification compares the source as a whole with what the freeze recorded: the copy has the old hash."""
    src, snap, _baseline, mark = _frozen(source, passwords)
    dst = Endpoint("prod-new", target.tcp_dsn("pgmove"), passwords.target_pgmove, ("app",))
    copy.run(copy.CopyJob(src, dst, MOVED, 2, choose_toolset(15, 15), snap, None, []),
             lambda *a, **k: None, lambda name: None, lambda: False)
    assert verify.run(src, dst, MOVED, snap, lambda *a, **k: None, mark=mark).ok
    with psycopg.connect(source.tcp_dsn("app", "appdb"), password=passwords.app, autocommit=True) as conn:
        conn.execute("BEGIN READ WRITE; ALTER ROLE app PASSWORD 'rotated'; COMMIT")
    result = verify.run(src, dst, MOVED, snap, lambda *a, **k: None, mark=mark)
    assert not result.ok and "during the freeze, the password of role app was changed" in result.problems



def test_the_quiet_check_sees_a_superuser_overriding_the_freeze(source, passwords):  # type: ignore[no-untyped-def]
    """Nothing written may go unnoticed: a superuser who disables the guards and writes moves the fingerprint."""
    src = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",))
    snap = freeze.capture(src, FreezeMode.READ_ONLY, "test")
    freeze.apply(src, snap, 0.5, lambda *a, **k: None)
    baseline = quiet.fingerprint(src, snap.databases)
    assert quiet.changed(baseline, quiet.fingerprint(src, snap.databases)) == []
    with psycopg.connect(source.admin_dsn("appdb"), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # the documented superuser override
        conn.execute("BEGIN READ WRITE; INSERT INTO public.orders (customer) VALUES ('override'); COMMIT")
    assert quiet.changed(baseline, quiet.fingerprint(src, snap.databases)) == ["appdb"]
    with psycopg.connect(source.admin_dsn("pagila"), autocommit=True) as conn:
        conn.execute("BEGIN READ WRITE; SELECT setval('public.actor_actor_id_seq', 99999); COMMIT")
    assert quiet.changed(baseline, quiet.fingerprint(src, snap.databases)) == ["appdb", "pagila"]
