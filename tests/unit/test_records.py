"""Persisted records round-trip; configuration is validated; settings are written back exactly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from psycopg import sql

from pgmove.state.config import Config, load_config
from pgmove.state.errors import ConfigError
from pgmove.state.models import (
    Approval,
    ApprovalAction,
    AuditEvent,
    EventKind,
    FreezeSnapshot,
    Migration,
    SettingRow,
)
from pgmove.steps.settings import before_freeze, set_statement, split_list_value

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_a_migration_with_every_part_round_trips_through_json():
    from pgmove.state import actions
    from pgmove.state.models import Plan

    m = actions.new_migration("m1", Plan(source="a", target="b", databases=["x"]), "alice", NOW).migration
    m.approval = Approval(id="abcd1234", action=ApprovalAction.FREEZE, requester="alice", plan_digest="d",
                          requested_at=NOW, expires_at=NOW, prior_state="ready")
    m.freeze = FreezeSnapshot(taken_at=NOW, databases=["x"], settings=[SettingRow(database="x", name="n", value=None)])
    assert Migration.model_validate_json(m.model_dump_json()) == m
    event = AuditEvent(kind=EventKind.PROGRESS, at=NOW, actor="w", message="hi", data={"rows": 3})
    assert AuditEvent.model_validate_json(event.model_dump_json()) == event


def test_a_dsn_with_a_password_is_refused(tmp_path):
    """Passwords live in the environment only; a config that holds one is rejected outright."""
    path = tmp_path / "c.toml"
    path.write_text('[servers.a]\ndsn = "host=h user=u password=hunter2"\n')
    with pytest.raises(ConfigError, match="must not hold a password") as caught:
        load_config(path)
    assert "hunter2" not in caught.value.message
    path.write_text('[servers.a]\ndsn = "postgresql://u:hunter2@h/db"\n')
    with pytest.raises(ConfigError):
        load_config(path)


def test_config_errors_say_which_file_and_what():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/pgmove.toml")
    with pytest.raises(ValueError):
        Config.model_validate({"servers": {"bad name;": {"dsn": "host=h"}}})


def test_list_settings_split_like_the_server_does():
    assert split_list_value('"$user", public') == ["$user", "public"]
    assert split_list_value('a, "b,c", "d""e"') == ["a", "b,c", 'd"e']


def test_setting_statements_quote_everything_from_the_catalog():
    row = SettingRow(database='we"ird', role="app", name="search_path", value='"$user", public')
    assert set_statement(row, row.value).as_string(None) == (
        'ALTER ROLE "app" IN DATABASE "we""ird" SET "search_path" = \'$user\', \'public\'')
    assert set_statement(SettingRow(name="x", value=None), None).as_string(None) == 'ALTER ROLE ALL RESET "x"'
    assert isinstance(set_statement(SettingRow(database="d", name="x"), "on"), sql.Composed)


def test_settings_before_the_freeze_drop_the_freeze_and_keep_what_was_there():
    """What the copy carries: the freeze's own values replaced by the recorded originals."""
    live = [SettingRow(database="a", name="default_transaction_read_only", value="on"),
            SettingRow(database="b", name="default_transaction_read_only", value="on"),
            SettingRow(database="b", name="work_mem", value="8MB")]
    snap = FreezeSnapshot(taken_at=NOW, databases=["a", "b"], settings=[
        SettingRow(database="a", name="default_transaction_read_only", value=None),
        SettingRow(database="b", name="default_transaction_read_only", value="on")])
    kept = {(s.database, s.name): s.value for s in before_freeze(live, snap)}
    assert kept == {("b", "default_transaction_read_only"): "on", ("b", "work_mem"): "8MB"}
