"""The DOT bench itself (tests/dot, tests/support/dot.py): what the e2e tests rely on.

Each test here checks one thing the library's tests take for granted about the server:
the metadata gaps issue 13 describes, the counts, the faults, the run-time settings, the
pages the HTTP-level user goes through, and its clients (client credentials included).
"""

from __future__ import annotations

import httpx
import pytest

from tests.support.dot import DEVICE_GRANT, DOT, bench_login, dot_device_approve


def test_it_is_dot_3_4_1_with_oauthlib_below_4_and_starts_fast(dot: DOT) -> None:
    assert dot.versions["django-oauth-toolkit"] == "3.4.1"
    assert int(dot.versions["oauthlib"].split(".")[0]) < 4
    print(f"\nDOT start: {dot.start_seconds:.2f} s as seen by the tests; in the server:"
          f" {dot.timings}")
    assert dot.issuer.startswith("http://127.0.0.1:")
    assert dot.issuer.endswith("/o")


def test_its_metadata_has_the_gaps_issue_13_describes(dot: DOT) -> None:
    openid = dot.metadata("openid")
    oauth = dot.metadata("oauth")
    assert openid["issuer"] == oauth["issuer"] == dot.issuer
    # The revocation endpoint is only in the RFC 8414 document...
    assert "revocation_endpoint" not in openid
    assert oauth["revocation_endpoint"] == dot.revocation_endpoint
    # ...the device authorization endpoint is in neither, though the grant is served.
    assert "device_authorization_endpoint" not in openid
    assert "device_authorization_endpoint" not in oauth
    assert DEVICE_GRANT in oauth["grant_types_supported"]
    assert "offline_access" in openid["scopes_supported"]
    # RFC 8414's path-inserted form is not served (DOT is mounted under /o/ only).
    inserted = f"{dot.origin}/.well-known/oauth-authorization-server/o"
    assert httpx.get(inserted, timeout=10).status_code == 404


def test_run_time_settings_change_the_metadata_and_reset_restores_them(dot: DOT) -> None:
    dot.configure(offline_access=False, oidc=False)
    assert httpx.get(dot.discovery_url, timeout=10).status_code == 404
    oauth = dot.metadata("oauth")
    assert "offline_access" not in oauth["scopes_supported"]
    assert "openid" not in oauth["scopes_supported"]
    assert "jwks_uri" not in oauth
    dot.reset()
    assert "offline_access" in dot.metadata("openid")["scopes_supported"]


def test_counts_see_rotation_and_reuse(dot: DOT) -> None:
    tokens = bench_login(dot)
    assert dot.counts()["token"] == {"authorization_code": {"ok": 1}}
    assert dot.refresh(tokens["refresh_token"]).status_code == 200
    assert dot.refresh(tokens["refresh_token"]).status_code == 400  # rotated, no grace
    assert dot.counts()["token"]["refresh_token"] == {"ok": 1, "invalid_grant": 1}
    assert dot.client_auth()["token:none"] == 3


def test_a_fault_answers_instead_of_dot_and_is_counted(dot: DOT) -> None:
    tokens = bench_login(dot)
    dot.reset_counts()
    dot.inject_fault("/o/token/", count=1, status=503, grant_type="refresh_token")
    assert dot.refresh(tokens["refresh_token"]).status_code == 503
    assert dot.refresh(tokens["refresh_token"]).status_code == 200  # the fault is spent
    counts = dot.counts()
    assert counts["token"]["refresh_token"] == {"fault": 1, "ok": 1}
    assert counts["faults"] == {"/o/token/": 1}


def test_the_token_endpoint_holds_clients_to_the_advertised_auth_methods(dot: DOT) -> None:
    dot.configure(auth_methods=["client_secret_post"])
    assert dot.metadata("openid")["token_endpoint_auth_methods_supported"] == [
        "client_secret_post"]
    data = {"grant_type": "client_credentials", "scope": "read"}
    basic = httpx.post(dot.token_endpoint, data=data, timeout=10,
                       auth=(dot.service_client_id, dot.service_client_secret))
    assert (basic.status_code, basic.json()["error"]) == (401, "invalid_client")
    post = httpx.post(dot.token_endpoint, timeout=10,
                      data={**data, "client_id": dot.service_client_id,
                            "client_secret": dot.service_client_secret})
    assert post.status_code == 200, post.text


def test_the_client_credentials_client_gets_a_token(dot: DOT) -> None:
    response = httpx.post(dot.token_endpoint, data={"grant_type": "client_credentials",
                                                    "scope": "read"},
                          auth=(dot.service_client_id, dot.service_client_secret), timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "refresh_token" not in body
    assert dot.introspect(body["access_token"])["client_id"] == dot.service_client_id
    wrong = httpx.post(dot.token_endpoint, data={"grant_type": "client_credentials"},
                       auth=(dot.service_client_id, "not-the-secret"), timeout=10)
    assert wrong.json()["error"] == "invalid_client"


@pytest.mark.parametrize("deny", [False, True])
def test_the_device_pages_approve_or_deny(dot: DOT, deny: bool) -> None:
    started = httpx.post(dot.device_authorization_endpoint,
                         data={"client_id": dot.device_client_id, "scope": "openid"},
                         timeout=10).json()
    assert started["verification_uri_complete"].endswith(f"?user_code={started['user_code']}")
    page = dot_device_approve(started["verification_uri_complete"], deny=deny)
    assert ("Denied" if deny else "Authorized") in page
    poll = httpx.post(dot.token_endpoint, data={"grant_type": DEVICE_GRANT,
                                                "device_code": started["device_code"],
                                                "client_id": dot.device_client_id},
                      timeout=10)
    if deny:
        assert poll.json()["error"] == "access_denied"
    else:
        assert poll.status_code == 200, poll.text
        assert "refresh_token" in poll.json()
        assert "id_token" not in poll.json()  # DOT's device grant issues none


def test_a_second_server_has_its_own_settings(dot_factory: object) -> None:
    assert callable(dot_factory)
    other: DOT = dot_factory(root_metadata=True, access_token_ttl=60)
    inserted = f"{other.origin}/.well-known/oauth-authorization-server/o"
    response = httpx.get(inserted, timeout=10)
    assert response.status_code == 200
    assert response.json()["issuer"] == other.issuer
    assert bench_login(other)["expires_in"] == 60
    assert other.counts()["oauth_metadata_inserted"] == {"ok": 1}


def test_the_hs256_client_gets_id_tokens_signed_with_its_secret(dot: DOT) -> None:
    import base64
    import hashlib
    import hmac
    import json

    tokens = bench_login(dot, client_id=dot.hs256_client_id,
                         client_secret=dot.hs256_client_secret)
    header, payload, signature = tokens["id_token"].split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "=="))["alg"] == "HS256"
    expected = hmac.new(dot.hs256_client_secret.encode(), f"{header}.{payload}".encode(),
                        hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(expected).rstrip(b"=").decode() == signature
