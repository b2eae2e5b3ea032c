"""The step loop records what a step established through the model: a result the record cannot hold fails the step."""

from __future__ import annotations

from typing import Any

import pytest

from pgmove.handlers.commands import handle
from pgmove.state.machine import Event, State
from pgmove.state.models import StepName, StepStatus
from pgmove.worker import adapters, runner
from pgmove.worker.adapters import StepResult
from pgmove.worker.queue import make_queue
from pgmove.worker.runtime import Runtime
from tests.integration.helpers import make_deps


def _runtime(url: str) -> tuple[Runtime, Any]:
    deps = make_deps(url)
    return Runtime(deps.config, deps.store, make_queue(deps.store), "test-worker"), deps


def test_a_step_result_of_the_wrong_shape_fails_the_step_and_leaves_a_readable_record(redis_server, monkeypatch):  # type: ignore[no-untyped-def]
    """A preflight whose facts do not fit the record fails visibly, instead of storing a record nobody can read."""
    rt, deps = _runtime(redis_server.url)
    assert handle(deps, "U_ALICE", "plan prod-old prod-new").ok
    m = deps.store.active_for("prod-old")
    monkeypatch.setitem(adapters.STEPS, StepName.PREFLIGHT,
                        lambda rt, m, ctx: StepResult(Event.PREFLIGHT_OK, "preflight ok", {},
                                                      {"quiet_baseline": "not a mapping of databases"}))
    runner.advance(rt, m.id, lock_wait=0)
    after = deps.store.get(m.id)  # raised a validation error once setattr had stored the string
    assert after is not None and after.state == State.FAILED
    assert after.quiet_baseline is None
    assert after.last_step(StepName.PREFLIGHT).status == StepStatus.FAILED
    assert "unexpected error" in after.failure.reason


@pytest.mark.parametrize("changes", [{"freeze": None, "verify_quick": True}, {"created_target_databases": ["a", "b"]}])
def test_a_step_result_that_fits_is_written_through_the_model(redis_server, monkeypatch, changes):  # type: ignore[no-untyped-def]
    """The facts a step returns land on the record as the model's values, with the step's transition."""
    rt, deps = _runtime(redis_server.url)
    assert handle(deps, "U_ALICE", "plan prod-old prod-new").ok
    m = deps.store.active_for("prod-old")
    monkeypatch.setitem(adapters.STEPS, StepName.PREFLIGHT,
                        lambda rt, m, ctx: StepResult(Event.PREFLIGHT_OK, "preflight ok", {"n": 1}, changes))
    runner.advance(rt, m.id, lock_wait=0)
    after = deps.store.get(m.id)
    assert after is not None and after.state == State.READY
    assert {k: getattr(after, k) for k in changes} == changes
    assert after.last_step(StepName.PREFLIGHT).result == {"n": 1}


def test_a_fact_recorded_while_the_step_runs_is_validated_too(redis_server, monkeypatch):  # type: ignore[no-untyped-def]
    """`record` (a freeze snapshot, a created database) goes through the model: a misspelt field fails the step."""
    rt, deps = _runtime(redis_server.url)
    assert handle(deps, "U_ALICE", "plan prod-old prod-new").ok
    m = deps.store.active_for("prod-old")

    def preflight(rt, m, ctx):  # type: ignore[no-untyped-def]
        ctx.record("recorded", created_target_database=["a"])
        return StepResult(Event.PREFLIGHT_OK, "preflight ok")

    monkeypatch.setitem(adapters.STEPS, StepName.PREFLIGHT, preflight)
    runner.advance(rt, m.id, lock_wait=0)
    after = deps.store.get(m.id)
    assert after is not None and after.state == State.FAILED and after.created_target_databases == []


def test_a_step_that_notices_the_move_itself_is_recorded_as_stopped(redis_server, monkeypatch):  # type: ignore[no-untyped-def]
    """A step whose own progress report finds the migration moved on (an abort) ends recorded as stopped, not running."""
    rt, deps = _runtime(redis_server.url)
    assert handle(deps, "U_ALICE", "plan prod-old prod-new").ok
    m = deps.store.active_for("prod-old")

    def preflight(rt, m, ctx):  # type: ignore[no-untyped-def]
        assert handle(deps, "U_ALICE", "abort prod-old").ok
        ctx.progress("still checking")  # raises: the migration moved on under the step
        return StepResult(Event.PREFLIGHT_OK, "preflight ok")

    monkeypatch.setitem(adapters.STEPS, StepName.PREFLIGHT, preflight)
    runner.advance(rt, m.id, lock_wait=0)
    after = deps.store.get(m.id)
    assert after is not None and after.state == State.ABORTED
    record = after.last_step(StepName.PREFLIGHT)
    assert record.status == StepStatus.FAILED and "stopped" in record.message
    assert after.lease is None
