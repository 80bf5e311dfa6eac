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
