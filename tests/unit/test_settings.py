"""Settings are written back exactly: list values split like the server does, every name quoted, the freeze's own left out."""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg import sql

from pgmove.state.models import FreezeSnapshot, SettingRow
from pgmove.steps.settings import before_freeze, set_statement, split_list_value

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_list_settings_split_like_the_server_does():
    """A list setting splits on commas outside quotes, with doubled quotes undone, as the server splits it."""
    assert split_list_value('"$user", public') == ["$user", "public"]
    assert split_list_value('a, "b,c", "d""e"') == ["a", "b,c", 'd"e']


def test_setting_statements_quote_everything_from_the_catalog():
    """Setting statements quote every database, role, name and list element from the catalog, and a setting without a
    value becomes a RESET."""
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
