"""One error base for pgmove; each subclass is a failure kind with a message fit for the channel."""

from __future__ import annotations

from typing import Any


class PgmoveError(Exception):
    """A known failure: `message` is what the person in the channel reads, `detail` goes to the log.

    Never put a password or a full DSN in either: both can end up in Slack, logs and Redis.
    """

    kind = "error"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class UsageError(PgmoveError):
    """The command text could not be understood (unknown verb, bad flag, missing argument)."""

    kind = "usage"


class Refused(PgmoveError):
    """A well-formed command that the rules do not allow now (wrong state, wrong person)."""

    kind = "refused"


class NotAuthorized(Refused):
    """The person, or the channel, is not allowed to do this."""

    kind = "not_authorized"


class Conflict(PgmoveError):
    """Someone else changed the same record first; the caller may re-read and try again."""

    kind = "conflict"


class ConfigError(PgmoveError):
    """The configuration file is missing, unreadable or inconsistent."""

    kind = "config"


class Unavailable(PgmoveError):
    """pgmove's own infrastructure (Redis) cannot be reached: nothing was decided, try again once it is back."""

    kind = "unavailable"


class StepFailed(PgmoveError):
    """A step could not finish; the source is left at least as safe as before."""

    kind = "step_failed"


class PauseFailed(StepFailed):
    """The pause_app_hook failed before anything was frozen: the migration goes back to where it was."""

    kind = "pause_failed"


class ConnectionFailed(StepFailed):
    """A server could not be reached or refused the credentials."""

    kind = "connection"


class ToolFailed(StepFailed):
    """A PostgreSQL client program (pg_dump, pg_restore, ...) exited with an error."""

    kind = "tool"


class PlanProblems(PgmoveError):
    """Preflight found something that blocks the freeze; each problem says how to fix it."""

    kind = "plan_problems"


class LockLost(PgmoveError):
    """The server lock's lease ran out under a step, or the migration moved on: another worker may take
    over, so the step stops at once."""

    kind = "lock_lost"
