"""Loopback is decided by address: one rule (`is_loopback_host`) for the issuer, every
discovered endpoint, the redirect URI and the bearer-over-http check."""

from __future__ import annotations

import pytest

from oauth_auth import ConfigError
from oauth_auth._authorize import format_redirect_uri
from oauth_auth._discovery import check_issuer_url, is_loopback_host, parse_metadata


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("idp.localhost", False),
        ("localhost.example.com", False),
        ("localhost.", False),
        ("127.0.0.1.nip.io", False),
        ("127.1", False),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_by_address(host: str | None, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_an_http_issuer_on_a_localhost_subdomain_is_refused() -> None:
    with pytest.raises(ConfigError, match="must use https"):
        check_issuer_url("http://idp.localhost:8080")
    check_issuer_url("http://127.0.0.1:8080")


def test_every_endpoint_of_a_loopback_issuer_must_be_loopback_too() -> None:
    issuer = "http://127.0.0.1:9000"
    doc = {"issuer": issuer, "token_endpoint": f"{issuer}/token",
           "authorization_endpoint": f"{issuer}/auth"}
    assert parse_metadata(doc, issuer).token_endpoint == f"{issuer}/token"
    for name in ("token_endpoint", "revocation_endpoint", "device_authorization_endpoint"):
        for elsewhere in ("http://idp.example.com/x", "http://idp.localhost:9000/x"):
            with pytest.raises(ConfigError, match=f"{name} is not https"):
                parse_metadata({**doc, name: elsewhere}, issuer)
    # https endpoints elsewhere stay fine (a local gateway in front of a real provider)
    assert parse_metadata({**doc, "jwks_uri": "https://keys.example.com/jwks"}, issuer)


def test_an_https_issuer_cannot_name_a_plain_http_loopback_endpoint() -> None:
    issuer = "https://idp.example.com"
    doc = {"issuer": issuer, "token_endpoint": "http://127.0.0.1:9000/token"}
    with pytest.raises(ConfigError, match="token_endpoint is not https"):
        parse_metadata(doc, issuer)


def test_the_redirect_uri_host_is_loopback_by_address() -> None:
    assert format_redirect_uri("localhost", 8666) == "http://localhost:8666/callback"
    assert format_redirect_uri("::1", 8666) == "http://[::1]:8666/callback"
    with pytest.raises(ConfigError, match="not a loopback host"):
        format_redirect_uri("cb.localhost", 8666)
