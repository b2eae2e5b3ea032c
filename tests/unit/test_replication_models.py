"""The replication records: names that PostgreSQL accepts, a lossless round trip, and what in sync means."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from pgmove.state.replication import (
    DatabaseLag,
    HotRange,
    KeylessTable,
    LiveVerification,
    SyncDatabase,
    SyncSetup,
    SyncStatus,
    name_prefix,
    object_name,
)


def test_object_names_are_valid_slot_names_within_63_bytes():
    """Slot names allow only lowercase letters, digits and underscores; a long id is cut, the oid always kept."""
    for migration_id in ("mig-0A1b2c3d", "x" * 200, "ünïcode id"):
        name = object_name(migration_id, 4294967295)
        assert re.fullmatch(r"[a-z0-9_]+", name) and len(name.encode()) <= 63, name
        assert name.startswith(name_prefix(migration_id)) and name.endswith("_4294967295")
    assert object_name("mig-0a1b2c3d", 16390) == "pgmove_mig_0a1b2c3d_16390"


def test_a_sync_setup_survives_a_json_round_trip():
    """What the store persists is what comes back, tables and fingerprints included."""
    table = KeylessTable(database="appdb", schema_name="public", name="notes", size_bytes=8192, identity="n")
    setup = SyncSetup(migration_id="mig-1", databases=[SyncDatabase(database="appdb", publication="p", slot="s",
                                                                    subscription="s")],
                      identity_full=[table], left_out=[table.model_copy(update={"unlogged": True})],
                      schema_fingerprint={"appdb": "abc"})
    assert SyncSetup.model_validate_json(setup.model_dump_json()) == setup
    assert setup.database("appdb") is not None and setup.database("other") is None


def _lag(**changes: object) -> DatabaseLag:
    values: dict[str, object] = {"database": "appdb", "lag_bytes": 100, "lag_seconds": 0.1, "retained_wal_bytes": 100,
                                 "tables_total": 3, "tables_ready": 3, "apply_errors": 0}
    return DatabaseLag.model_validate({**values, **changes})


def test_in_sync_needs_every_table_ready_lag_under_the_threshold_and_no_problem():
    """Any one of a table still copying, too much lag or a problem means not in sync."""
    now = datetime.now(UTC)
    assert SyncStatus(at=now, databases=[_lag()]).in_sync(1000)
    assert not SyncStatus(at=now, databases=[_lag(tables_ready=2)]).in_sync(1000)
    assert not SyncStatus(at=now, databases=[_lag(lag_bytes=5000)]).in_sync(1000)
    assert not SyncStatus(at=now, databases=[_lag()], problems=["appdb: the schema changed"]).in_sync(1000)


def test_a_live_verification_survives_a_json_round_trip():
    """The tables verified while in sync come back as the (database, schema, table) the window compares them by."""
    live = LiveVerification(tables=1, verified=[("appdb", "public", "accounts")], rows=5, ranges=2, rounds=1,
                            hot=[HotRange(database="appdb", schema_name="public", name="accounts", key=["id"], low=1, high=2)],
                            seconds=0.5, finished_at=datetime.now(UTC))
    back = LiveVerification.model_validate_json(live.model_dump_json())
    assert back == live and ("appdb", "public", "accounts") in set(back.verified)
