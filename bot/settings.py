"""Slack credentials and endpoints, from the environment (never from the config file)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pgmove.state.errors import ConfigError


@dataclass(frozen=True)
class SlackSettings:
    bot_token: str = field(repr=False)
    signing_secret: str = field(repr=False)
    app_token: str | None = field(default=None, repr=False)  # set: Socket Mode
    api_url: str = "https://slack.com/api/"

    @classmethod
    def from_env(cls) -> SlackSettings:
        missing = [k for k in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET") if not os.environ.get(k)]
        if missing:
            raise ConfigError(f"The bot needs {' and '.join(missing)} in its environment.")
        url = os.environ.get("SLACK_API_URL") or "https://slack.com/api/"
        return cls(os.environ["SLACK_BOT_TOKEN"], os.environ["SLACK_SIGNING_SECRET"],
                   os.environ.get("SLACK_APP_TOKEN") or None, url if url.endswith("/") else url + "/")

    def secrets(self) -> list[str]:
        return [s for s in (self.bot_token, self.signing_secret, self.app_token) if s]
