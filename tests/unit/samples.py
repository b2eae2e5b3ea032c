"""Records that several test modules build on: a freeze snapshot with every part, a large verification report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pgmove.state.models import AclItem, AclRow, FreezeSnapshot, RoleGrant, SubscriptionRow
from pgmove.state.report import VerificationReport

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def snapshot() -> FreezeSnapshot:
    return FreezeSnapshot(
        taken_at=NOW, databases=["appdb"], logins=["app"], freeze_id="m1", role_oids={"app": 16384},
        database_oids={"appdb": 16390}, role_grants=[RoleGrant(oid=16384, name="app", createdb=True, createrole=False),
                                                     RoleGrant(oid=16400, name="ops", createdb=False, createrole=True)],
        subscriptions=[SubscriptionRow(oid=1, name="feed", database="appdb", database_oid=16390, enabled=True)],
        acls=[AclRow(database="appdb", kind="sequence", name="public.s", acl="{app=rwU/app}",
                     items=[AclItem(grantee=16384, grantor=16384, privileges="rwU")])])


def verification_of_500_tables() -> tuple[VerificationReport, list[dict[str, Any]], list[str]]:
    """A failed verification of one database of 500 tables with 3 differences: (report, table counts, problems)."""
    tables = [{"table": f"public.t{i:03d}", "source_rows": i, "target_rows": i} for i in range(500)]
    problems = ["big: public.t007 has 7 rows on the source, 6 on the target",
                "big: public.t250 has 250 rows on the source, 251 on the target",
                "big: sequence public.s499 is behind on the target (10 < 12)"]
    verification = VerificationReport.model_validate({
        "ok": False, "problems": problems, "tables": 500, "rows": sum(range(500)), "seconds": 3.2,
        "databases": [{"database": "big", "tables": 500, "rows": sum(range(500)), "problems": problems,
                       "table_counts": tables}]})
    return verification, tables, problems
