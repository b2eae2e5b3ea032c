"""Configuration is validated when it is read: a password in a DSN, a missing file, a bad server name."""

from __future__ import annotations

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
