"""Configuration is validated when it is read: a password in a DSN, a missing file, a bad server name."""

from __future__ import annotations

import os

import pytest

from pgmove.state.config import Config, load_config
from pgmove.state.errors import ConfigError


def test_a_dsn_with_a_password_is_refused(tmp_path):
    """Passwords live in the environment only; a config that holds one is rejected outright."""
    path = tmp_path / "c.toml"
    path.write_text('[servers.a]\ndsn = "host=h user=u password=hunter2"\n')
    with pytest.raises(ConfigError, match="must not hold a password") as caught:
        load_config(path)
    assert "hunter2" not in caught.value.message
    for dsn in ("postgresql://u:hunter2@h/db", "postgresql://u@h/db?password=hunter2",
                "postgresql://u@h/db?sslmode=require&password=hunter2"):
        path.write_text(f'[servers.a]\ndsn = "{dsn}"\n')
        with pytest.raises(ConfigError, match="must not hold a password") as caught:
            load_config(path)
        assert "hunter2" not in caught.value.message, dsn


def test_config_errors_say_which_file_and_what():
    """A missing config file is refused as such, and a server name that is not a plain name is rejected."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/pgmove.toml")
    with pytest.raises(ValueError):
        Config.model_validate({"servers": {"bad name;": {"dsn": "host=h"}}})


@pytest.mark.parametrize(("text", "said"), [
    ('[acess]\noperators = ["U_A"]\n', "unknown key 'acess'; did you mean 'access'?"),
    ('redis_ulr = "redis://h/0"\n', "unknown key 'redis_ulr'; did you mean 'redis_url'?"),
    ('[servers.prod-old]\ndns = "host=h"\n', "[servers.prod-old] unknown key 'dns'; did you mean 'dsn'?"),
    ('[access]\noperators = []\n[access.cli_user]\nroot = "U_A"\n', "[access] unknown key 'cli_user'; did you mean 'cli_users'?"),
])
def test_an_unknown_key_is_an_error_naming_it_the_nearest_valid_key_and_the_file(tmp_path, text, said):
    """A misspelt key (top level, [access], [servers.X]) would silently lose its setting: refused, with the fix."""
    path = tmp_path / "pgmove.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in caught.value.message and said in caught.value.message, caught.value.message


def test_a_key_with_no_near_match_lists_what_the_section_takes(tmp_path):
    """Nothing close to `zzz`: the error names what the table does take instead of guessing."""
    path = tmp_path / "pgmove.toml"
    path.write_text('[access]\nzzz = 1\n')
    with pytest.raises(ConfigError, match=r"\[access\] unknown key 'zzz'; this section takes approvers, channels, cli_users"):
        load_config(path)


def test_cli_users_maps_an_os_user_to_one_or_several_chat_ids():
    """`alice = "U_ALICE"` and `rig = ["U_A", "U_B"]` both read as lists; an unmapped user maps to nothing."""
    access = Config.model_validate({"access": {"cli_users": {"alice": "U_ALICE", "rig": ["U_A", "U_B"]}}}).access
    assert access.cli_ids("alice") == ["U_ALICE"] and access.cli_ids("rig") == ["U_A", "U_B"]
    assert access.cli_ids("mallory") == []


POOLER = '[servers.prod-old]\ndsn = "host=h user=pgmove"\n[poolers.app]\n'


def test_the_design_pages_pooler_example_loads_with_a_way_to_repoint(tmp_path):
    """DESIGN.md's `[poolers.app]` (admin_dsn, password_env, databases) plus databases_file is a valid pooler,
    with a pause timeout by default and its password kept among the secrets logs are scrubbed of."""
    path = tmp_path / "c.toml"
    path.write_text(POOLER + 'admin_dsn = "host=10.0.0.7 port=6432 user=pgbouncer dbname=pgbouncer"\n'
                    'password_env = "PGMOVE_TEST_POOLER_PW"\ndatabases = ["appdb"]\n'
                    'databases_file = "/etc/pgbouncer/databases.ini"\n')
    os.environ["PGMOVE_TEST_POOLER_PW"] = "pooler-secret"
    try:
        config = load_config(path)
        assert config.poolers["app"].pause_timeout_seconds == 10.0
        assert config.poolers_for("prod-old") == ["app"]
        assert "pooler-secret" in config.secrets()
    finally:
        del os.environ["PGMOVE_TEST_POOLER_PW"]


@pytest.mark.parametrize(("body", "named"), [
    ('admin_dsn = "host=h user=a password=hunter2"\ndatabases = ["appdb"]\ndatabases_file = "/f"\n',
     "poolers.app.admin_dsn: Value error, admin_dsn must not hold a password"),
    ('admin_dsn = "host=h user=a dbname=pgbouncer"\ndatabases = ["appdb"]\n', "exactly one of databases_file"),
    ('admin_dsn = "host=h user=a dbname=pgbouncer"\ndatabases = ["appdb"]\ndatabases_file = "/f"\nrepoint_command = ["x"]\n',
     "exactly one of databases_file"),
    ('admin_dsn = "host=h user=a dbname=pgbouncer"\ndatabases = []\ndatabases_file = "/f"\n', "poolers.app.databases"),
    ('admin_dsn = "host=h user=a dbname=pgbouncer"\ndatabases = ["appdb"]\ndatabases_file = "relative.ini"\n',
     "databases_file must be an absolute path"),
    ('admin_dsn = "host=h user=a dbname=pgbouncer"\ndatabases = ["appdb"]\nrepoint_command = []\n', "repoint_command must be"),
    ('admin_dsn = "host=h user=a dbname=pgbouncer"\ndatabases = ["appdb"]\ndatabases_file = "/f"\nserver = "prod-nope"\n',
     "poolers.app.server names 'prod-nope'"),
    ('admin_dsn = "host=h user=a dbname=pgbouncer"\ndatabases = ["appdb"]\ndatabases_file = "/f"\npause_timeout_seconds = 0\n',
     "poolers.app.pause_timeout_seconds"),
    ('admin_dsn = "host=h user=a dbname=pgbouncer"\ndatabases = ["appdb"]\ndatabases_file = "/f"\npause_timeout = 60\n',
     "unknown key 'pause_timeout'; did you mean pause_timeout_seconds?"),
    ('admin_dsn = "host=h user=a dbname=pgbouncer"\ndatabases = ["appdb"]\ndatabases_flie = "/f"\n',
     "unknown key 'databases_flie'; did you mean databases_file?"),
    ('admin_dsn = "host=h user=a dbname=pgbouncer"\ndatabases = [""]\ndatabases_file = "/f"\n',
     "poolers.app.databases: Value error, a database name in databases is empty"),
    ('admin_dsn = "host=h user=a dbname=pgbouncer"\ndatabases = ["appdb", "appdb"]\ndatabases_file = "/f"\n',
     "databases names ['appdb'] more than once"),
    ('admin_dsn = "host=h user=a dbname=appdb"\ndatabases = ["appdb"]\ndatabases_file = "/f"\n',
     "admin_dsn must name dbname=pgbouncer, PgBouncer's admin console, not 'appdb'"),
    ('admin_dsn = "host=h user=a"\ndatabases = ["appdb"]\ndatabases_file = "/f"\n',
     "admin_dsn must name dbname=pgbouncer"),
])
def test_a_bad_pooler_section_is_refused_naming_the_key(tmp_path, body, named):  # type: ignore[no-untyped-def]
    """Each mistake in `[poolers.NAME]` is refused when the file is read, and the message names the key at fault
    (never the password)."""
    path = tmp_path / "c.toml"
    path.write_text(POOLER + body)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert named in caught.value.message, caught.value.message
    assert "hunter2" not in caught.value.message


def test_the_logical_method_has_defaults_and_refuses_a_window_of_zero(tmp_path):
    """sync_max_lag_bytes, sync_check_seconds, max_retained_wal_mb and cutover_window_seconds default sensibly
    and are read from the file; a window of zero seconds is refused."""
    c = Config()
    assert (c.sync_max_lag_bytes, c.sync_check_seconds, c.max_retained_wal_mb, c.cutover_window_seconds) == (
        16 * 1024 * 1024, 30.0, 10240, 60.0)
    path = tmp_path / "c.toml"
    path.write_text("sync_check_seconds = 5\ncutover_window_seconds = 20\n")
    assert load_config(path).cutover_window_seconds == 20
    path.write_text("cutover_window_seconds = 0\n")
    with pytest.raises(ConfigError, match="cutover_window_seconds"):
        load_config(path)


def test_the_app_and_snapshot_hooks_are_argv_lists_with_a_positive_time_limit(tmp_path):
    """pause_app_hook, resume_app_hook and snapshot_hook take a non-empty argv; an empty one, a zero timeout or a
    misspelt key is refused naming it."""
    path = tmp_path / "c.toml"
    good = ('[servers.a]\ndsn = "host=h"\npause_app_hook = ["/bin/stop", "--all"]\nresume_app_hook = ["/bin/start"]\n'
            'snapshot_hook = ["/bin/snap"]\nsnapshot_hook_timeout = 900\n')
    path.write_text(good)
    server = load_config(path).servers["a"]
    assert server.pause_app_hook == ["/bin/stop", "--all"] and server.snapshot_hook_timeout == 900
    assert server.pause_app_hook_timeout == 120 and server.resume_app_hook_timeout == 120
    for bad, said in (('pause_app_hook = []', "non-empty argv"), ('resume_app_hook = [""]', "non-empty argv"),
                      ('pause_app_hook_timeout = 0', "pause_app_hook_timeout"),
                      ('pause_app_hok = ["/bin/x"]', "did you mean 'pause_app_hook'")):
        path.write_text(f'[servers.a]\ndsn = "host=h"\n{bad}\n')
        with pytest.raises(ConfigError, match=said):
            load_config(path)
