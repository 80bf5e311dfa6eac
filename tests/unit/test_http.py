"""Unit tests of the provider HTTP client (`_http.IdPHttp`) on httpx.MockTransport.

Regression tests (bugs the reliability suite found) live next to the unit they cover.
"""

from __future__ import annotations

import pytest

from oauth_auth import OAuthError
from oauth_auth._http import oauth_error_from


def test_deeply_nested_json_from_the_provider_is_not_a_recursion_error() -> None:
    import httpx

    from oauth_auth._http import IdPHttp

    body = b"[" * 100_000 + b"]" * 100_000
    http = IdPHttp(transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body)),
                   max_retries=0)
    try:
        with pytest.raises(OAuthError, match="not a JSON object"):
            http.post_form("https://idp.example.test/token", {})
        from oauth_auth import TransportError

        with pytest.raises(TransportError, match="without a JSON object"):
            http.get_json("https://idp.example.test/.well-known/openid-configuration")
    finally:
        http.close()


@pytest.mark.parametrize("value", ["²", "³", "¹²"])
def test_a_retry_after_of_non_ascii_digits_is_ignored_not_a_value_error(value: str) -> None:
    import httpx

    from oauth_auth import TransportError
    from oauth_auth._http import IdPHttp, _retry_after

    assert _retry_after(value, 0.0) is None
    raw = [(b"Retry-After", value.encode("utf-8"))]  # as a provider would send it
    http = IdPHttp(transport=httpx.MockTransport(
        lambda r: httpx.Response(503, headers=raw)), max_retries=1, sleep=lambda s: None)
    try:
        with pytest.raises(TransportError, match="HTTP 503"):
            http.post_form("https://idp.example.test/token", {})
    finally:
        http.close()


def test_provider_error_text_cannot_carry_terminal_escapes() -> None:
    exc = oauth_error_from({"error": "invalid_grant\x1b[2J",
                            "error_description": "\x1b]0;pwned\x07 bye\r\nfake prompt $",
                            "error_uri": "https://x.test/\x1b[31m"}, 400)
    for text in (exc.error, exc.description, exc.error_uri, str(exc)):
        assert text.isprintable(), repr(text)
    assert "pwned" in exc.description  # the words survive, only the controls go
