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
