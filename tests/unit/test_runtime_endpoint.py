"""A worker that cannot reach a server for want of configuration says what to set, not KeyError or a libpq error."""

from __future__ import annotations

import pytest

from pgmove.state.config import Config
from pgmove.state.errors import StepFailed
from pgmove.worker.runtime import Runtime

CONFIG = {"servers": {"prod-old": {"dsn": "host=h user=pgmove", "password_env": "PGMOVE_TEST_OLD_PASSWORD"},
                      "trusted": {"dsn": "host=h user=pgmove"}}}


def _runtime() -> Runtime:
    return Runtime(config=Config.model_validate(CONFIG), store=None, queue=None, worker_id="w1")  # type: ignore[arg-type]


def test_a_server_missing_from_the_workers_configuration_fails_the_step_by_name():
    """A migration naming a server this worker's file lacks gets a sentence naming it and the known ones."""
    with pytest.raises(StepFailed, match=r"no server prod-new \(it knows prod-old, trusted\)"):
        _runtime().endpoint("prod-new")


def test_an_unset_password_variable_is_named(monkeypatch):
    """password_env names a variable the worker's environment lacks: the step fails naming the variable."""
    monkeypatch.delenv("PGMOVE_TEST_OLD_PASSWORD", raising=False)
    with pytest.raises(StepFailed, match="PGMOVE_TEST_OLD_PASSWORD is not set in this worker's environment"):
        _runtime().endpoint("prod-old")
    monkeypatch.setenv("PGMOVE_TEST_OLD_PASSWORD", "pw")
    assert _runtime().endpoint("prod-old").password == "pw"
    assert _runtime().endpoint("trusted").password is None  # no password_env: .pgpass or trust, as libpq does
