"""The deployment files are usable as they stand: compose validates, the Slack manifest asks for what the bot uses."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose.yaml"
SECRETS = {"PGMOVE_REDIS_PASSWORD": "compose-test-pw", "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s"}
# The Web API methods the bot calls -> the bot scope each needs; a new method fails the test until the manifest
# (and this table) say which scope it takes.
SCOPE_OF = {"chat_postMessage": "chat:write", "chat_update": "chat:write", "files_upload_v2": "files:write"}


def _compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if shutil.which("docker-compose"):
        command = ["docker-compose"]
    elif subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        command = ["docker", "compose"]
    else:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed (.ci/system-deps installs it)")
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("PGMOVE_")}
    return subprocess.run([*command, "-f", str(COMPOSE), *args], capture_output=True, text=True, env={**clean, **env})


def test_compose_validates_and_runs_redis_with_persistence_a_password_and_health_checks():
    """`compose config` accepts the file; Redis has AOF and a password; bot, worker and Redis each have a health check."""
    done = _compose("config", env=SECRETS)
    assert done.returncode == 0, done.stderr
    normalized = done.stdout
    for service in ("bot:", "worker:", "redis:"):
        assert re.search(rf"^  {service}", normalized, re.MULTILINE), normalized
    assert normalized.count("healthcheck:") == 3
    assert "--appendonly yes" in normalized and "--requirepass" in normalized
    assert "pgmove.toml:/etc/pgmove/pgmove.toml:ro" in normalized and "/var/lib/pgmove" in normalized
    assert "health" in normalized and "--worker-here" in normalized


def test_compose_refuses_to_start_without_the_secrets_it_takes_from_the_environment():
    """No Redis password in the environment: compose stops and names the variable, it never runs without one."""
    done = _compose("config", env={k: v for k, v in SECRETS.items() if k != "PGMOVE_REDIS_PASSWORD"})
    assert done.returncode != 0 and "PGMOVE_REDIS_PASSWORD" in done.stderr


def test_the_slack_manifest_asks_for_exactly_the_scopes_the_bot_uses():
    """Scopes: commands for /pgmove plus one per Web API method called in bot/; interactivity and the command are on."""
    manifest = (REPO / "deploy" / "slack-manifest.yaml").read_text()
    source = "".join(p.read_text() for p in (REPO / "bot").rglob("*.py"))
    called = set(re.findall(r"\bclient\.([a-z]+_[A-Za-z0-9_]+)\(", source))  # the WebClient's methods
    assert called, "no Web API call found in bot/: the pattern above went stale"
    assert called <= set(SCOPE_OF), f"methods with no known scope: {called - set(SCOPE_OF)}"
    scopes = set(re.findall(r"^      - ([a-z:._]+)", manifest.split("scopes:")[1].split("settings:")[0], re.MULTILINE))
    assert scopes == {"commands"} | {SCOPE_OF[m] for m in called}
    assert "command: /pgmove" in manifest and re.search(r"interactivity:\n\s+is_enabled: true", manifest)
    assert manifest.count("url: https://pgmove.example.com/slack/events") == 2  # the command and the buttons


def test_the_image_exposes_the_http_port_checks_its_health_and_keeps_work_dir_on_a_volume():
    """EXPOSE for HTTP mode, a HEALTHCHECK that runs pgmove health, a VOLUME where work_dir and archive_dir live."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^EXPOSE 3000$", dockerfile, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*CMD \[\"pgmove\", \"health\"\]$", dockerfile, re.MULTILINE)
    assert re.search(r'^VOLUME \["/var/lib/pgmove"\]$', dockerfile, re.MULTILINE)
    example = (REPO / "deploy" / "pgmove.example.toml").read_text()
    assert 'work_dir = "/var/lib/pgmove/work"' in example and 'archive_dir = "/var/lib/pgmove/archives"' in example


def test_the_readmes_running_it_starts_with_compose_and_covers_the_role_the_slack_app_and_the_logs():
    """"Running it" opens with deploy/compose.yaml, then says where logs go, the pgmove role (superuser, pg_hba),
    the Slack manifest (slash command, interactivity, scopes, Socket Mode), cli_users and exit 4."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Running it", 1)[1].split("\n## ", 1)[0]
    assert section.lstrip().startswith("### With Docker Compose") and "deploy/compose.yaml" in section.split("###")[1]
    for needle in ("Logs:", "superuser", "pg_hba.conf", "deploy/slack-manifest.yaml", "/pgmove", "interactivity",
                   "chat:write", "Socket Mode", "[access.cli_users]", "4 when"):
        assert needle in section, needle
