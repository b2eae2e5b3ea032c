"""The HTTP edge's body check reads Content-Length in ASCII digits only, before Bolt sees the request."""

from __future__ import annotations

import io
from typing import Any

import pytest

from pgmove.bot.http import BodyLimit


@pytest.mark.parametrize("length", ["²", "٣", "３", "+3", "-1", "3 3", "0x3"])
def test_a_content_length_in_odd_digits_is_a_400_not_a_crash(length):
    """`²` passes str.isdigit and then breaks int(): the edge answers 400 and never calls the app."""
    called, statuses = [], []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        called.append(environ)
        return [b""]

    environ = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": length, "wsgi.input": io.BytesIO(b"abc")}
    body = BodyLimit(app)(environ, lambda status, headers: statuses.append(status))
    assert statuses == ["400 Bad Request"] and b"not a number" in b"".join(body) and not called
    ok = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "3", "wsgi.input": io.BytesIO(b"abc")}
    BodyLimit(app)(ok, lambda status, headers: statuses.append(status))
    assert called and called[0]["wsgi.input"].read() == b"abc"
