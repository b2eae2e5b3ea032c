"""Option values are checked once, by the command models, and every refusal says which option, what it takes
and the usage line; no text, however odd, gets past parse() as anything but a command or a UsageError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgmove.handlers import verbs
from pgmove.handlers.parse import USAGE, parse
from pgmove.state.errors import UsageError

# Digits that str.isdigit and `\d` accept and int() reads or chokes on: Arabic-Indic, superscript, fullwidth.
ODD_DIGITS = ["٣", "²", "３", "৩", "1²", "+3", " 3", "1_0", "3.0", "0x10"]


@pytest.mark.parametrize("value", ODD_DIGITS)
def test_jobs_takes_only_ascii_digits(value):
    """`--jobs ٣` or `--jobs ²` is a usage error naming --jobs, never an unexpected error or a silent 3."""
    with pytest.raises(UsageError) as caught:
        parse(f"plan prod-old prod-new --jobs '{value}'")
    message = caught.value.message
    assert message.startswith("--jobs takes a whole number from 1 to 64") and "Usage: `/pgmove plan" in message


@pytest.mark.parametrize("value", ["٣s", "²m", "３０s", "1.5s", "-1s", "30 s", "30h", "61m", "3601"])
def test_grace_takes_ascii_durations_up_to_an_hour(value):
    """A grace period in odd digits, units or beyond an hour is refused by name; 30s, 2M and 3600 are read."""
    with pytest.raises(UsageError, match="^--grace takes a duration up to an hour"):
        parse(f"freeze prod-old --grace '{value}'")
    assert parse("freeze prod-old --grace 2M").grace_seconds == 120  # type: ignore[union-attr]
    assert parse("freeze prod-old --grace=3600").grace_seconds == 3600  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("plan prod-old prod-new --databases ' , '", "--databases takes a comma-separated list of database names"),
        ("plan prod-old prod-new --databases 'a,b\x01'", "--databases takes a comma-separated list of database names, not `a,b?`"),
        ("plan prod-old prod-new --jobs=", "--jobs takes a whole number from 1 to 64, not an empty value"),
        ("plan prod-old prod-new --jobs 65", "--jobs takes a whole number from 1 to 64, not `65`"),
        ("freeze prod-old --mode READ-ONLY", "--mode takes read-only or no-connect, not `READ-ONLY`"),
        ("freeze prod-old --archive ../x", "--archive takes a folder name"),
        ("freeze prod-old --archive ٣", "--archive takes a folder name"),
        ("reject prod-old --request 12345678x", "--request takes a request id"),
        ("reject prod-old --request", "--request needs a value"),
        ("approve prod-old 0BADC0DE", "`0BADC0DE` is not a request id"),
        ("approve prod-old ٠١٢٣٤٥٦٧", "`٠١٢٣٤٥٦٧` is not a request id"),
        ("status 'prod-old\n'", "`prod-old?` is not a server name"),
        ("status prod‐old", "`prod‐old` is not a server name"),
        ("plan prod-old ｐｒｏｄ", "`ｐｒｏｄ` is not a server name"),
        ("reject prod-old " + "no " * 200, "The reason takes at most 500 characters, not 599 characters"),
        ("verify prod-old --quick=yes", "--quick takes no value"),
        ("verify prod-old --quick --quick", "--quick is given twice"),
        ("plan prod-old prod-new --jobs 2 --jobs=3", "--jobs is given twice"),
    ],
)
def test_a_refused_value_names_the_option_what_it_takes_and_the_usage(text, start):
    """The first refused value is named as typed, with what would work and the verb's usage line."""
    with pytest.raises(UsageError) as caught:
        parse(text)
    message = caught.value.message
    assert message.startswith(start), message
    assert f"Usage: `/pgmove {USAGE[text.split()[0]]}`" in message, message


def test_unprintable_characters_are_not_echoed():
    """A direction override or a zero-width character in an echo could disguise what was refused."""
    with pytest.raises(UsageError) as caught:
        parse("freeze prod-old --archive 'ab\u202ecd\u200b'")
    assert "`ab?cd?`" in caught.value.message


def test_every_value_a_person_types_says_what_it_takes():
    """Each field parse() fills has a description, so no refusal falls back to a vague one."""
    models = [verbs.Help, verbs.PlanCmd, verbs.Status, verbs.ServerCmd, verbs.VerifyCmd, verbs.FreezeCmd,
              verbs.Approve, verbs.Reject, verbs.AbortCmd]
    for model in models:
        for name, info in model.model_fields.items():
            if name not in ("verb", "topic"):
                assert info.description, f"{model.__name__}.{name}"


_WORDS = ["plan", "freeze", "approve", "reject", "status", "help", "verify", "unfreeze", "servers", "prod-old",
          "prod-new", "--jobs", "--jobs=", "--grace", "--mode", "--archive", "--databases", "--request", "--quick",
          "--quick=", "--", "-", "=", "0123abcd", *ODD_DIGITS, "30s", "2m", "read-only", "a,b", ",", "'", '"', "\\",
          "\x00", "\n", "\u202e", "\U0001f600", "ǅ", "İ", "ß"]
_TEXT = st.one_of(
    st.text(max_size=120),
    st.lists(st.sampled_from(_WORDS), max_size=8).map(" ".join),
    st.tuples(st.lists(st.sampled_from(_WORDS), max_size=5), st.text(max_size=12), st.lists(st.sampled_from(_WORDS), max_size=3))
      .map(lambda t: " ".join([*t[0], t[1], *t[2]])),
)


@settings(max_examples=1500, deadline=None)
@given(text=_TEXT)
def test_any_text_parses_to_a_command_or_a_usage_error(text):
    """Whatever is typed, parse() returns one of the commands or raises UsageError with a message; nothing else."""
    try:
        command = parse(text)
    except UsageError as exc:
        assert exc.message.strip()
        return
    assert isinstance(command, verbs.Command) and command.verb in USAGE
