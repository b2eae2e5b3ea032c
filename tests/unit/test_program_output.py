"""What pgmove keeps of a program's output for the thread: no part of a password, even one the 64 KiB tail cuts."""

from __future__ import annotations

import tempfile

from pgmove.steps.process import shown


def test_a_password_cut_in_two_where_the_tail_starts_shows_no_part_of_it():
    """The password ends a few bytes after the point 64 KiB before the end: the tail starts inside it. No piece of
    it is shown, and every line stays cut."""
    password = "tail-cut-" + "p" * 20 + "-end"
    with tempfile.TemporaryFile() as out:
        out.write(b"a" * 1000 + password.encode() + b"\n")
        out.write(b"y" * (64 * 1024 - 8) + b"\n")  # 64 KiB from the end: inside the password
        kept = shown(out, set(), password)
        assert not [line for line in kept if "-end" in line or "pp" in line], [line[:40] for line in kept]
        assert shown(out, set())[0] == "pp-end"  # what a tail that starts where the masking does would show
        assert all(len(line) < 450 for line in kept)
