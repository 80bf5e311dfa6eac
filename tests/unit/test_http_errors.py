"""IdPHttp's typed errors for answers and URLs httpx alone would let through or raise raw."""

from __future__ import annotations

import json

import httpx
import pytest

from oauth_auth import (
    ConfigError,
    MemorySecrets,
    OAuthAuthError,
    OAuthError,
    OAuthTokenSource,
    OIDCParams,
)
from oauth_auth._http import IdPHttp
from tests.support.fakes import ISSUER, FakeProvider

TOKEN_BODY = {"access_token": "an-access-token-of-some-length", "token_type": "Bearer",
              "expires_in": 3600}


def test_a_token_endpoint_with_an_escape_character_is_a_config_error(
    fake_idp: FakeProvider, tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTH_AUTH_LOCK_DIR", str(tmp_path))
    fake_idp.metadata_overrides["token_endpoint"] = f"{ISSUER}/tok\x1b[2Jen"
    secrets = MemorySecrets()
    secrets.set_secret("k", fake_idp.seed())
    source = OAuthTokenSource(OIDCParams(ISSUER, "cli"), key_provider=lambda: "k",
                              secrets_provider=secrets, transport=fake_idp.transport())
    with pytest.raises(OAuthAuthError) as caught:
        source.token()
    assert isinstance(caught.value, ConfigError), type(caught.value)
    assert "\x1b" not in str(caught.value)
    assert secrets.get_secret("k") == "rt-0"  # a bad URL never ends the session
    assert fake_idp.counts["refresh"] == 0


def test_a_malformed_url_never_raises_a_raw_httpx_error() -> None:
    http = IdPHttp(transport=httpx.MockTransport(lambda r: httpx.Response(200, json={})))
    for url in ("https://idp.example.test/t\x1b", "https://[::1/x", "https://idp\x00.x/t"):
        with pytest.raises(ConfigError):
            http.post_form(url, {"grant_type": "refresh_token"})
        with pytest.raises(ConfigError):
            http.get_json(url)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_with_a_json_body_is_not_a_token_response(status: int) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(status, content=json.dumps(TOKEN_BODY).encode(),
                              headers={"Location": "https://elsewhere.example/",
                                       "Content-Type": "application/json"})

    http = IdPHttp(transport=httpx.MockTransport(handler))
    with pytest.raises(OAuthError, match="a redirect is not a token response") as caught:
        http.post_form(f"{ISSUER}/token", {"grant_type": "refresh_token"})
    assert caught.value.error == "invalid_response"
    assert calls == [f"{ISSUER}/token"]  # the redirect was not followed either


def test_a_body_over_the_cap_declared_by_content_length_is_refused_unread() -> None:
    big = b'{"access_token": "' + b"x" * (2 << 20) + b'"}'
    http = IdPHttp(transport=httpx.MockTransport(
        lambda r: httpx.Response(200, content=big, headers={"Content-Type": "application/json"})
    ))
    with pytest.raises(OAuthError, match="larger than 1 MiB"):
        http.post_form(f"{ISSUER}/token", {"grant_type": "refresh_token"})


def test_every_secret_a_request_sent_is_redacted_from_the_providers_answer() -> None:
    """Issue 15: a provider echoing the refresh token, code or client secret in its
    error_description had it carried into the error (and onto the terminal)."""
    from oauth_auth._protocol import ClientAuthentication
    from oauth_auth._scrub import scrubbed

    secret, refresh, device = "client-secret-0123", "rt-" + "x" * 40, "device-code-0123"
    echoed: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        said = f"client {secret}, token {refresh}, device {device}, grant refresh_token"
        echoed.append(said)
        return httpx.Response(400, json={"error": "invalid_client", "error_description": said,
                                         "error_uri": f"https://idp.example/e?t={refresh}"})

    http = IdPHttp(transport=httpx.MockTransport(handler), max_retries=0)
    try:
        # (`scrubbed`, as every public entry point does: the raw answer in the frames of
        # post_form is cleared; the error's own text is what this test is about.)
        with pytest.raises(OAuthError) as info, scrubbed:
            http.post_form(
                "https://idp.example/token",
                {"grant_type": "refresh_token", "refresh_token": refresh,
                 "device_code": device, "client_id": "cli"},
                client=ClientAuthentication("cli", secret, "client_secret_basic"),
            )
    finally:
        http.close()
    assert echoed  # the provider did say them
    assert info.value.description == (
        "client [redacted], token [redacted], device [redacted], grant refresh_token")
    assert info.value.error_uri == "https://idp.example/e?t=[redacted]"
    for value in (secret, refresh, device):
        assert value not in str(info.value)
