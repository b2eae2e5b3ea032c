"""What a hook or a pooler's repoint command prints reaches the thread without any password and in pieces Slack
can show."""

from __future__ import annotations

import pytest

from pgmove.state.errors import StepFailed
from pgmove.state.models import PoolerBackend
from pgmove.steps.poolerswitch import point
from tests.integration.test_app_hooks import hook, messages, server_keys
from tests.integration.test_logical_flow import do_json
from tests.integration.test_pooler import pooler
from tests.integration.test_worker import store_of

pytestmark = pytest.mark.slow

# The worker's environment holds the servers' passwords; a hook runs as the same user and can read it.
LEAKY = ("import os\nenv = open(f'/proc/{os.getppid()}/environ', 'rb').read().decode(errors='replace').split('\\0')\n"
         "print('x' * 2_000_000)\n"
         "print(' '.join(e for e in env if 'PASSWORD' in e.upper() or 'SECRET' in e.upper()))\n")


def test_a_hook_that_prints_passwords_and_megabytes_leaves_neither_in_the_thread(pgmove, tmp_path, passwords):  # type: ignore[no-untyped-def]
    """A pause hook prints the worker's password variables and a 2 MB line: the thread names the hook's success
    with the passwords masked, no line of it is longer than a Slack text block, and the record stays small."""
    server_keys(pgmove, "prod-old", pause_app_hook=[hook(tmp_path, "pause-app", body=LEAKY)],
                resume_app_hook=[hook(tmp_path, "resume-old")])
    pgmove.start_worker()
    assert pgmove.do("U_ALICE", "freeze prod-old").returncode == 0
    done = do_json(pgmove, "U_BOB", "approve prod-old")
    assert done["state"] == "frozen", done.get("failure")
    lines = messages(pgmove, done["id"])
    succeeded = next(line for line in lines if "pause-app succeeded" in line)
    assert "PGMOVE_PROD_OLD_PASSWORD=***" in succeeded and "more characters" in succeeded
    for secret in passwords.all():
        assert not [line for line in lines if secret in line]
    assert max(len(line) for line in lines) < 3000
    record = store_of(pgmove).get(done["id"])
    assert record is not None and len(record.model_dump_json()) < 30_000
    assert do_json(pgmove, "U_ALICE", "unfreeze prod-old")["state"] in ("ready", "awaiting_unfreeze_approval")


def test_a_failing_repoint_command_that_prints_passwords_and_megabytes_leaves_neither_in_the_failure(pgbouncer, tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    """The team's repoint command prints the pooler's admin password (found in its auth file), a configured
    secret and a 2 MB line, then fails: the StepFailed (which goes to the thread) has them masked and cut."""
    secret = "configured-secret-" + "9" * 12
    monkeypatch.setenv("PGMOVE_SECRET_X", secret)
    script = tmp_path / "repoint"
    script.write_text("#!/bin/sh\nhead -c 2000000 /dev/zero | tr '\\0' x; echo\n"
                      f"echo 'auth_file: \"pgmove_admin\" \"{pgbouncer.admin_password}\"'\n"
                      f"echo 'PGMOVE_SECRET_X={secret}'\nexit 3\n")
    script.chmod(0o755)
    by_command = pooler(pgbouncer, databases_file=None, repoint_command=(str(script),))
    with pytest.raises(StepFailed) as failed:
        point(by_command, {"appdb": PoolerBackend(host="127.0.0.1", port=1, dbname="appdb")}, {"PGMOVE_SECRET_X"})
    text = failed.value.message
    assert "exited with status 3 for appdb" in text and "more characters" in text, text[:2000]
    assert pgbouncer.admin_password not in text and secret not in text, text[:2000]
    assert '"pgmove_admin" "***"' in text and "PGMOVE_SECRET_X=***" in text, text[:2000]
    output = text.split("for appdb: ", 1)[1].split(" / ")
    assert len(output) == 3 and max(len(line) for line in output) < 450 and len(text) < 3000, output
