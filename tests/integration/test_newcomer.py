"""A newcomer's run: the README's configuration, a real worker, the whole flow from the command line with --wait."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.services import PGMOVE, REPO, cli_env, os_user, pgmove_cli

pytestmark = pytest.mark.slow


def readme_config() -> str:
    """The README's configuration example, the one with servers in it."""
    blocks = re.findall(r"```toml\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    return next(b for b in blocks if "[servers.prod-old]" in b and "redis_url" in b)


def test_the_readme_configuration_runs_plan_freeze_cutover_with_progress_on_stderr(  # type: ignore[no-untyped-def]
        redis_server, source, target, passwords, tmp_path):
    """Only addresses, the hook and the OS user are changed from the README: every step rests as promised, and
    --wait shows the events (preflight, freeze, copy, verify, cutover) as lines on stderr."""
    hook = tmp_path / "switch-app-to"
    hook.write_text(f"#!{sys.executable}\nprint('switched')\n")
    hook.chmod(0o755)
    text = readme_config()
    for old, new in ((r'redis_url = "[^"]*"', f'redis_url = "{redis_server.url}"'),
                     (r"host=10\.0\.0\.5 [^\"]*", source.tcp_dsn("pgmove")),
                     (r"host=10\.0\.0\.6 [^\"]*", target.tcp_dsn("pgmove")),
                     (r'"/usr/local/bin/switch-app-to"', f'"{hook}"'),
                     (r'work_dir = "[^"]*"', f'work_dir = "{tmp_path}"'),
                     (r'(\[access\.cli_users\][^\n]*\n)(?:\w+ = "U_\w+"\n)+', rf'\1{os_user()} = ["U_ALICE", "U_BOB"]\n')):
        text, found = re.subn(old, new, text)
        assert found, f"the README's example no longer has {old}"
    config = tmp_path / "pgmove.toml"
    config.write_text(text)
    env = {"PGMOVE_PROD_OLD_PASSWORD": passwords.source_pgmove, "PGMOVE_PROD_NEW_PASSWORD": passwords.target_pgmove}
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen([*PGMOVE, "--config", str(config), "worker"], env=cli_env(env), stdout=log, stderr=log)
    try:
        def do(user: str, command: str) -> tuple[dict, str]:  # type: ignore[type-arg]
            done = pgmove_cli(config, "do", "--as", user, "--wait", "--json", command, env=env, timeout=600)
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout), done.stderr

        planned, said = do("U_ALICE", "plan prod-old prod-new --jobs 2")
        assert planned["state"] == "ready" and "preflight" in said
        for needle in ("plan: PostgreSQL", "  appdb: ", "  pg_dump: ", "  roles: ", " app", "  expected freeze: ~",
                       "MB/s (the source's COPY rate, measured now)"):
            assert needle in planned["text"], planned["text"]  # the plan itself, not only "preflight ok"
        asked, _ = do("U_ALICE", "freeze prod-old")
        assert asked["state"] == "awaiting_freeze_approval"
        verified, said = do("U_BOB", "approve prod-old")
        assert verified["state"] == "verified", said
        for event in ("(freezing -> frozen)", "(copying -> verifying)", "(verifying -> verified)"):
            assert event in said, said
        do("U_ALICE", "cutover prod-old")
        done, said = do("U_BOB", "approve prod-old")
        assert done["state"] == "cut_over" and "(cutting_over -> cut_over)" in said, said
    finally:
        worker.terminate()
        worker.wait(30)
    redis_server.stop()
    gone = pgmove_cli(config, "do", "--as", "U_ALICE", "status prod-old", env=env)
    assert gone.returncode == 4 and len(gone.stderr.strip().splitlines()) == 1, gone.stderr


def test_the_deploy_example_configuration_loads(monkeypatch):  # type: ignore[no-untyped-def]
    """deploy/pgmove.example.toml is valid as shipped (no key pgmove does not know) and maps the image's user."""
    from pgmove.state.config import load_config

    monkeypatch.setenv("PGMOVE_REDIS_PASSWORD", "x")
    config = load_config(Path(REPO / "deploy" / "pgmove.example.toml"))
    assert config.access.cli_ids("pgmove") == ["U_ALICE"] and set(config.servers) == {"prod-old", "prod-new"}
