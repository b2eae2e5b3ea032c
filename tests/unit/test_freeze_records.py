"""The freeze's new records: they round-trip, the copy gets the role attributes as they were, ACL items group exactly."""

from __future__ import annotations

from datetime import UTC, datetime

from pgmove.state.models import AclItem, AclRow, FreezeSnapshot, RoleGrant, SubscriptionRow
from pgmove.steps import aclitems, freezeroles
from pgmove.steps.freezerecord import Found, is_own, refusal

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def snapshot() -> FreezeSnapshot:
    return FreezeSnapshot(
        taken_at=NOW, databases=["appdb"], logins=["app"], freeze_id="m1", role_oids={"app": 16384},
        database_oids={"appdb": 16390}, role_grants=[RoleGrant(oid=16384, name="app", createdb=True, createrole=False),
                                                     RoleGrant(oid=16400, name="ops", createdb=False, createrole=True)],
        subscriptions=[SubscriptionRow(oid=1, name="feed", database="appdb", database_oid=16390, enabled=True)],
        acls=[AclRow(database="appdb", kind="sequence", name="public.s", acl="{app=rwU/app}",
                     items=[AclItem(grantee=16384, grantor=16384, privileges="rwU")])])


def test_a_snapshot_with_every_new_part_round_trips_through_json_and_an_old_one_still_reads():
    """The store and the server's comment both hold it as JSON; a record written before oids were kept still loads."""
    snap = snapshot()
    assert FreezeSnapshot.model_validate_json(snap.model_dump_json()) == snap
    old = FreezeSnapshot.model_validate_json('{"taken_at": "2026-11-22T12:00:00Z", "databases": ["a"], "logins": ["x"]}')
    assert old.role_oids == {} and old.role_grants == [] and old.subscriptions == []


def test_the_copy_gets_the_attributes_the_freeze_took_as_they_were():
    """LOGIN (no-connect), CREATEDB and CREATEROLE from the record, never the frozen values."""
    assert freezeroles.before_freeze(snapshot()) == {
        "app": {"rolcanlogin": True, "rolcreatedb": True, "rolcreaterole": False},
        "ops": {"rolcreatedb": False, "rolcreaterole": True}}
    assert freezeroles.before_freeze(None) == {}


def test_acl_items_group_per_grantee_and_grantor_in_their_order_with_grant_options():
    exploded = [[16384, 10, "SELECT", False], [16384, 10, "UPDATE", True], [0, 10, "USAGE", False],
                [10, 10, "SELECT", False]]
    assert aclitems.items(exploded) == [AclItem(grantee=16384, grantor=10, privileges="rw*"),
                                        AclItem(grantee=0, grantor=10, privileges="U"),
                                        AclItem(grantee=10, grantor=10, privileges="r")]
    assert aclitems.items(None) is None


def test_only_the_same_freeze_counts_as_its_own_and_a_refusal_names_the_other():
    snap = snapshot()
    assert is_own(Found("appdb", snap), snap)
    assert not is_own(Found("appdb", snap.model_copy(update={"freeze_id": "m2"})), snap)
    assert not is_own(Found("appdb", None), snap)
    assert "already frozen by pgmove m1 since 2026-11-22 12:00:00 UTC" in refusal(Found("appdb", snap), "prod-old").message
    assert "with no record of what they replaced" in refusal(Found("appdb", None), "prod-old").message
