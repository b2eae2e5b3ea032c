"""The structured answer of a handler, rendered by views.py for the CLI and for Slack alike."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from pgmove.state.announce import Announcement
from pgmove.state.config import Config
from pgmove.state.models import AuditEvent, Migration

Kind = Literal["info", "accepted", "refused", "usage", "error", "unavailable"]


class Reply(BaseModel):
    ok: bool
    kind: Kind
    text: str
    verb: str | None = None
    # Refusals and help go only to the person who asked; what the team must see goes to the channel.
    visibility: Literal["ephemeral", "channel"] = "ephemeral"
    migration: Migration | None = None
    migrations: list[Migration] = Field(default_factory=list)
    events: list[AuditEvent] = Field(default_factory=list)
    servers: list[dict[str, Any]] = Field(default_factory=list)
    announcements: list[Announcement] = Field(default_factory=list)  # `announce`, and `status`: the windows shown
    progress: dict[str, Any] | None = None  # status during a copy: the whole copy's progress (state/progress.py)
    duplicate: bool = False

    @classmethod
    def refusal(cls, kind: Kind, text: str, verb: str | None = None) -> Reply:
        return cls(ok=False, kind=kind, text=text, verb=verb)


def server_listing(config: Config) -> list[dict[str, Any]]:
    """Name, where and which app roles: never a password (a DSN cannot hold one, the config refuses it)."""
    listing = []
    for name, server in sorted(config.servers.items()):
        params = server.params()
        listing.append({"name": name, "host": params.get("host", "local socket"), "port": params.get("port", "5432"),
                        "user": params.get("user", ""), "app_roles": server.app_roles})
    return listing
