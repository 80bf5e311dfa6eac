"""Unit tests of the login driver against a small hostile stub provider.

The token endpoint and JWKS are an httpx.MockTransport; a thread plays the browser by reading
the authorization URL and calling the loopback callback directly. This is where the provider
misbehaves in ways the real one cannot be made to: a wrong nonce, audience or signature.
"""

from __future__ import annotations

import base64
import hashlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from oauth_auth._discovery import ProviderMetadata
from oauth_auth._http import IdPHttp
from oauth_auth._idtoken import clear_jwks_cache
from oauth_auth._login import browser_unavailable_reason, choose_method, interactive_login
from oauth_auth._params import OIDCParams
from oauth_auth._token import Token
from oauth_auth.errors import ConfigError, LoginError, TransportError
from tests.support.servers import free_port

ISSUER = "https://idp.example.com"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
ROGUE = RSAKey.generate_key(2048, parameters={"kid": "k1"})
META = ProviderMetadata(
    issuer=ISSUER,
    token_endpoint=f"{ISSUER}/token",
    authorization_endpoint=f"{ISSUER}/auth",
    jwks_uri=f"{ISSUER}/jwks",
    device_authorization_endpoint=f"{ISSUER}/device",
    iss_parameter_supported=True,
    id_token_signing_alg_values_supported=("RS256",),
)



class Stub:
    """The provider: remembers the authorization request, answers the token endpoint."""

    def __init__(self) -> None:
        self.auth_params: dict[str, str] = {}
        self.token_forms: list[dict[str, str]] = []
        self.token_headers: list[httpx.Headers] = []
        self.claims: dict[str, Any] = {}
        self.key = KEY
        self.token_answer: tuple[int, dict[str, Any]] | None = None
        self.include_id_token = True

    def id_token(self) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": "u1", "aud": "cli", "iat": now, "exp": now + 600,
                  "nonce": self.auth_params.get("nonce", "")}
        claims.update(self.claims)
        return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/jwks":
            return httpx.Response(200, json={"keys": [KEY.as_dict(private=False)]})
        assert request.url.path == "/token"
        self.token_forms.append({k: v[0] for k, v in parse_qs(request.content.decode()).items()})
        self.token_headers.append(request.headers)
        if self.token_answer is not None:
            return httpx.Response(self.token_answer[0], json=self.token_answer[1])
        body: dict[str, Any] = {"access_token": "AT", "token_type": "Bearer",
                                "expires_in": 300, "refresh_token": "RT"}
        if self.include_id_token:
            body["id_token"] = self.id_token()
        return httpx.Response(200, json=body)


class FakeBrowser:
    """An opener: records the URL, then (in a thread) GETs the callback(s) a provider would."""

    def __init__(self, stub: Stub, *, callbacks: list[dict[str, str]] | None = None,
                 result: object = True) -> None:
        self.stub = stub
        self.callbacks = callbacks  # None: one good callback
        self.result = result
        self.urls: list[str] = []
        self.pages: list[httpx.Response] = []
        self.thread: threading.Thread | None = None

    def __call__(self, url: str) -> object:
        self.urls.append(url)
        self.stub.auth_params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self.result

    def _run(self) -> None:
        p = self.stub.auth_params
        good = {"code": "CODE", "state": p["state"], "iss": ISSUER}
        with httpx.Client(trust_env=False, timeout=5) as client:
            for raw in self.callbacks if self.callbacks is not None else [good]:
                params = {k: (p["state"] if v == "<state>" else v) for k, v in raw.items()}
                self.pages.append(client.get(f"{p['redirect_uri']}?{urlencode(params)}"))

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join(10)


@pytest.fixture(autouse=True)
def _no_cache() -> Iterator[None]:
    clear_jwks_cache()
    yield
    clear_jwks_cache()


@pytest.fixture
def stub() -> Stub:
    return Stub()


@pytest.fixture
def http(stub: Stub) -> Iterator[IdPHttp]:
    client = IdPHttp(transport=httpx.MockTransport(stub.handler), max_retries=0)
    yield client
    client.close()


def oidc(**kw: Any) -> OIDCParams:
    kw.setdefault("callback_port", free_port())
    return OIDCParams(issuer=ISSUER, client_id="cli", **kw)


def run(http: IdPHttp, browser: Any, *, params: OIDCParams | None = None,
        err: io.StringIO | None = None, **kw: Any) -> Token:
    kw.setdefault("timeout", 10)
    try:
        return interactive_login(oidc=params or oidc(), metadata=META, http=http,
                                 open_browser=browser, stderr=err or io.StringIO(), **kw)
    finally:
        if isinstance(browser, FakeBrowser):
            browser.join()


def test_full_login_and_the_code_exchange(stub: Stub, http: IdPHttp) -> None:
    browser = FakeBrowser(stub)
    err = io.StringIO()
    params = oidc(scopes=["email"], audience="https://api")
    tokens = run(http, browser, params=params, err=err)
    assert (tokens.access_token, tokens.refresh_token) == ("AT", "RT")
    (form,) = stub.token_forms
    auth = stub.auth_params
    assert form == {
        "grant_type": "authorization_code",
        "code": "CODE",
        "redirect_uri": f"http://localhost:{params.port}/callback",
        "client_id": "cli",
        "code_verifier": form["code_verifier"],
        "resource": "https://api",
    }
    digest = hashlib.sha256(form["code_verifier"].encode()).digest()
    assert auth["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert auth["redirect_uri"] == form["redirect_uri"]
    assert auth["resource"] == "https://api"
    assert "authorization" not in stub.token_headers[0]  # a public client
    assert browser.pages[0].status_code == 200
    assert "browser has been opened" in err.getvalue()
    assert "CODE" not in err.getvalue()


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        ({"nonce": "replayed"}, "nonce"),
        ({"aud": "someone-else"}, "not meant for client"),
        ({"iss": "https://evil.example.com"}, "issued by"),
        ({"exp": 1000}, "expired"),
    ],
)
def test_hostile_id_tokens(stub: Stub, http: IdPHttp, claims: dict[str, Any],
                           match: str) -> None:
    stub.claims = claims
    with pytest.raises(LoginError, match=match) as info:
        run(http, FakeBrowser(stub))
    assert info.value.error == "invalid_id_token"


def test_forged_signature(stub: Stub, http: IdPHttp) -> None:
    stub.key = ROGUE
    with pytest.raises(LoginError, match="signature"):
        run(http, FakeBrowser(stub))


def test_missing_id_token_with_openid(stub: Stub, http: IdPHttp) -> None:
    stub.include_id_token = False
    with pytest.raises(LoginError, match="no ID token"):
        run(http, FakeBrowser(stub))


def test_no_id_token_needed_without_openid(stub: Stub, http: IdPHttp) -> None:
    stub.include_id_token = False
    tokens = run(http, FakeBrowser(stub), extra_params={"scope": "api offline_access"})
    assert (tokens.access_token, tokens.id_token) == ("AT", None)
    assert stub.auth_params["scope"] == "api offline_access"


def test_dead_code_is_a_login_error_not_invalid_grant(stub: Stub, http: IdPHttp) -> None:
    stub.token_answer = (400, {"error": "invalid_grant", "error_description": "code used"})
    with pytest.raises(LoginError) as info:
        run(http, FakeBrowser(stub))
    assert info.value.error == "invalid_grant"
    assert info.value.description == "code used"


def test_token_endpoint_down_is_a_transport_error(stub: Stub, http: IdPHttp) -> None:
    stub.token_answer = (503, {})
    with pytest.raises(TransportError):
        run(http, FakeBrowser(stub))


def test_wrong_state_then_right_one(stub: Stub, http: IdPHttp) -> None:
    browser = FakeBrowser(stub, callbacks=[
        {"code": "EVIL", "state": "forged", "iss": ISSUER},
        {"code": "CODE", "state": "<state>", "iss": ISSUER},
    ])
    run(http, browser)
    assert [p.status_code for p in browser.pages] == [400, 200]
    assert [f["code"] for f in stub.token_forms] == ["CODE"]


def test_iss_mismatch_and_missing_iss(stub: Stub, http: IdPHttp) -> None:
    for cb in ({"code": "C", "state": "<state>", "iss": "https://evil.example.com"},
               {"code": "C", "state": "<state>"}):
        with pytest.raises(LoginError, match="iss"):
            run(http, FakeBrowser(stub, callbacks=[cb]))
    assert stub.token_forms == []


def test_access_denied(stub: Stub, http: IdPHttp) -> None:
    browser = FakeBrowser(stub, callbacks=[{"error": "access_denied", "state": "<state>",
                                            "iss": ISSUER}])
    with pytest.raises(LoginError) as info:
        run(http, browser)
    assert info.value.error == "access_denied"
    assert stub.token_forms == []


def test_busy_port_fails_before_the_browser_opens(stub: Stub, http: IdPHttp) -> None:
    params = oidc()
    browser = FakeBrowser(stub)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", params.port))
        squatter.listen()
        with pytest.raises(LoginError, match=str(params.port)):
            run(http, browser, params=params)
    assert browser.urls == []


@pytest.mark.parametrize("result", [False, "raise"])
def test_failed_opener_prints_the_url(stub: Stub, http: IdPHttp, result: object) -> None:
    err = io.StringIO()

    class Opener(FakeBrowser):
        def __call__(self, url: str) -> object:
            super().__call__(url)  # the user copies the printed URL into a browser
            if result == "raise":
                raise RuntimeError("no browser")
            return result

    browser = Opener(stub)
    run(http, browser, err=err)
    text = err.getvalue()
    assert "Cannot open a browser" in text
    assert browser.urls[0] in text


def test_timeout(stub: Stub, http: IdPHttp) -> None:
    ticks = iter(range(0, 10_000, 50))
    with pytest.raises(LoginError, match="timed out"):
        run(http, lambda url: True, timeout=120, clock=lambda: float(next(ticks)))


def test_bad_arguments(http: IdPHttp) -> None:
    with pytest.raises(ConfigError):
        run(http, None, method="carrier-pigeon")
    with pytest.raises(ConfigError):
        run(http, None, timeout=0)
    with pytest.raises(ConfigError):
        run(http, lambda u: True, callback_host="example.com")


# --- choosing the method ------------------------------------------------------------------------

NO_DEVICE = ProviderMetadata(issuer=ISSUER, token_endpoint=f"{ISSUER}/token",
                             authorization_endpoint=f"{ISSUER}/auth")


def choose(method: str = "auto", *, meta: ProviderMetadata = META, opener: bool = False,
           skip: bool = False, reason: str = "") -> str:
    return choose_method(method, metadata=meta, have_opener=opener, skip_browser=skip,
                         unavailable_reason=lambda: reason)


def test_choose_method() -> None:
    assert choose() == "browser"
    assert choose(reason="ssh") == "device"
    assert choose(reason="ssh", opener=True) == "browser"
    assert choose(reason="ssh", skip=True) == "browser"
    assert choose(reason="ssh", meta=NO_DEVICE) == "browser"
    assert choose("browser", reason="ssh") == "browser"
    assert choose("device") == "device"
    with pytest.raises(ConfigError, match="device"):
        choose("device", meta=NO_DEVICE)
    with pytest.raises(ConfigError):
        choose("magic")


def found() -> object:
    return object()


def not_found() -> object:
    import webbrowser

    raise webbrowser.Error("could not locate runnable browser")


@pytest.mark.parametrize(
    ("env", "platform", "probe", "available"),
    [
        ({"DISPLAY": ":0"}, "linux", found, True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", found, True),
        ({}, "linux", found, False),
        ({"SSH_CONNECTION": "1 2 3 4"}, "linux", found, False),
        ({"SSH_CONNECTION": "1 2 3 4", "DISPLAY": "localhost:10.0"}, "linux", found, True),
        ({"SSH_TTY": "/dev/pts/1"}, "darwin", found, False),
        ({}, "darwin", found, True),
        ({}, "win32", found, True),
        ({"BROWSER": "wslview"}, "linux", found, True),
        ({"DISPLAY": ":0"}, "linux", not_found, False),
    ],
)
def test_browser_unavailable_reason(env: dict[str, str], platform: str, probe: Any,
                                    available: bool) -> None:
    assert (browser_unavailable_reason(env, platform, probe) == "") is available


def test_auto_over_ssh_without_display_uses_the_device_grant(
    stub: Stub, http: IdPHttp, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSH_CONNECTION", "10.0.0.1 5555 10.0.0.2 22")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/device":
            return httpx.Response(200, json={"device_code": "D", "user_code": "ABCD",
                                             "verification_uri": f"{ISSUER}/verify"})
        return httpx.Response(200, json={"access_token": "AT", "token_type": "Bearer"})

    client = IdPHttp(transport=httpx.MockTransport(handler))
    err = io.StringIO()
    try:
        tokens = interactive_login(oidc=oidc(), metadata=META, http=client, stderr=err,
                                   sleep=lambda s: None)
    finally:
        client.close()
    assert (tokens.access_token, tokens.refresh_token, tokens.expiry) == ("AT", None, None)
    assert "ABCD" in err.getvalue()
