"""The bench's OpenID provider works as the other tests assume: logins, counts, faults, RFC 8707,
device grant, rotation settings, and the process dies with its parent's pipe."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest

from tests.support.browser import http_browser_deny, http_browser_login
from tests.support.idp import (
    DEVICE_GRANT,
    IdP,
    authorization_url,
    decode_jwt_payload,
    device_authorization,
    device_login,
    exchange_code,
    http_device_approve,
    make_pkce,
    obtain_tokens,
    poll_device_token,
    refresh,
    refresh_count,
    start_idp,
    token_request,
)

pytestmark = pytest.mark.idp

RESOURCE = "https://api.example.test"


def test_discovery_matches_the_contract(real_idp: IdP) -> None:
    meta = real_idp.metadata
    assert meta["issuer"] == real_idp.issuer
    assert real_idp.issuer.startswith("http://127.0.0.1:")
    assert not real_idp.issuer.endswith("/")
    assert meta["authorization_endpoint"] == real_idp.authorization_endpoint
    assert meta["token_endpoint"] == real_idp.token_endpoint
    assert meta["device_authorization_endpoint"] == real_idp.device_authorization_endpoint
    assert meta["revocation_endpoint"] == real_idp.revocation_endpoint
    assert meta["introspection_endpoint"] == real_idp.introspection_endpoint
    assert meta["jwks_uri"] == real_idp.jwks_uri
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert {"openid", "offline_access", "profile", "email"} <= set(meta["scopes_supported"])
    assert DEVICE_GRANT in meta["grant_types_supported"]
    assert "end_session_endpoint" in meta


def test_login_returns_tokens_and_counts_one_code_exchange(real_idp: IdP) -> None:
    tokens = obtain_tokens(real_idp, scopes=("openid", "offline_access", "email"))

    assert tokens["token_type"] == "Bearer"
    assert tokens["access_token"]
    assert tokens["refresh_token"]
    assert tokens["expires_in"] == 3600
    claims = decode_jwt_payload(tokens["id_token"])
    assert claims["sub"] == "alice"
    assert claims["email"] == "alice@example.test"
    assert claims["iss"] == real_idp.issuer
    assert claims["aud"] == real_idp.client_id
    counts = real_idp.counts()
    assert counts["token"] == {"authorization_code": {"ok": 1}}
    assert counts["authorization"] == 1


def test_callback_carries_code_state_and_iss(real_idp: IdP) -> None:
    _, challenge = make_pkce()
    url = authorization_url(
        real_idp,
        redirect_uri="http://localhost:4711/callback",
        code_challenge=challenge,
        state="s-123",
    )
    callback = http_browser_login(url, follow_callback=False)
    parts = urllib.parse.urlsplit(callback)
    query = dict(urllib.parse.parse_qsl(parts.query))
    assert (parts.hostname, parts.port, parts.path) == ("localhost", 4711, "/callback")
    assert query["state"] == "s-123"
    assert query["iss"] == real_idp.issuer
    assert query["code"]


def test_pkce_is_required(real_idp: IdP) -> None:
    url = f"{real_idp.authorization_endpoint}?" + urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": real_idp.client_id,
            "redirect_uri": "http://127.0.0.1:4711/callback",
            "scope": "openid",
            "state": "x",
        }
    )
    callback = http_browser_login(url, follow_callback=False)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
    assert query["error"] == "invalid_request"
    assert "PKCE" in query["error_description"]


def test_wrong_code_verifier_is_invalid_grant(real_idp: IdP) -> None:
    _, challenge = make_pkce()
    other_verifier, _ = make_pkce()
    redirect_uri = "http://127.0.0.1:4711/callback"
    url = authorization_url(real_idp, redirect_uri=redirect_uri, code_challenge=challenge,
                            state="s")
    callback = http_browser_login(url, follow_callback=False)
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))["code"]
    response = exchange_code(real_idp, code, redirect_uri=redirect_uri,
                             code_verifier=other_verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert real_idp.counts()["token"] == {"authorization_code": {"invalid_grant": 1}}


def test_cancel_gives_access_denied(real_idp: IdP) -> None:
    _, challenge = make_pkce()
    url = authorization_url(
        real_idp, redirect_uri="http://127.0.0.1:4711/callback", code_challenge=challenge, state="s"
    )
    for callback in (
        http_browser_deny(url, follow_callback=False),
        http_browser_login(url, consent=False, follow_callback=False),
    ):
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
        assert query["error"] == "access_denied"
        assert query["state"] == "s"
        assert "code" not in query


def test_refresh_rotates_and_reuse_is_invalid_grant(real_idp: IdP) -> None:
    tokens = obtain_tokens(real_idp)
    real_idp.reset_counts()

    first = refresh(real_idp, tokens["refresh_token"])
    assert first.status_code == 200
    assert first.json()["refresh_token"] != tokens["refresh_token"]
    assert first.json()["access_token"] != tokens["access_token"]

    reused = refresh(real_idp, tokens["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"

    counts = real_idp.counts()
    assert counts["token"] == {"refresh_token": {"ok": 1, "invalid_grant": 1}}
    assert refresh_count(counts) == 1
    assert refresh_count(counts, "invalid_grant") == 1
    assert real_idp.token_requests("refresh_token", None) == 2

    # oidc-provider's reuse detection revoked the whole grant: the new token is dead too
    assert refresh(real_idp, first.json()["refresh_token"]).json()["error"] == "invalid_grant"


def test_refresh_without_rotation_keeps_the_token(real_idp_factory) -> None:
    provider = real_idp_factory(rotate_refresh_token=False, access_token_ttl=120)
    tokens = obtain_tokens(provider)
    assert tokens["expires_in"] == 120
    for _ in range(2):
        response = refresh(provider, tokens["refresh_token"])
        assert response.status_code == 200
        assert (
            response.json().get("refresh_token", tokens["refresh_token"])
            == (tokens["refresh_token"])
        )
    assert provider.token_requests("refresh_token") == 2


def test_runtime_config_and_reset(real_idp: IdP) -> None:
    settings = real_idp.configure(rotate_refresh_token=False, access_token_ttl=7)
    assert settings["access_token_ttl"] == 7
    tokens = obtain_tokens(real_idp)
    assert tokens["expires_in"] == 7
    again = refresh(real_idp, tokens["refresh_token"]).json()
    assert again["refresh_token"] == tokens["refresh_token"]
    real_idp.reset()
    assert real_idp.config()["settings"]["rotate_refresh_token"] is True
    assert real_idp.counts()["token"] == {}


def test_revoke_all_kills_refresh_tokens(real_idp: IdP) -> None:
    tokens = obtain_tokens(real_idp)
    assert real_idp.revoke_all() >= 1
    response = refresh(real_idp, tokens["refresh_token"])
    assert response.json()["error"] == "invalid_grant"


def test_revocation_and_introspection(real_idp: IdP) -> None:
    tokens = obtain_tokens(real_idp)
    auth = (real_idp.api_client_id, real_idp.api_client_secret)
    active = httpx.post(
        real_idp.introspection_endpoint, data={"token": tokens["access_token"]}, auth=auth
    ).json()
    assert active["active"] is True
    assert active["sub"] == "alice"
    assert active["client_id"] == real_idp.client_id

    own = httpx.post(
        real_idp.introspection_endpoint,
        data={"token": tokens["access_token"], "client_id": real_idp.client_id},
    ).json()
    assert own["active"] is True

    revoked = httpx.post(
        real_idp.revocation_endpoint,
        data={"token": tokens["refresh_token"], "client_id": real_idp.client_id},
    )
    assert revoked.status_code == 200
    assert refresh(real_idp, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    counts = real_idp.counts()
    assert (counts["revocation"], counts["introspection"]) == (1, 2)


def test_status_fault_then_success(real_idp: IdP) -> None:
    tokens = obtain_tokens(real_idp)
    real_idp.reset_counts()
    real_idp.inject_fault("/token", status=503, headers={"Retry-After": "1"}, body="busy")
    assert len(real_idp.faults()) == 1

    failed = refresh(real_idp, tokens["refresh_token"])
    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "1"
    assert failed.text == "busy"

    ok = refresh(real_idp, tokens["refresh_token"])
    assert ok.status_code == 200
    counts = real_idp.counts()
    assert counts["token"] == {"refresh_token": {"fault": 1, "ok": 1}}
    assert counts["faults"] == {"/token": 1}
    assert real_idp.faults() == []


def test_json_fault_on_discovery_and_count(real_idp: IdP) -> None:
    real_idp.inject_fault(
        "/.well-known/openid-configuration", count=2, status=400, body={"error": "nope"}
    )
    for _ in range(2):
        response = httpx.get(real_idp.discovery_url)
        assert response.status_code == 400
        assert response.json() == {"error": "nope"}
    assert httpx.get(real_idp.discovery_url).json()["issuer"] == real_idp.issuer
    counts = real_idp.counts()
    assert counts["discovery"] == 1
    assert counts["faults"] == {"/.well-known/openid-configuration": 2}


def test_drop_fault_breaks_the_connection(real_idp: IdP) -> None:
    real_idp.inject_fault("/jwks", drop=True)
    with pytest.raises(httpx.TransportError):
        httpx.get(real_idp.jwks_uri)
    assert httpx.get(real_idp.jwks_uri).json()["keys"][0]["kty"] == "RSA"


def test_delay_fault_delays_then_serves(real_idp: IdP) -> None:
    real_idp.inject_fault("/jwks", delay_ms=600)
    started = time.monotonic()
    response = httpx.get(real_idp.jwks_uri)
    delayed = time.monotonic() - started
    started = time.monotonic()
    httpx.get(real_idp.jwks_uri)
    normal = time.monotonic() - started
    assert response.status_code == 200
    assert delayed >= 0.6
    assert normal < delayed - 0.3
    assert real_idp.counts()["jwks"] == 2


def test_faults_clear_and_admin_not_counted(real_idp: IdP) -> None:
    real_idp.inject_fault("/token", count=5, status=500)
    real_idp.clear_faults()
    assert real_idp.faults() == []
    for _ in range(3):
        real_idp.counts()
    counts = real_idp.counts()
    assert counts["token"] == {}
    assert counts["faults"] == {}


def test_resource_indicator_gives_a_jwt_for_the_resource(real_idp: IdP) -> None:
    tokens = obtain_tokens(real_idp, resource=RESOURCE)
    payload = decode_jwt_payload(tokens["access_token"])
    assert payload["aud"] == RESOURCE
    assert payload["iss"] == real_idp.issuer
    assert payload["sub"] == "alice"
    assert payload["client_id"] == real_idp.client_id
    assert tokens["refresh_token"]

    for resource in (RESOURCE, None):  # explicit, then the granted one by default
        refreshed = refresh(real_idp, tokens["refresh_token"], resource=resource)
        assert refreshed.status_code == 200, refreshed.text
        body = refreshed.json()
        assert decode_jwt_payload(body["access_token"])["aud"] == RESOURCE
        tokens = body


def test_resource_in_authorization_only_still_gives_a_jwt(real_idp: IdP) -> None:
    tokens = obtain_tokens(real_idp, resource=RESOURCE, token_resource=False)
    assert decode_jwt_payload(tokens["access_token"])["aud"] == RESOURCE


def test_unrequested_resource_is_invalid_target(real_idp: IdP) -> None:
    tokens = obtain_tokens(real_idp)
    response = refresh(real_idp, tokens["refresh_token"], resource=RESOURCE)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


def test_audience_param_is_treated_as_resource(real_idp_factory) -> None:
    provider = real_idp_factory(audience_param=True)
    verifier, challenge = make_pkce()
    redirect_uri = "http://127.0.0.1:4711/callback"
    url = authorization_url(
        provider,
        redirect_uri=redirect_uri,
        code_challenge=challenge,
        state="s",
        extra={"audience": RESOURCE},
    )
    callback = http_browser_login(url, follow_callback=False)
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))["code"]
    tokens = exchange_code(provider, code, redirect_uri=redirect_uri, code_verifier=verifier)
    assert decode_jwt_payload(tokens.json()["access_token"])["aud"] == RESOURCE


def test_device_flow_approve(real_idp: IdP) -> None:
    started = device_authorization(real_idp)
    assert started["interval"] == 1
    assert started["verification_uri"] == f"{real_idp.issuer}/device"
    assert started["user_code"] in urllib.parse.unquote(started["verification_uri_complete"])

    pending = token_request(
        real_idp, {"grant_type": DEVICE_GRANT, "device_code": started["device_code"]}
    )
    assert pending.status_code == 400
    assert pending.json()["error"] == "authorization_pending"
    http_device_approve(started["verification_uri"], started["user_code"], login="bob")
    tokens = poll_device_token(real_idp, started["device_code"])
    assert tokens["refresh_token"]
    assert decode_jwt_payload(tokens["id_token"])["sub"] == "bob"
    counts = real_idp.counts()
    assert counts["device_authorization"] == 1
    assert counts["token"][DEVICE_GRANT] == {"authorization_pending": 1, "ok": 1}


def test_device_flow_complete_uri_and_deny(real_idp: IdP) -> None:
    started = device_authorization(real_idp)
    http_device_approve(started["verification_uri_complete"])
    assert poll_device_token(real_idp, started["device_code"])["access_token"]

    denied = device_login(real_idp, deny=True)
    assert denied["error"] == "access_denied"


def test_device_flow_with_resource(real_idp: IdP) -> None:
    tokens = device_login(real_idp, resource=RESOURCE)
    assert decode_jwt_payload(tokens["access_token"])["aud"] == RESOURCE


def test_extra_client_and_settings(real_idp_factory) -> None:
    provider = real_idp_factory(
        client_id="other-client",
        extra_clients=[
            {
                "client_id": "second",
                "token_endpoint_auth_method": "none",
                "application_type": "native",
                "redirect_uris": ["http://127.0.0.1/callback"],
                "grant_types": ["authorization_code", "refresh_token"],
            }
        ],
    )
    assert provider.client_id == "other-client"
    assert obtain_tokens(provider)["refresh_token"]
    assert obtain_tokens(provider, client_id="second")["refresh_token"]
    assert set(provider.config()["clients"]) == {"other-client", "api", "machine", "second"}


def test_bad_settings_fail_fast_with_stderr() -> None:
    with pytest.raises(RuntimeError, match="access_token_ttl must be a positive whole number"):
        start_idp(access_token_ttl=1.5)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(0); ask /proc
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_provider_exits_when_stdin_closes() -> None:
    provider = start_idp()
    try:
        pid = provider.pid
        assert provider.alive()
        assert provider.process.stdin is not None
        provider.process.stdin.close()  # what the OS does when the test process dies
        provider.process.wait(timeout=5)
        assert _gone(pid)
        assert provider.process.returncode == 0
    finally:
        provider.stop()


def test_provider_exits_when_the_test_process_is_killed() -> None:
    code = (
        "import time; from tests.support.idp import start_idp; "
        "p = start_idp(); print(p.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert parent.stdout is not None
        node_pid = int(parent.stdout.readline())
        assert not _gone(node_pid)
        parent.kill()
        parent.wait(timeout=5)
        deadline = time.monotonic() + 5
        while not _gone(node_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(node_pid)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def test_provider_exits_on_sigterm() -> None:
    provider = start_idp()
    try:
        provider.process.terminate()
        assert provider.process.wait(timeout=5) == 0
    finally:
        provider.stop()


def test_stop_is_idempotent_and_fast() -> None:
    provider = start_idp()
    started = time.monotonic()
    provider.stop()
    provider.stop()
    assert time.monotonic() - started < 2
    assert not provider.alive()
    with pytest.raises(httpx.TransportError):
        httpx.get(provider.discovery_url, timeout=1)
