"""Every cloud provider's documented quirk, reproduced on the bundled oidc-provider (a mode
of tests/idp/server.mjs that cites the documentation it follows), and the library passing
through that provider's preset: login (the user played at HTTP level), refresh, and where
the provider has them, the device grant and revocation. Each mode also shows the quirk
biting the generic rules, so a mode that stopped reproducing it would fail here.
"""

from __future__ import annotations

import io
import urllib.parse
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from oauth_auth import (
    ConfigError,
    InvalidGrantError,
    LoginError,
    MemorySecrets,
    OAuthTokenSource,
    OIDCParams,
    TransportError,
)
from oauth_auth._discovery import clear_discovery_cache
from oauth_auth._idtoken import clear_jwks_cache
from oauth_auth._keys import AT_SUFFIX
from tests.support.browser import Background, BrowserFlowError, http_browser_login
from tests.support.idp import IdP, decode_jwt_payload, http_device_approve, refresh
from tests.support.servers import free_port

pytestmark = pytest.mark.idp

SECRET = "bench-client-secret-0123456789abcdef"
KEY = "PROVIDERS_E2E"
API = "https://api.example.test"



@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    clear_discovery_cache()
    clear_jwks_cache()


def source(oidc: OIDCParams, store: MemorySecrets, opener: Callable[[str], object] | None,
           **kw: Any) -> OAuthTokenSource:
    kw.setdefault("login_timeout", 30)
    return OAuthTokenSource(
        oidc, key_provider=lambda: KEY, secrets_provider=store, interactive=opener is not None,
        open_browser=opener, stderr=io.StringIO(), **kw,
    )


def login(oidc: OIDCParams, store: MemorySecrets, opener: Background | None = None,
          **kw: Any) -> str:
    """An interactive login through the HTTP-level browser; returns the access token."""
    opener = opener or Background(http_browser_login)
    try:
        return source(oidc, store, opener, **kw).token()
    except LoginError:
        failure = opener.failure()
        if failure is not None and not isinstance(failure, AssertionError):
            raise failure from None
        raise


def refresh_once(idp: IdP, oidc: OIDCParams, store: MemorySecrets) -> str:
    """A new process's refresh from the stored session (tier 3), counted at the provider."""
    store.delete_secret(KEY + AT_SUFFIX)
    before = idp.token_requests("refresh_token")
    clear_discovery_cache()  # as a new process would
    token = source(oidc, store, None).token()
    assert idp.token_requests("refresh_token") == before + 1
    return token


def params(issuer: str, idp: IdP, **kw: Any) -> OIDCParams:
    return OIDCParams(issuer, idp.client_id, callback_port=free_port(), **kw)


def test_google(real_idp_factory: Callable[..., IdP]) -> None:
    idp = real_idp_factory(mode="google", client_secret=SECRET)
    # the generic rules ask for offline_access: invalid_scope, as Google answers
    with pytest.raises(LoginError, match="invalid_scope"):
        login(params(idp.issuer, idp, preset="generic", client_secret=SECRET), MemorySecrets())
    # a desktop client without its secret: the code exchange is refused
    with pytest.raises(LoginError, match="invalid_client"):
        login(params(idp.issuer, idp, preset="google"), MemorySecrets())

    oidc = params(idp.issuer, idp, preset="google", client_secret=SECRET)
    store = MemorySecrets()
    assert login(oidc, store)
    assert store.get_secret(KEY), "access_type=offline brought a refresh token"
    assert idp.token_requests("authorization_code") == 1  # the good login's one exchange
    assert refresh_once(idp, oidc, store)


def test_entra_multi_tenant(real_idp_factory: Callable[..., IdP]) -> None:
    idp = real_idp_factory(mode="entra")
    issuer = f"{idp.base_url}/common/v2.0"
    # the exact issuer check refuses the {tenantid} document without the preset
    with pytest.raises(ConfigError, match="tenantid"):
        login(params(issuer, idp, preset="generic"), MemorySecrets())
    # `resource` is AADSTS901002
    with pytest.raises(LoginError, match="AADSTS901002"):
        login(params(issuer, idp, preset="entra", audience=API, audience_param="resource"),
              MemorySecrets())

    # prompt=consent, in a tenant that restricts user consent: "Need admin approval", and
    # the browser never comes back (the login can only time out)
    stuck = Background(http_browser_login)
    with pytest.raises(LoginError, match="timed out"):
        login(params(issuer, idp, preset="entra", prompt="consent"), MemorySecrets(), stuck,
              login_timeout=2)
    assert isinstance(stuck.failure(), BrowserFlowError)
    assert "Need admin approval" in str(stuck.failure())

    oidc = params(issuer, idp, preset="entra", audience=API)
    assert oidc.prompt == ""  # the preset's: no prompt, a refresh token all the same
    store = MemorySecrets()
    opener = Background(http_browser_login)
    assert login(oidc, store, opener)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(opener.urls[0]).query))
    assert "prompt" not in query
    assert "offline_access" in query["scope"].split()
    assert "resource" not in query  # audience_param="" (v2 takes API scopes)
    assert store.get_secret(KEY)
    # the stored session works in a new process (discovery and the issuer rule again)
    assert refresh_once(idp, oidc, store)


def test_auth0_audience(real_idp_factory: Callable[..., IdP]) -> None:
    idp = real_idp_factory(mode="auth0")
    # `resource` is ignored: the user silently gets an opaque token
    generic = login(params(idp.issuer, idp, preset="generic", audience=API), MemorySecrets())
    assert generic.count(".") != 2

    oidc = params(idp.issuer, idp, preset="auth0", audience=API)
    store = MemorySecrets()
    token = login(oidc, store)
    assert decode_jwt_payload(token)["aud"] == API
    assert decode_jwt_payload(refresh_once(idp, oidc, store))["aud"] == API
    # the device grant carries `audience` too
    opener = Background(http_device_approve)
    device = source(oidc, MemorySecrets(), opener, login_method="device").token()
    assert decode_jwt_payload(device)["aud"] == API


@pytest.mark.parametrize("mode", ["cognito", "gitlab"])
def test_cognito_and_gitlab_refuse_offline_access(real_idp_factory: Callable[..., IdP],
                                                  mode: str) -> None:
    idp = real_idp_factory(mode=mode)
    with pytest.raises(LoginError, match="invalid_scope"):
        login(params(idp.issuer, idp, preset=mode, offline_access=True), MemorySecrets())

    oidc = params(idp.issuer, idp, preset=mode)
    store = MemorySecrets()
    assert login(oidc, store)
    assert store.get_secret(KEY), "a refresh token without offline_access"
    assert refresh_once(idp, oidc, store)

    result = source(oidc, store, None).logout_result()
    if mode == "cognito":
        # no revocation endpoint in its discovery, and no RFC 8414 document
        assert not result.revoked
        assert result.revocation_error == "the provider advertises no revocation endpoint"
        assert idp.counts()["revocation"] == 0
        # given by hand, it is used
        store2 = MemorySecrets()
        oidc2 = params(idp.issuer, idp, preset=mode,
                       endpoints={"revocation_endpoint": idp.revocation_endpoint})
        login(oidc2, store2)
        assert source(oidc2, store2, None).logout_result().revoked
        assert idp.counts()["revocation"] == 1
    else:
        assert result.revoked
    assert store.get_secret(KEY) is None


def test_github(real_idp_factory: Callable[..., IdP]) -> None:
    idp = real_idp_factory(mode="github", client_secret=SECRET, scopes=["read:user"])
    issuer = idp.base_url
    # no discovery: the generic rules find no metadata
    with pytest.raises(Exception, match="404"):
        login(params(issuer, idp, preset="generic", client_secret=SECRET), MemorySecrets())
    assert idp.counts()["discovery"] == 0

    # a wrong client secret: GitHub's incorrect_client_credentials, with HTTP 200
    with pytest.raises(LoginError) as refused:
        login(params(issuer, idp, preset="github", client_secret="not-" + SECRET,
                     scopes=["read:user"]), MemorySecrets())
    assert refused.value.error == "invalid_client"
    assert "incorrect_client_credentials" in str(refused.value)
    assert idp.counts()["token"] == {"authorization_code": {"incorrect_client_credentials": 1}}

    oidc = params(issuer, idp, preset="github", client_secret=SECRET, scopes=["read:user"])
    store = MemorySecrets()
    assert login(oidc, store)  # OAuth only: no openid asked, no ID token required
    assert store.get_secret(KEY)
    assert refresh_once(idp, oidc, store)

    # a dead refresh token is GitHub's bad_refresh_token with HTTP 200: InvalidGrantError,
    # and the dead token is deleted
    idp.revoke_all()
    store.delete_secret(KEY + AT_SUFFIX)
    clear_discovery_cache()
    with pytest.raises(InvalidGrantError) as info:
        source(oidc, store, None).token()
    assert info.value.status_code == 200
    assert "bad_refresh_token" in str(info.value)
    assert idp.counts()["token"]["refresh_token"]["bad_refresh_token"] == 1
    assert store.get_secret(KEY) is None

    # the device grant through the preset's endpoints, the secret in the form; a poll
    # answered authorization_pending with HTTP 200 is a wait, not a token
    idp.reset_counts()
    idp.inject_fault("/login/oauth/access_token", status=200, count=1, method="POST",
                     body={"error": "authorization_pending"})
    device_store = MemorySecrets()
    opener = Background(http_device_approve)
    assert source(oidc, device_store, opener, login_method="device").token()
    assert device_store.get_secret(KEY)
    counts = idp.counts()
    assert counts["device_authorization"] == 1
    assert counts["faults"] == {"/login/oauth/access_token": 1}
    polls = counts["token"]["urn:ietf:params:oauth:grant-type:device_code"]
    assert polls["ok"] == 1
    assert set(polls) <= {"ok", "authorization_pending"}


def test_b2c_numeric_string_expires_in_at_login(real_idp_factory: Callable[..., IdP]) -> None:
    """Azure AD B2C and Entra v1 send "expires_in": "3600": taken at login, as on refresh."""
    idp = real_idp_factory(mode="b2c", access_token_ttl=1200)
    oidc = params(idp.issuer, idp)
    store = MemorySecrets()
    began = datetime.now(timezone.utc)
    token = login(oidc, store)
    shared = store.get_secret(KEY + AT_SUFFIX) or ""
    assert shared.startswith(f"{token}|")
    expiry = datetime.fromisoformat(shared.split("|", 1)[1].replace("Z", "+00:00"))
    assert timedelta(seconds=1190) <= expiry - began <= timedelta(seconds=1210)
    assert idp.token_requests("authorization_code") == 1
    assert refresh_once(idp, oidc, store)
    # what the mode sends: a string, as B2C does
    raw = refresh(idp, store.get_secret(KEY) or "").json()
    assert raw["expires_in"] == "1200"


def test_hs256_id_tokens_are_checked_with_the_client_secret(
        real_idp_factory: Callable[..., IdP]) -> None:
    """authentik and Auth0 (HS256 apps) sign ID tokens with the client secret: checked
    with it, the JWKS not even fetched for it."""
    idp = real_idp_factory(mode="hs256", client_secret=SECRET)
    assert "HS256" in idp.metadata["id_token_signing_alg_values_supported"]
    oidc = params(idp.issuer, idp, client_secret=SECRET)
    store = MemorySecrets()
    assert login(oidc, store)
    assert store.get_secret(KEY)
    counts = idp.counts()
    assert counts["token"] == {"authorization_code": {"ok": 1}}
    assert counts["jwks"] == 0


def test_an_hs256_id_token_keyed_with_the_public_key_is_refused(
        real_idp_factory: Callable[..., IdP]) -> None:
    """The control (RFC 8725 section 2.1): HS256 with the provider's public key as the
    HMAC secret is a forgery anyone can make; the login fails and stores nothing."""
    idp = real_idp_factory(mode="hs256_forged", client_secret=SECRET)
    store = MemorySecrets()
    with pytest.raises(LoginError, match="does not verify with the client secret"):
        login(params(idp.issuer, idp, client_secret=SECRET), store)
    assert store.get_secret(KEY) is None
    assert idp.token_requests("authorization_code") == 1


def test_rfc8414_only_server(real_idp_factory: Callable[..., IdP]) -> None:
    idp = real_idp_factory(mode="rfc8414")
    assert idp.issuer == f"{idp.base_url}/tenant1"
    oidc = params(idp.issuer, idp)
    store = MemorySecrets()
    assert login(oidc, store)  # metadata at /.well-known/oauth-authorization-server/tenant1
    assert store.get_secret(KEY)
    assert idp.token_requests("authorization_code") == 1
    assert refresh_once(idp, oidc, store)
    assert source(oidc, store, None).logout_result().revoked


def test_an_authorization_code_is_posted_once_even_after_a_500(real_idp: IdP) -> None:
    # RFC 6749 section 4.1.2: the code is single-use; the server may have spent it.
    real_idp.inject_fault("/token", status=500, count=3, method="POST")
    with pytest.raises(TransportError, match="500"):
        login(params(real_idp.issuer, real_idp), MemorySecrets())
    assert real_idp.counts()["token"] == {"authorization_code": {"fault": 1}}
    assert len(real_idp.faults()) == 1  # two of the three faults never used
