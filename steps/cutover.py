"""Cutover: prove the target takes writes from the app roles, then run the configured switch hook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pgmove.state.models import HookReport
from pgmove.steps.connect import Endpoint, Progress
from pgmove.steps.hooks import run_hook as run_any_hook
from pgmove.steps.smoke import smoke_test


def run(
    dst: Endpoint, databases: list[str], hook: list[str] | None,
    hook_timeout: float, env_extra: dict[str, str], secret_env: set[str], progress: Progress,
    on_hook: Callable[[HookReport], None] = lambda report: None,
) -> dict[str, Any]:
    checks = smoke_test(dst, databases, progress)
    result: dict[str, Any] = {"checks": checks}
    if hook:
        result["hook"] = run_hook(dst, hook, hook_timeout, env_extra, secret_env, progress, on_hook)
    return result


def run_hook(
    dst: Endpoint, argv: list[str], timeout: float, env_extra: dict[str, str], secret_env: set[str], progress: Progress,
    on_report: Callable[[HookReport], None] = lambda report: None,
) -> dict[str, Any]:
    """The team's own switch (DNS, pgbouncer, app config): told where the target is, never given a password."""
    return run_any_hook("cutover hook", dst, argv, timeout, {"PGMOVE_TARGET_DSN": dst.dsn, **env_extra}, secret_env,
                        progress, on_report)
