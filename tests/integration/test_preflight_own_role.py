"""An app that logs in as pgmove's own role would write past every guard (they let pgmove's sessions through): the
plan refuses such a configuration, naming the role."""

from __future__ import annotations

from pgmove.steps import preflight
from pgmove.steps.connect import Endpoint
from tests.integration.freezeworld import Events


def test_an_app_role_that_is_pgmoves_own_is_a_problem_at_plan(source, passwords):  # type: ignore[no-untyped-def]
    """app_roles naming the role of pgmove's DSN: a blocking problem that says why; the app's own role alone is not."""
    shared = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app", "pgmove"))
    report = preflight.run(shared, None, None, [], None, Events())
    assert any("app role pgmove is the role pgmove connects to prod-old as" in p for p in report.problems), report.problems
    own = Endpoint("prod-old", source.tcp_dsn("pgmove"), passwords.source_pgmove, ("app",))
    assert not any("is the role pgmove connects" in p for p in preflight.run(own, None, None, [], None, Events()).problems)
