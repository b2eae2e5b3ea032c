"""The verification report: one typed shape that round-trips, keeps its --json field names, and reads old records."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pgmove.handlers import blocks
from pgmove.state import actions
from pgmove.state.models import Migration, Plan
from pgmove.state.report import DatabaseReport, LargeObjectCounts, TableReport, VerificationReport, VerifyMode

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

# A failed full verification as the record held it before the models: the keys --json has always printed.
AS_STORED = {
    "ok": False, "mode": "full",
    "problems": ["role audit is missing on the target", "appdb: public.orders: id in [0, 500): 10 rows on the source, 9 on the target"],
    "notes": ["appdb: extension pg_trgm is 1.6 on the source, 1.7 on the target"],
    "databases": [{
        "database": "appdb", "tables": 2, "rows": 510,
        "problems": ["appdb: public.orders: id in [0, 500): 10 rows on the source, 9 on the target"],
        "table_counts": [
            {"table": "public.orders", "source_rows": 500, "target_rows": 499, "ok": False, "differences": 1},
            {"table": "public.items", "source_rows": 10, "target_rows": 10, "ok": True, "differences": 0}],
        "large_objects": {"source_objects": 3, "source_bytes": 160018, "target_objects": 3, "target_bytes": 160018},
    }],
    "tables": 2, "rows": 510, "smoke": ["app can write on prod-new (appdb.public.orders)"], "seconds": 1.25,
}


def _migration() -> Migration:
    return actions.new_migration("m1", Plan(source="prod-old", target="prod-new"), "alice", NOW).migration


def test_a_full_report_round_trips_through_json_on_the_migration_record():
    """Every part of the report (databases, tables, large objects, notes, the write test) survives the store's JSON."""
    report = VerificationReport(
        ok=False, mode=VerifyMode.QUICK, problems=["appdb: sequence public.s is behind on the target (next 3 < 9)"],
        notes=["other (not moved): public.t: rows written by 1 transaction(s)"], tables=1, rows=7, smoke=["app can write"],
        seconds=0.5, databases=[DatabaseReport(
            database="appdb", tables=1, rows=7, problems=["appdb: sequence public.s is behind on the target (next 3 < 9)"],
            table_counts=[TableReport(table="public.t", source_rows=7, target_rows=7, ok=True)],
            large_objects=LargeObjectCounts(source_objects=1, source_bytes=5, target_objects=1, target_bytes=5))])
    m = _migration()
    m.verification = report
    back = Migration.model_validate_json(m.model_dump_json())
    assert back == m and isinstance(back.verification, VerificationReport)
    assert back.verification.databases[0].table_counts[0].table == "public.t"


def test_the_json_field_names_are_the_ones_the_dict_had():
    """`pgmove do --json` prints a stored report as it was stored: same keys, same values; a key added since (how many
    tables the copy hashed ahead) only joins with its default."""
    m = Migration.model_validate({**_migration().model_dump(), "verification": AS_STORED})
    printed = json.loads(m.model_dump_json())["verification"]
    assert {k: printed[k] for k in AS_STORED} == AS_STORED
    assert {k: v for k, v in printed.items() if k not in AS_STORED} == {"source_hashed_during_copy": 0, "target_hashed_during_copy": 0,
                                                                         "target_changed_since_hashed": 0,
                                                                         "live_seconds": 0.0, "hot_ranges": 0}


def test_an_old_record_with_missing_keys_still_loads_and_renders():
    """A report stored before `ok` per table (or written by hand) loads with defaults; a table's ok falls back to its counts."""
    old = {"ok": False, "problems": ["appdb: public.orders differs"], "tables": 2, "rows": 20,
           "databases": [{"database": "appdb", "tables": 2, "rows": 20, "problems": ["appdb: public.orders differs"],
                          "table_counts": [{"table": "public.orders", "source_rows": 10, "target_rows": 9},
                                           {"table": "public.items", "source_rows": 10, "target_rows": 10}]}]}
    m = Migration.model_validate({**_migration().model_dump(), "verification": old})
    assert m.verification is not None and m.verification.mode == VerifyMode.FULL and m.verification.smoke == []
    orders, items = m.verification.databases[0].table_counts
    assert (orders.ok, items.ok) == (False, True)
    report = blocks.full_verification_report("verification failed", m.verification) or ""
    assert "DIFF public.orders: source 10, target 9" in report and "ok   public.items: source 10, target 10" in report


def test_the_summary_and_the_attached_report_read_the_same_fields():
    """The Slack summary and the file say what the report holds: counts, each database, each table, each difference."""
    m = _migration()
    m.verification = VerificationReport.model_validate(AS_STORED)
    (text, summary), full = blocks.verification_message(m)
    assert text == ":warning: Verification failed: 2 difference(s) in 2 tables (510 rows compared). Cutover is blocked."
    shown = json.dumps(summary)
    assert "appdb: 2 tables, 510 rows, 1 difference(s)" in shown and "role audit is missing on the target" in shown
    assert full is not None and "== appdb: 2 tables, 510 rows" in full
    assert "DIFF public.orders: source 500, target 499" in full and "ok   public.items: source 10, target 10" in full
