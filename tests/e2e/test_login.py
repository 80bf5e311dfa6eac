"""The interactive login end to end against the real provider (oidc-provider).

The browser is played by the bench: at HTTP level (`http_browser_login`) and by headless
Chromium (`chromium_login`), each started in a thread by the `open_browser` callable, since
it must run while the login's callback server waits. The provider's counts prove that the
code is exchanged exactly once.
"""

from __future__ import annotations

import io
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from oauth_auth._discovery import ProviderMetadata, clear_discovery_cache, discover
from oauth_auth._http import IdPHttp
from oauth_auth._idtoken import clear_jwks_cache
from oauth_auth._login import interactive_login
from oauth_auth._params import OIDCParams
from oauth_auth._token import Token
from oauth_auth.errors import LoginError
from tests.support.browser import Background, http_browser_deny, http_browser_login
from tests.support.idp import IdP, decode_jwt_payload, http_device_approve
from tests.support.servers import free_port

pytestmark = pytest.mark.idp



@pytest.fixture
def http() -> Iterator[IdPHttp]:
    client = IdPHttp()
    yield client
    client.close()


@pytest.fixture
def metadata(real_idp: IdP, http: IdPHttp) -> ProviderMetadata:
    clear_discovery_cache()
    clear_jwks_cache()
    return discover(real_idp.issuer, http)


def params(idp: IdP, **kw: Any) -> OIDCParams:
    kw.setdefault("scopes", ["email"])
    return OIDCParams(issuer=idp.issuer, client_id=idp.client_id, callback_port=free_port(), **kw)


def login(idp: IdP, metadata: ProviderMetadata, http: IdPHttp, opener: Callable[[str], object],
          *, oidc: OIDCParams | None = None, **kw: Any) -> Token:
    kw.setdefault("timeout", 60)
    try:
        return interactive_login(oidc=oidc or params(idp), metadata=metadata, http=http,
                                 open_browser=opener, stderr=io.StringIO(), **kw)
    except LoginError:
        # If the browser side failed, its error says why; show it rather than the timeout.
        failure = opener.failure() if isinstance(opener, Background) else None
        if failure is not None:
            raise failure from None
        raise


def assert_tokens(idp: IdP, tokens: Token, login_name: str = "alice") -> None:
    assert tokens.access_token
    assert tokens.refresh_token
    assert tokens.expiry is not None
    assert tokens.id_token is not None
    claims = decode_jwt_payload(tokens.id_token)
    assert claims["sub"] == login_name
    assert claims["aud"] == idp.client_id
    assert "offline_access" in (tokens.scope or "").split()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_browser_login_with_the_http_browser(real_idp: IdP, metadata: ProviderMetadata,
                                             http: IdPHttp, host: str) -> None:
    browser = Background(http_browser_login, login="bob")
    started = time.perf_counter()
    tokens = login(real_idp, metadata, http, browser, callback_host=host)
    elapsed = time.perf_counter() - started
    callback = browser.wait()
    print(f"\nfull browser login (HTTP helper, {host}): {elapsed * 1000:.0f} ms")

    assert_tokens(real_idp, tokens, "bob")
    (url,) = browser.urls
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert q["redirect_uri"].startswith(f"http://{host}:")
    assert q["prompt"] == "consent"
    assert q["scope"] == "email openid offline_access"
    assert q["code_challenge_method"] == "S256"
    # The callback carried RFC 9207's iss, and the provider saw exactly one code exchange.
    assert dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))["iss"] == (
        real_idp.issuer
    )
    assert real_idp.counts()["token"] == {"authorization_code": {"ok": 1}}


def test_browser_login_with_chromium(real_idp: IdP, metadata: ProviderMetadata, http: IdPHttp,
                                     chromium: Callable[..., str]) -> None:
    # Chromium starts slowly on a loaded 2-core machine: give it room.
    browser = Background(chromium, login="carol", timeout=90)
    started = time.perf_counter()
    # "localhost": Chromium picks 127.0.0.1 or ::1 by itself; the server listens on both.
    tokens = login(real_idp, metadata, http, browser, callback_host="localhost", timeout=120)
    elapsed = time.perf_counter() - started
    final_url = browser.wait()
    print(f"\nfull browser login (headless Chromium): {elapsed * 1000:.0f} ms")

    assert_tokens(real_idp, tokens, "carol")
    assert final_url.startswith("http://localhost:")
    assert real_idp.counts()["token"] == {"authorization_code": {"ok": 1}}


def test_browser_login_with_audience(real_idp: IdP, metadata: ProviderMetadata,
                                     http: IdPHttp) -> None:
    audience = "https://api.example.test"
    browser = Background(http_browser_login)
    tokens = login(real_idp, metadata, http, browser, oidc=params(real_idp, audience=audience))
    browser.wait()
    assert decode_jwt_payload(tokens.access_token)["aud"] == audience
    assert real_idp.counts()["token"] == {"authorization_code": {"ok": 1}}


def test_browser_cancel_is_access_denied(real_idp: IdP, metadata: ProviderMetadata,
                                         http: IdPHttp) -> None:
    browser = Background(http_browser_deny)
    with pytest.raises(LoginError) as info:
        login(real_idp, metadata, http, browser)
    browser.wait()
    assert info.value.error == "access_denied"
    assert real_idp.counts()["token"] == {}


def test_skip_browser_prints_the_url(real_idp: IdP, metadata: ProviderMetadata,
                                     http: IdPHttp) -> None:
    # skip_browser: nothing is opened; the user copies the printed URL into a browser.
    oidc = params(real_idp)
    browser = Background(http_browser_login)

    class Watcher(io.StringIO):
        def write(self, text: str) -> int:
            for word in text.split():
                if word.startswith(real_idp.authorization_endpoint):
                    browser(word)
            return super().write(text)

    err = Watcher()
    tokens = interactive_login(oidc=oidc, metadata=metadata, http=http, skip_browser=True,
                               stderr=err, timeout=60)
    browser.wait()
    assert "open this URL" in err.getvalue()
    assert tokens.access_token


def test_login_timeout_releases_the_port(real_idp: IdP, metadata: ProviderMetadata,
                                         http: IdPHttp) -> None:
    oidc = params(real_idp)
    with pytest.raises(LoginError, match="timed out"):
        interactive_login(oidc=oidc, metadata=metadata, http=http, open_browser=lambda u: True,
                          stderr=io.StringIO(), timeout=0.3)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", oidc.port))


# --- device grant -------------------------------------------------------------------------------


class ScaledSleep:
    """Real sleeps, ten times shorter, recording what the driver asked for."""

    def __init__(self) -> None:
        self.requested: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.requested.append(seconds)
        time.sleep(seconds / 10)


def test_device_login_approved(real_idp: IdP, metadata: ProviderMetadata, http: IdPHttp) -> None:
    approver = Background(http_device_approve, login="dave")
    sleep = ScaledSleep()
    started = time.perf_counter()
    tokens = login(real_idp, metadata, http, approver, method="device", sleep=sleep)
    elapsed = time.perf_counter() - started
    approver.wait()
    print(f"\nfull device login (HTTP helper): {elapsed * 1000:.0f} ms")
    assert_tokens(real_idp, tokens, "dave")
    (url,) = approver.urls
    assert "user_code=" in url  # the complete verification URI was offered
    counts = real_idp.counts()["token"]
    assert counts["urn:ietf:params:oauth:grant-type:device_code"]["ok"] == 1
    assert "authorization_code" not in counts
    assert set(sleep.requested) == {1}  # the provider's interval


def test_device_login_denied(real_idp: IdP, metadata: ProviderMetadata, http: IdPHttp) -> None:
    approver = Background(http_device_approve, deny=True)
    with pytest.raises(LoginError) as info:
        login(real_idp, metadata, http, approver, method="device", sleep=ScaledSleep())
    approver.wait()
    assert info.value.error == "access_denied"


def test_device_login_slow_down(real_idp: IdP, metadata: ProviderMetadata, http: IdPHttp) -> None:
    real_idp.inject_fault("/token", status=400, body={"error": "slow_down"}, count=1)
    approver = Background(http_device_approve)
    sleep = ScaledSleep()
    tokens = login(real_idp, metadata, http, approver, method="device", sleep=sleep)
    approver.wait()
    assert tokens.access_token
    assert sleep.requested[0] == 1
    assert all(s == 6 for s in sleep.requested[1:])  # +5 s for good after slow_down


def test_device_code_expiry(real_idp: IdP, metadata: ProviderMetadata, http: IdPHttp) -> None:
    real_idp.configure(device_code_ttl=2)
    with pytest.raises(LoginError) as info:
        login(real_idp, metadata, http, lambda url: True, method="device", sleep=time.sleep)
    # Either the provider said expired_token, or our cap at expires_in fired first.
    assert info.value.error in ("expired_token", "timeout")
