"""pgmove's own infrastructure unavailable (Redis down, configuration missing or invalid): one line, exit 4."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import redis

from pgmove.sandbox.fakeslack.server import FakeSlack
from pgmove.sandbox.servers import free_port, wait_until
from tests.fixtures.services import PGMOVE, cli_env, cli_users, pgmove_cli

PASSWORD = "hush-redis-Pw0rd"  # noqa: S105 -- a test's throwaway password


def _config(path: Path, redis_url: str) -> Path:
    path.write_text(f'redis_url = "{redis_url}"\n[access]\noperators = ["U_ALICE"]\napprovers = ["U_BOB"]\n'
                    f'{cli_users()}'
                    '[servers.prod-old]\ndsn = "host=127.0.0.1 port=1 user=pgmove"\n'
                    '[servers.prod-new]\ndsn = "host=127.0.0.1 port=2 user=pgmove"\n')
    return path


def _one_line(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert PASSWORD not in done.stdout + done.stderr
    return lines[0]


def test_every_verb_exits_4_naming_redis_and_where_when_redis_is_down(tmp_path):  # type: ignore[no-untyped-def]
    """do (with and without --wait), worker and bot each print one line naming Redis at its URL (password as ***)."""
    port = free_port()
    config = _config(tmp_path / "pgmove.toml", f"redis://pgmove:{PASSWORD}@127.0.0.1:{port}/0")
    slack = {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": "s" * 32}
    for args in (["do", "--as", "U_ALICE", "status"], ["do", "--as", "U_ALICE", "--wait", "plan prod-old prod-new"],
                 ["do", "--as", "U_ALICE", "--json", "status prod-old"], ["worker", "--burst"],
                 ["bot", "--port", str(free_port())]):
        done = pgmove_cli(config, *args, env=slack)
        assert done.returncode == 4, (args, done.stdout, done.stderr)
        _one_line(done, "Redis", f"pgmove:***@127.0.0.1:{port}", "unavailable")


def test_a_missing_or_invalid_configuration_exits_4_naming_the_file(tmp_path):  # type: ignore[no-untyped-def]
    """No file, a file that is not TOML, and a file with a bad value all stop every verb with exit 4."""
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("redis_url = \n")
    bad_value = tmp_path / "value.toml"
    bad_value.write_text('redis_url = "http://nope"\n')
    for path in (tmp_path / "missing.toml", bad_toml, bad_value):
        for args in (["do", "--as", "U_ALICE", "status"], ["worker", "--burst"]):
            done = pgmove_cli(path, *args)
            assert done.returncode == 4, (path, args, done.stderr)
            _one_line(done, str(path))


def test_a_mistyped_configuration_key_is_one_line_naming_it_and_the_nearest_valid_key(tmp_path):  # type: ignore[no-untyped-def]
    """`[acess]` and `dns =` in the file: the real `pgmove` names the key, its table and the key meant, exit 4."""
    table = _config(tmp_path / "table.toml", "redis://127.0.0.1:1/0")
    table.write_text(table.read_text().replace("[access]", "[acess]", 1))
    key = _config(tmp_path / "key.toml", "redis://127.0.0.1:1/0")
    key.write_text(key.read_text().replace('dsn = "host=127.0.0.1 port=2', 'dns = "host=127.0.0.1 port=2', 1))
    for path, needles in ((table, ("'acess'", "'access'")), (key, ("[servers.prod-new]", "'dns'", "did you mean 'dsn'"))):
        done = pgmove_cli(path, "do", "--as", "U_ALICE", "status")
        assert done.returncode == 4, (path, done.stderr)
        _one_line(done, str(path), *needles)


def test_redis_lost_while_waiting_exits_4_and_is_not_a_failed_migration(redis_server, tmp_path):  # type: ignore[no-untyped-def]
    """`do --wait` whose Redis stops mid-way says Redis is unavailable and exits 4, not 1 (migration failed)."""
    config = _config(tmp_path / "pgmove.toml", redis_server.url)
    waiting = subprocess.Popen([*PGMOVE, "--config", str(config), "do", "--as", "U_ALICE", "--wait",
                                "plan prod-old prod-new"], env=cli_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    wait_until(lambda: redis.Redis.from_url(redis_server.url).exists("pgmove:servers"), 20, "the plan in Redis")
    redis_server.stop()
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 4, (out, err)
    assert "Redis at" in err and "unavailable" in err and "Traceback" not in err


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_the_bot_restarts_a_responder_that_keeps_dying_less_and_less_often(redis_server, tmp_path):  # type: ignore[no-untyped-def]
    """Redis gone under a running bot: its responder dies at each start, and is restarted after 1 s, 2 s, 4 s..."""
    config = _config(tmp_path / "pgmove.toml", redis_server.url)
    log_path = tmp_path / "bot.log"
    slack = FakeSlack().start()  # the edge checks its token against the Web API as it starts
    env = cli_env({"SLACK_BOT_TOKEN": slack.bot_token, "SLACK_SIGNING_SECRET": "s" * 32, "SLACK_API_URL": slack.api_url})
    with open(log_path, "wb") as log:
        port = free_port()
        bot = subprocess.Popen([*PGMOVE, "--config", str(config), "bot", "--port", str(port), "--host", "127.0.0.1"],
                               env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_until(lambda: _listening(port), 30, "the bot's edge serving HTTP")
        inbox = "pgmove:chat:inbox"  # the responder blocks on it
        wait_until(lambda: any(c.get("cmd") == "blmove" for c in redis.Redis.from_url(redis_server.url).client_list()),
                   30, f"the responder waiting on {inbox}")
        redis_server.stop()
        wait_until(lambda: "restarting it in 4s" in log_path.read_text(), 60, "a third restart, 4 s after the second")
        said = log_path.read_text()
        assert said.index("restarting it in 1s") < said.index("restarting it in 2s") < said.index("restarting it in 4s")
        assert bot.poll() is None  # the edge stays up meanwhile
        assert "responder stopped: Redis at" in said and "Traceback" not in said
    finally:
        bot.terminate()
        bot.wait(30)
        slack.stop()
