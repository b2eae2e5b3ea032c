"""Decisions and odd input on the command line, through the real `pgmove` process: a reject's reason is kept, a
wrong request id names the pending one, odd digits are usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.services import cli_users, pgmove_cli


@pytest.fixture
def config(redis_server, tmp_path) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / "pgmove.toml"
    path.write_text(f'redis_url = "{redis_server.url}"\n[access]\noperators = ["U_ALICE", "U_BOB"]\n'
                    f'approvers = ["U_BOB"]\n{cli_users()}[servers.prod-old]\ndsn = "host=127.0.0.1 port=1 user=pgmove"\n')
    return path


def _freeze_requested(config: Path) -> str:
    """A freeze-only request waiting on prod-old (no target, so no worker is needed to get there); its id."""
    asked = pgmove_cli(config, "do", "--as", "U_ALICE", "--json", "freeze prod-old")
    assert asked.returncode == 0, asked.stderr
    return str(json.loads(asked.stdout)["approval"]["id"])


def test_a_reject_reason_is_kept_in_the_reply_and_the_history(config):  # type: ignore[no-untyped-def]
    """`reject prod-old not during the sale`: the reply and the history both carry the reason, word for word."""
    _freeze_requested(config)
    rejected = pgmove_cli(config, "do", "--as", "U_BOB", "--json", "reject prod-old not during the sale")
    assert rejected.returncode == 0, rejected.stderr
    said = json.loads(rejected.stdout)
    assert said["approval"]["reason"] == "not during the sale" and "not during the sale" in said["text"], said["text"]
    history = pgmove_cli(config, "do", "--as", "U_ALICE", "history prod-old")
    assert "not during the sale" in history.stdout, history.stdout


def test_an_approved_freeze_with_no_worker_running_says_it_is_queued(config):  # type: ignore[no-untyped-def]
    """The freeze request, then its approval: with no worker alive the reply says the freeze waits for one."""
    _freeze_requested(config)
    approved = pgmove_cli(config, "do", "--as", "U_BOB", "approve prod-old")
    assert approved.returncode == 0, approved.stderr
    assert "queued: freeze of prod-old waits for a worker, and no worker is running" in approved.stdout, approved.stdout


def test_a_request_id_that_is_not_the_pending_one_names_the_pending_one(config):  # type: ignore[no-untyped-def]
    """Approving request 0000abcd while another waits is refused (exit 2), naming the one that waits and who asked."""
    pending = _freeze_requested(config)
    wrong = "0000abcd" if pending != "0000abcd" else "1111abcd"
    refused = pgmove_cli(config, "do", "--as", "U_BOB", f"approve prod-old {wrong}")
    assert refused.returncode == 2
    assert f"Request {wrong} is not the one waiting on prod-old: that is the freeze request {pending} from U_ALICE" \
        in refused.stderr, refused.stderr


@pytest.mark.parametrize("args", [
    ("do", "--as", "U_ALICE", "plan prod-old prod-new --jobs ٣"),
    ("do", "--as", "U_ALICE", "freeze prod-old --grace ３s"),
    ("do", "--as", "U_ALICE", "--timeout", "٣", "status"),
    ("do", "--as", "U_ALICE", "--timeout", "1e400", "status"),
    ("do", "--as", "U_ALICE", "--timeout", "-5", "status"),
    ("bot", "--port", "٨٠٨٠"),
])
def test_odd_digits_in_any_option_are_a_usage_error_never_a_silent_number(config, args):  # type: ignore[no-untyped-def]
    """Arabic-Indic or fullwidth digits, or an infinite or negative timeout, in a chat option or a command-line one: exit 2
    naming the option, never an unexpected error, never read as the number it looks like."""
    done = pgmove_cli(config, *args, timeout=30)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "unexpected" not in done.stderr.lower(), done.stderr
    assert any(name in done.stderr for name in ("--jobs", "--grace", "--timeout", "--port")), done.stderr
