"""Roles on a pre-populated target are reconciled (attributes, memberships) without touching their passwords;
password hashes can be left out for managed targets."""

from __future__ import annotations

import psycopg
import pytest

from pgmove.steps.roles import copy_roles

pytestmark = pytest.mark.slow

ROLE = "SELECT rolcanlogin, rolconnlimit, rolcreatedb, rolpassword FROM pg_authid WHERE rolname = %s"


def test_existing_roles_are_reconciled_and_keep_their_password(source, target):  # type: ignore[no-untyped-def]
    """A role that already exists on the target takes the source's attributes and memberships and keeps the target's
    password hash."""
    with psycopg.connect(target.admin_dsn(), autocommit=True) as dst:
        dst.execute("CREATE ROLE reporter NOLOGIN CREATEDB CONNECTION LIMIT 1 PASSWORD 'set-by-the-target-admins'")
        target_hash = dst.execute(ROLE, ("reporter",)).fetchone()[3]
    with psycopg.connect(source.admin_dsn(), autocommit=True) as src, \
            psycopg.connect(target.admin_dsn(), autocommit=True) as dst:
        done = copy_roles(src, dst, {}, with_passwords=False)
        assert "reporter" in done["reconciled"] and done["not_reconciled"] == []
        assert dst.execute(ROLE, ("reporter",)).fetchone() == (True, 5, False, target_hash)  # the source's attributes
        assert dst.execute(ROLE, ("app",)).fetchone()[3] is None  # created without its hash, as asked
        members = dst.execute("SELECT 1 FROM pg_auth_members WHERE roleid = 'readers'::regrole "
                              "AND member = 'reporter'::regrole").fetchall()
        assert members, "the membership the source has was granted to the existing role"


def test_a_managed_target_without_superuser_is_reported_in_the_plan_with_what_works(pgmove, target):  # type: ignore[no-untyped-def]
    """A target where pgmove is not a superuser fails the plan with a problem naming the privileges it has and the
    copy_role_passwords = false way out."""
    import json

    target.psql("-c", "ALTER ROLE pgmove NOSUPERUSER CREATEROLE CREATEDB")
    pgmove.start_worker()
    done = pgmove.do("U_ALICE", "plan prod-old prod-new", "--wait", "--json")
    planned = json.loads(done.stdout)
    assert planned["state"] == "failed" and planned["preflight"], planned.get("failure")
    problems = " ".join(planned["preflight"]["problems"])
    assert "prod-new (pgmove) is not a superuser (it has CREATEROLE, CREATEDB): a managed service?" in problems
    assert "copy_role_passwords = false" in problems
