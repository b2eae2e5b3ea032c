"""The command line as an operator meets it: who it acts as, plain text, help, version, one JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.services import cli_users, os_user, pgmove_cli


def _config(path: Path, redis_url: str, mapping: str) -> Path:
    path.write_text(f'redis_url = "{redis_url}"\n[access]\noperators = ["U_ALICE", "U_BOB"]\napprovers = ["U_BOB"]\n'
                    f'{mapping}\n[servers.prod-old]\ndsn = "host=127.0.0.1 port=1 user=pgmove"\n'
                    '[servers.prod-new]\ndsn = "host=127.0.0.1 port=2 user=pgmove"\n')
    return path


def test_as_must_be_the_chat_id_the_os_user_maps_to(redis_server, tmp_path):  # type: ignore[no-untyped-def]
    """Mapped to U_ALICE, the OS user acts as U_ALICE (named or derived) and is refused as U_BOB, by name."""
    config = _config(tmp_path / "pgmove.toml", redis_server.url, f'[access.cli_users]\n{os_user()} = "U_ALICE"\n')
    assert pgmove_cli(config, "do", "--as", "U_ALICE", "status").returncode == 0
    derived = pgmove_cli(config, "do", "--json", "plan prod-old prod-new")
    assert derived.returncode == 0, derived.stderr
    assert json.loads(derived.stdout)["created_by"] == "U_ALICE"
    history = json.loads(pgmove_cli(config, "do", "--json", "history prod-old").stdout)["events"]
    assert f"U_ALICE gave plan prod-old on the command line, as OS user {os_user()}" in [e["message"] for e in history]
    posing = pgmove_cli(config, "do", "--as", "U_BOB", "approve prod-old")
    assert posing.returncode == 2
    assert f"no mapping from {os_user()} to U_BOB" in posing.stderr and "[access.cli_users]" in posing.stderr


def test_an_os_user_missing_from_cli_users_is_refused_saying_which_mapping_is_missing(redis_server, tmp_path):  # type: ignore[no-untyped-def]
    """No entry for this OS user: refused (exit 2) before anything runs, naming the user and the file."""
    config = _config(tmp_path / "pgmove.toml", redis_server.url, '[access.cli_users]\nsomeone-else = "U_ALICE"\n')
    done = pgmove_cli(config, "do", "--as", "U_ALICE", "plan prod-old prod-new")
    assert done.returncode == 2
    assert f"{os_user()} has no entry in [access.cli_users] of {config}" in done.stderr
    several = _config(tmp_path / "several.toml", redis_server.url, cli_users(["U_ALICE", "U_BOB"]))
    unsaid = pgmove_cli(several, "do", "status")
    assert unsaid.returncode == 2 and "say which with --as" in unsaid.stderr


def test_cli_text_is_plain_no_mentions_no_code_marks_and_hints_say_what_to_type(redis_server, tmp_path):  # type: ignore[no-untyped-def]
    """A refusal that Slack shows with <@U..> and `/pgmove ...` reads as the id and the pgmove command here."""
    config = _config(tmp_path / "pgmove.toml", redis_server.url, cli_users(["U_ALICE", "U_MALLORY"]))
    stranger = pgmove_cli(config, "do", "--as", "U_MALLORY", "plan prod-old prod-new")
    assert stranger.returncode == 2
    assert "U_MALLORY is not a pgmove operator" in stranger.stderr and "<@" not in stranger.stderr
    nothing = pgmove_cli(config, "do", "--as", "U_ALICE", "unfreeze prod-old")
    assert nothing.returncode == 2
    assert 'Start with pgmove do "plan prod-old <target>"' in nothing.stderr and "`" not in nothing.stderr


def test_a_mistyped_verb_gets_did_you_mean(redis_server, tmp_path):  # type: ignore[no-untyped-def]
    """`plna` is a usage error that names `plan`, on the command line as in chat."""
    config = _config(tmp_path / "pgmove.toml", redis_server.url, cli_users())
    done = pgmove_cli(config, "do", "--as", "U_ALICE", "plna prod-old prod-new")
    assert done.returncode == 2 and "did you mean plan?" in done.stderr, done.stderr
    assert "did you mean freeze?" in pgmove_cli(Path("/nonexistent"), "help", "freze").stderr
    assert "Did you mean 'worker'?" in pgmove_cli(Path("/nonexistent"), "wroker").stderr
    verb_as_command = pgmove_cli(Path("/nonexistent"), "plan", "prod-old", "prod-new")
    assert verb_as_command.returncode == 2 and 'pgmove do "plan prod-old prod-new"' in verb_as_command.stderr


def test_version_and_help_for_a_verb_need_no_configuration(tmp_path):  # type: ignore[no-untyped-def]
    """`pgmove --version` and `pgmove help freeze` (what it does, its options, an example) run without a config."""
    version = pgmove_cli(tmp_path / "none.toml", "--version")
    assert version.returncode == 0 and version.stdout.startswith("pgmove "), version.stderr
    helped = pgmove_cli(tmp_path / "none.toml", "help", "freeze")
    assert helped.returncode == 0, helped.stderr
    for needle in ("freeze <server>", "second person", "Options:", "--grace: a duration", "--mode: read-only or no-connect",
                   "Example: pgmove do \"freeze prod-old --grace 30s\""):
        assert needle in helped.stdout, helped.stdout


def test_help_for_a_verb_is_the_same_through_do_as_slack_runs_it(redis_server, tmp_path):  # type: ignore[no-untyped-def]
    """`do "help plan"` goes through the handlers as /pgmove help plan does, and says what `pgmove help plan` says."""
    config = _config(tmp_path / "pgmove.toml", redis_server.url, cli_users())
    through_handlers = pgmove_cli(config, "do", "--as", "U_ALICE", "help plan")
    direct = pgmove_cli(config, "help", "plan")
    assert through_handlers.returncode == 0 and through_handlers.stdout == direct.stdout
    assert "--jobs: a whole number from 1 to 64" in direct.stdout


def test_every_json_reply_has_one_shape(redis_server, tmp_path):  # type: ignore[no-untyped-def]
    """ok, kind, text and verb first, then the payload: a migration's own fields, a list, or nothing."""
    config = _config(tmp_path / "pgmove.toml", redis_server.url, cli_users())
    replies = [json.loads(pgmove_cli(config, "do", "--as", "U_ALICE", "--json", text).stdout)
               for text in ("plan prod-old prod-new", "servers", "status", "unfreeze prod-new", "help")]
    for reply in replies:
        assert list(reply)[:4] == ["ok", "kind", "text", "verb"], reply
    planned, servers, listing, refused, helped = replies
    assert planned["ok"] and planned["kind"] == "accepted" and planned["state"] == "planned" and planned["source"] == "prod-old"
    assert [s["name"] for s in servers["servers"]] == ["prod-new", "prod-old"]
    assert [m["id"] for m in listing["migrations"]] == [planned["id"]]
    assert refused["ok"] is False and refused["kind"] == "refused" and "`" not in refused["text"]
    assert helped["kind"] == "info" and "/pgmove plan" in helped["text"]
