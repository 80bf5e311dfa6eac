"""Provider calls go through the environment's proxy, as httpx's `trust_env` reads it:
the real oidc-provider and a real forward proxy, both on 127.0.0.1 (tests/support/proxy.py).

NO_PROXY and no_proxy are cleared first: a CI environment often lists 127.0.0.1 and
localhost there, which would make the proxy bypassed and the test pass vacuously.
"""

from __future__ import annotations

import pytest

from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCParams
from tests.support.idp import IdP, obtain_tokens
from tests.support.proxy import ForwardProxy

pytestmark = pytest.mark.idp

KEY = "PROXY_E2E"


def _session(idp: IdP) -> tuple[OAuthTokenSource, MemorySecrets]:
    tokens = obtain_tokens(idp)
    store = MemorySecrets()
    store.set_secret(KEY, tokens["refresh_token"])
    source = OAuthTokenSource(OIDCParams(idp.issuer, idp.client_id), key_provider=lambda: KEY,
                              secrets_provider=store)
    return source, store


def proxied_env(monkeypatch: pytest.MonkeyPatch, forward_proxy: ForwardProxy) -> ForwardProxy:
    """Point HTTP_PROXY at the proxy (after the bench seeded the session without it)."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy",
                 "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    return forward_proxy


def test_refresh_goes_through_http_proxy(real_idp: IdP, forward_proxy: ForwardProxy,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    source, store = _session(real_idp)
    proxied_env(monkeypatch, forward_proxy)
    try:
        assert source.token()
    finally:
        source.close()
    seen = forward_proxy.seen
    assert ("GET", f"{real_idp.issuer}/.well-known/openid-configuration") in seen
    assert [s for s in seen if s == ("POST", f"{real_idp.issuer}/token")] == [
        ("POST", f"{real_idp.issuer}/token")]
    assert real_idp.token_requests("refresh_token") == 1
    assert store.get_secret(KEY)


def test_no_proxy_bypasses_it(real_idp: IdP, forward_proxy: ForwardProxy,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    source, _ = _session(real_idp)
    proxied_env(monkeypatch, forward_proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        assert source.token()
    finally:
        source.close()
    assert forward_proxy.seen == []
    assert real_idp.token_requests("refresh_token") == 1
