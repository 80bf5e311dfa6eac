"""Unit tests of the error tree: every OAuth error carries a hint of what to do next.

Regression tests (bugs the reliability suite found) live next to the unit they cover.
"""

from __future__ import annotations

import pytest

from oauth_auth import OAuthError
from oauth_auth._http import oauth_error_from
from oauth_auth._token import parse_token_response


@pytest.mark.parametrize(
    "make",
    [
        lambda: parse_token_response({"token_type": "Bearer"}, 0.0),
        lambda: parse_token_response({"access_token": "a", "token_type": "Bearer",
                                      "expires_in": "soon"}, 0.0),
        lambda: oauth_error_from({"error": "invalid_scope"}, 400),
        lambda: oauth_error_from({"error": 42}, 400),
    ],
    ids=["no-access-token", "expires-in-string", "idp-error", "malformed-error"],
)
def test_every_oauth_error_has_a_hint(make: object) -> None:
    try:
        exc = make()  # type: ignore[operator]
    except OAuthError as raised:
        exc = raised
    assert isinstance(exc, OAuthError)
    assert exc.hint.strip()
    assert exc.hint in str(exc)


def test_clip_text_bounds_and_shows_unprintables() -> None:
    from oauth_auth.errors import clip_text

    assert clip_text("bad\x1b]0;pwned\x07\r\ncode", 100) == "bad?]0;pwned???code"
    assert clip_text("x" * 500) == "x" * 300
    assert clip_text("abcdef", 3) == "abc"
