"""Parsing chat text into commands: options in both spellings, and a specific refusal for bad input."""

from __future__ import annotations

import pytest

from pgmove.handlers.parse import FreezeCmd, PlanCmd, ServerCmd, parse
from pgmove.state.errors import UsageError


def test_plan_with_options_in_both_spellings():
    """plan reads --name value and --name=value alike, ignores the verb's case and a leading /pgmove, and defaults to
    2 jobs."""
    assert parse("plan prod-old prod-new --databases a,b --jobs=4") == PlanCmd(
        source="prod-old", target="prod-new", databases=["a", "b"], jobs=4)
    assert parse("/pgmove PLAN prod-old prod-new").jobs == 2


def test_server_verbs_take_exactly_one_server():
    """A verb about one server takes exactly one, and without it the reply says it needs more."""
    assert parse("unfreeze prod-old") == ServerCmd(verb="unfreeze", server="prod-old")
    with pytest.raises(UsageError, match="needs more"):
        parse("retry")


def test_freeze_takes_a_mode_and_a_grace_period():
    """freeze takes --mode read-only or no-connect and a --grace duration up to an hour, and refuses anything else
    with the allowed values."""
    assert parse("freeze prod-old") == FreezeCmd(server="prod-old")
    assert parse("freeze prod-old --mode no-connect --grace 2m") == FreezeCmd(
        server="prod-old", mode="no-connect", grace_seconds=120)
    with pytest.raises(UsageError, match="read-only or no-connect"):
        parse("freeze prod-old --mode sleepy")
    with pytest.raises(UsageError, match="duration up to an hour"):
        parse("freeze prod-old --grace forever")


def test_freeze_takes_an_archive_name_never_a_path():
    """freeze --archive takes a plain folder name and refuses a path, a hidden name or an empty one."""
    assert parse("freeze prod-old --archive drill-2026.11") == FreezeCmd(server="prod-old", archive="drill-2026.11")
    for bad in ("../etc", "/tmp/x", "a/b", ".hidden", ""):
        with pytest.raises(UsageError, match="--archive takes a folder name"):
            parse(f"freeze prod-old --archive '{bad}'")


def test_user_text_is_echoed_back_defanged():
    """Backticks and control characters in an echo could break out of a code span in Slack."""
    with pytest.raises(UsageError) as caught:
        parse("launch`\x07 now")
    assert "`launch??`" in caught.value.message


def test_verify_takes_quick_as_a_flag():
    """verify takes --quick as a flag and refuses an option it does not have."""
    from pgmove.handlers.parse import VerifyCmd

    assert parse("verify prod-old --quick") == VerifyCmd(server="prod-old", quick=True)
    assert parse("verify prod-old") == VerifyCmd(server="prod-old")
    with pytest.raises(UsageError, match="not an option of verify"):
        parse("verify prod-old --fast")
