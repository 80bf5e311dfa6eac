"""Unit tests of token responses and the Token value (`_token`).

Regression tests (bugs the reliability suite found) live next to the unit they cover.
"""

from __future__ import annotations

import pytest

from oauth_auth import OAuthError
from oauth_auth._token import parse_token_response


@pytest.mark.parametrize("sign", [1, -1])
def test_an_integer_expires_in_too_large_for_a_float_is_not_an_overflow(sign: int) -> None:
    import json

    from oauth_auth._token import MAX_EXPIRES_IN

    doc = json.loads('{"access_token": "a", "token_type": "Bearer", "expires_in": '
                     + ("-" if sign < 0 else "") + "1" + "0" * 400 + "}")
    if sign > 0:
        assert parse_token_response(doc, 100.0).expiry == 100.0 + MAX_EXPIRES_IN
    else:
        with pytest.raises(OAuthError, match="expires_in"):
            parse_token_response(doc, 100.0)


# --- one validator for every grant (issue 12: login and refresh ran two, which disagreed) ----


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "no access_token"),
        ({"access_token": ""}, "no access_token"),
        ({"access_token": 5, "token_type": "Bearer"}, "no access_token"),
        ({"access_token": "a", "token_type": "DPoP"}, "not Bearer"),
        # RFC 6749 5.1: token_type is REQUIRED. A login used to take a response without it.
        ({"access_token": "a", "expires_in": 60}, "not Bearer"),
        ({"access_token": "a", "token_type": None}, "not Bearer"),
        ({"access_token": "a", "token_type": "Bearer", "expires_in": "soon"}, "not a number"),
        ({"access_token": "a", "token_type": "Bearer", "expires_in": True}, "not a number"),
    ],
)
def test_unusable_token_responses_are_one_error(doc: dict[str, object], message: str) -> None:
    with pytest.raises(OAuthError, match=message) as info:
        parse_token_response(doc, 0.0)
    assert type(info.value) is OAuthError
    assert info.value.error == "invalid_response"


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BEARER"])
def test_bearer_is_case_insensitive(token_type: str) -> None:
    token = parse_token_response({"access_token": "a", "token_type": token_type}, 5.0)
    assert (token.access_token, token.expiry) == ("a", None)


def test_a_numeric_string_expires_in_is_accepted() -> None:
    # Entra v1 and B2C send "3599".
    doc = {"access_token": "a", "token_type": "Bearer", "expires_in": " 3599 "}
    assert parse_token_response(doc, 100.0).expiry == 3699.0
