"""Unit tests of the sans-IO authorization pieces (no sockets, deterministic randomness)."""

from __future__ import annotations

import base64
import hashlib
import itertools
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oauth_auth._authorize import (
    DEVICE_CODE_GRANT_TYPE,
    PollAction,
    StateMismatch,
    build_authorization_request,
    build_code_exchange,
    build_device_authorization_request,
    build_device_token_request,
    code_challenge_s256,
    device_poll_action,
    format_redirect_uri,
    login_scopes,
    new_code_verifier,
    parse_callback,
    parse_device_authorization,
)
from oauth_auth._discovery import ProviderMetadata
from oauth_auth.errors import ConfigError, LoginError

ISSUER = "https://idp.example.com"
META = ProviderMetadata(
    issuer=ISSUER,
    token_endpoint=f"{ISSUER}/token",
    authorization_endpoint=f"{ISSUER}/auth",
    code_challenge_methods_supported=("S256",),
)
REDIRECT = "http://localhost:8666/callback"


_COUNTER = itertools.count()


def counting_bytes(n: int) -> bytes:
    """Deterministic but distinct 'random' bytes per call."""
    i = next(_COUNTER)
    return bytes((i + k) % 256 for k in range(n))


def fixed_bytes(n: int) -> bytes:
    return b"\x01" * n


def query(url: str) -> dict[str, str]:
    q = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in q.values()), q
    return {k: v[0] for k, v in q.items()}


# --- PKCE -------------------------------------------------------------------------------


def test_rfc7636_appendix_b_vector() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert code_challenge_s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_verifier_is_43_url_safe_chars_from_injected_randomness() -> None:
    v = new_code_verifier(fixed_bytes)
    assert v == base64.urlsafe_b64encode(b"\x01" * 32).rstrip(b"=").decode()
    assert len(v) == 43
    assert set(v) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@given(st.binary(min_size=32, max_size=32))
def test_challenge_is_sha256_of_verifier(raw: bytes) -> None:
    v = new_code_verifier(lambda n: raw)
    digest = hashlib.sha256(v.encode()).digest()
    assert code_challenge_s256(v) == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# --- scopes and redirect URI -------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_scopes", "expected"),
    [
        ((), ["openid", "offline_access"]),
        (("email",), ["email", "openid", "offline_access"]),
        (("offline_access", "openid"), ["offline_access", "openid"]),
        (("a", "b", "a", "openid"), ["a", "b", "openid", "offline_access"]),
    ],
)
def test_login_scopes(given_scopes: tuple[str, ...], expected: list[str]) -> None:
    assert login_scopes(given_scopes) == expected


def test_login_scopes_does_not_mutate() -> None:
    scopes = ["email"]
    login_scopes(scopes)
    assert scopes == ["email"]


@pytest.mark.parametrize(
    ("host", "uri"),
    [
        ("localhost", "http://localhost:8666/callback"),
        ("127.0.0.1", "http://127.0.0.1:8666/callback"),
        ("::1", "http://[::1]:8666/callback"),
        ("[::1]", "http://[::1]:8666/callback"),
    ],
)
def test_redirect_uri(host: str, uri: str) -> None:
    assert format_redirect_uri(host, 8666) == uri


@pytest.mark.parametrize("host", ["example.com", "0.0.0.0", "10.0.0.1", ""])
def test_redirect_uri_must_be_loopback(host: str) -> None:
    with pytest.raises(ConfigError):
        format_redirect_uri(host, 8666)


# --- authorization request ----------------------------------------------------------------


def test_authorization_request_has_every_parameter() -> None:
    req = build_authorization_request(
        metadata=META,
        client_id="cli",
        redirect_uri=REDIRECT,
        scopes=login_scopes(["email"]),
        audience="https://api.example.com",
        randbytes=counting_bytes,
    )
    q = query(req.url)
    assert req.url.startswith(f"{ISSUER}/auth?")
    assert q == {
        "response_type": "code",
        "client_id": "cli",
        "redirect_uri": REDIRECT,
        "scope": "email openid offline_access",
        "state": req.state,
        "nonce": req.nonce,
        "code_challenge": code_challenge_s256(req.code_verifier),
        "code_challenge_method": "S256",
        "resource": "https://api.example.com",
        "prompt": "consent",
    }
    assert len({req.state, req.nonce, req.code_verifier}) == 3
    assert req.wants_id_token
    assert req.redirect_uri == REDIRECT


def test_no_resource_without_audience_and_no_prompt_without_offline_access() -> None:
    req = build_authorization_request(
        metadata=META, client_id="cli", redirect_uri=REDIRECT, scopes=["openid"]
    )
    q = query(req.url)
    assert "resource" not in q
    assert "prompt" not in q
    assert q["scope"] == "openid"


def test_secrets_stay_out_of_repr() -> None:
    req = build_authorization_request(
        metadata=META, client_id="cli", redirect_uri=REDIRECT, scopes=["openid"]
    )
    text = repr(req)
    # Issue 15: the URL carries state, nonce and the code challenge, so it is out too.
    for secret in (req.code_verifier, req.nonce, req.state, req.url,
                   query(req.url)["code_challenge"]):
        assert secret not in text
    assert REDIRECT in text


def test_extra_params_add_override_and_remove() -> None:
    req = build_authorization_request(
        metadata=META,
        client_id="cli",
        redirect_uri=REDIRECT,
        scopes=login_scopes([]),
        extra_params={"login_hint": "ann@example.com", "prompt": "login consent", "acr_values": ""},
    )
    q = query(req.url)
    assert q["login_hint"] == "ann@example.com"
    assert q["prompt"] == "login consent"
    assert "acr_values" not in q

    req = build_authorization_request(
        metadata=META,
        client_id="cli",
        redirect_uri=REDIRECT,
        scopes=login_scopes([]),
        extra_params={"prompt": "", "scope": "profile"},
    )
    q = query(req.url)
    assert "prompt" not in q
    assert q["scope"] == "profile"
    assert not req.wants_id_token


@pytest.mark.parametrize("name", ["state", "nonce", "code_challenge", "redirect_uri", "client_id"])
def test_extra_params_cannot_override_binding_parameters(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        build_authorization_request(
            metadata=META,
            client_id="cli",
            redirect_uri=REDIRECT,
            scopes=["openid"],
            extra_params={name: "x"},
        )


def test_endpoint_query_is_kept_but_ours_wins() -> None:
    meta = ProviderMetadata(
        issuer=ISSUER,
        token_endpoint=f"{ISSUER}/token",
        authorization_endpoint=f"{ISSUER}/auth?tenant=t1&client_id=evil",
    )
    req = build_authorization_request(
        metadata=meta, client_id="cli", redirect_uri=REDIRECT, scopes=["openid"]
    )
    q = query(req.url)
    assert q["tenant"] == "t1"
    assert q["client_id"] == "cli"


def test_provider_without_s256_is_refused() -> None:
    meta = ProviderMetadata(
        issuer=ISSUER,
        token_endpoint=f"{ISSUER}/token",
        authorization_endpoint=f"{ISSUER}/auth",
        code_challenge_methods_supported=("plain",),
    )
    with pytest.raises(ConfigError, match="S256"):
        build_authorization_request(
            metadata=meta, client_id="cli", redirect_uri=REDIRECT, scopes=["openid"]
        )


def test_provider_without_authorization_endpoint_is_refused() -> None:
    meta = ProviderMetadata(issuer=ISSUER, token_endpoint=f"{ISSUER}/token")
    with pytest.raises(ConfigError, match="authorization_endpoint"):
        build_authorization_request(
            metadata=meta, client_id="cli", redirect_uri=REDIRECT, scopes=["openid"]
        )


# --- callback ---------------------------------------------------------------------------------


def cb(**params: str) -> str:
    return urlencode(params)


def test_callback_returns_code() -> None:
    assert parse_callback(cb(code="c1", state="s"), expected_state="s", issuer=ISSUER) == "c1"


def test_callback_with_matching_iss() -> None:
    q = cb(code="c1", state="s", iss=ISSUER)
    assert parse_callback(q, expected_state="s", issuer=ISSUER, require_iss=True) == "c1"


@pytest.mark.parametrize(
    "q",
    [
        cb(code="c1"),
        cb(code="c1", state="other"),
        cb(code="c1", state=""),
        "code=c1&state=s&state=s",
        cb(error="access_denied", state="other"),
    ],
)
def test_foreign_state_is_a_mismatch_not_a_login_error(q: str) -> None:
    with pytest.raises(StateMismatch):
        parse_callback(q, expected_state="s", issuer=ISSUER)


def test_state_mismatch_carries_clipped_error_for_the_page() -> None:
    with pytest.raises(StateMismatch) as info:
        parse_callback(
            cb(error="access_denied", error_description="no\x1b[31m", state="x"),
            expected_state="s",
            issuer=ISSUER,
        )
    assert info.value.error == "access_denied"
    assert "\x1b" not in info.value.description


def test_error_with_our_state_ends_the_login() -> None:
    with pytest.raises(LoginError) as info:
        parse_callback(
            cb(error="access_denied", error_description="The user said no", state="s"),
            expected_state="s",
            issuer=ISSUER,
        )
    assert info.value.error == "access_denied"
    assert info.value.description == "The user said no"


def test_iss_mismatch_is_checked_before_error_and_code() -> None:
    for q in (
        cb(code="c1", state="s", iss="https://evil.example.com"),
        cb(error="access_denied", state="s", iss="https://evil.example.com"),
    ):
        with pytest.raises(LoginError, match="evil") as info:
            parse_callback(q, expected_state="s", issuer=ISSUER)
        assert info.value.error == "invalid_request"


def test_missing_iss_is_an_error_only_when_promised() -> None:
    assert parse_callback(cb(code="c", state="s"), expected_state="s", issuer=ISSUER) == "c"
    with pytest.raises(LoginError, match="iss"):
        parse_callback(cb(code="c", state="s"), expected_state="s", issuer=ISSUER,
                       require_iss=True)


@pytest.mark.parametrize("q", [cb(state="s"), cb(state="s", code=""), "state=s&code=a&code=b"])
def test_missing_or_repeated_code(q: str) -> None:
    with pytest.raises(LoginError):
        parse_callback(q, expected_state="s", issuer=ISSUER)


def test_code_never_in_error_messages() -> None:
    with pytest.raises(LoginError) as info:
        parse_callback(cb(code="SECRETCODE", state="s", iss="https://x"), expected_state="s",
                       issuer=ISSUER)
    assert "SECRETCODE" not in str(info.value)


# --- code exchange and token response ------------------------------------------------------


def test_code_exchange_form() -> None:
    form = build_code_exchange(code="c", redirect_uri=REDIRECT, client_id="cli",
                               code_verifier="v", audience="https://api")
    assert form == {
        "grant_type": "authorization_code",
        "code": "c",
        "redirect_uri": REDIRECT,
        "client_id": "cli",
        "code_verifier": "v",
        "resource": "https://api",
    }
    assert "resource" not in build_code_exchange(code="c", redirect_uri=REDIRECT,
                                                 client_id="cli", code_verifier="v")


# --- device grant -------------------------------------------------------------------------------


def test_device_forms() -> None:
    assert build_device_authorization_request(client_id="cli", scopes=["openid", "x"]) == {
        "client_id": "cli",
        "scope": "openid x",
    }
    assert build_device_authorization_request(
        client_id="cli", scopes=[], audience="https://api"
    )["resource"] == "https://api"
    assert build_device_token_request(device_code="d", client_id="cli", audience="r") == {
        "grant_type": DEVICE_CODE_GRANT_TYPE,
        "device_code": "d",
        "client_id": "cli",
        "resource": "r",
    }


def test_parse_device_authorization() -> None:
    grant = parse_device_authorization(
        {
            "device_code": "DEV",
            "user_code": "ABCD-EFGH",
            "verification_uri": "https://idp/device",
            "verification_uri_complete": "https://idp/device?user_code=ABCD-EFGH",
            "expires_in": 600,
            "interval": 2,
        }
    )
    assert grant.interval == 2.0
    assert grant.expires_in == 600.0
    assert "DEV" not in repr(grant)
    defaults = parse_device_authorization(
        {"device_code": "d", "user_code": "U", "verification_url": "https://idp/device"}
    )
    assert defaults.interval == 5.0
    assert defaults.verification_uri == "https://idp/device"
    assert defaults.verification_uri_complete == ""


@pytest.mark.parametrize(
    "doc",
    [
        {"user_code": "U", "verification_uri": "https://idp/d"},
        {"device_code": "d", "verification_uri": "https://idp/d"},
        {"device_code": "d", "user_code": "U\x1b[2J", "verification_uri": "https://idp/d"},
        {"device_code": "d", "user_code": "U"},
        {"device_code": "d", "user_code": "U", "verification_uri": "javascript:alert(1)"},
        {"device_code": "d", "user_code": "U", "verification_uri": "https://idp/\x1b[2J"},
    ],
)
def test_bad_device_authorization(doc: dict[str, object]) -> None:
    with pytest.raises(LoginError):
        parse_device_authorization(doc)


def test_device_poll_actions() -> None:
    assert device_poll_action("authorization_pending") is PollAction.WAIT
    assert device_poll_action("slow_down") is PollAction.SLOW_DOWN
    for code in ("expired_token", "access_denied", "invalid_grant"):
        with pytest.raises(LoginError) as info:
            device_poll_action(code, "because")
        assert info.value.error == code


# ------------------------------------------------ regressions (each failed before its fix)


def test_a_malformed_device_verification_uri_is_a_login_error() -> None:
    from oauth_auth import LoginError
    from oauth_auth._authorize import parse_device_authorization

    with pytest.raises(LoginError, match="verification_uri"):
        parse_device_authorization({"device_code": "d", "user_code": "ABCD",
                                    "verification_uri": "http://[x"})
    auth = parse_device_authorization({"device_code": "d", "user_code": "ABCD",
                                       "verification_uri": "https://idp.test/device",
                                       "verification_uri_complete": "https://[x"})
    assert auth.verification_uri_complete == ""
