"""Unit tests of the device grant driver: httpx.MockTransport plays the provider, and a fake
clock/sleep pair makes minutes of polling take no time at all."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from oauth_auth._authorize import DEVICE_CODE_GRANT_TYPE
from oauth_auth._device import device_login
from oauth_auth._discovery import ProviderMetadata
from oauth_auth._http import IdPHttp
from oauth_auth._login import interactive_login
from oauth_auth._params import OIDCParams
from oauth_auth.errors import ConfigError, LoginError, OAuthError, TransportError

ISSUER = "https://idp.example.com"
META = ProviderMetadata(
    issuer=ISSUER,
    token_endpoint=f"{ISSUER}/token",
    authorization_endpoint=f"{ISSUER}/auth",
    device_authorization_endpoint=f"{ISSUER}/device/auth",
    jwks_uri=f"{ISSUER}/jwks",
)
OIDC = OIDCParams(issuer=ISSUER, client_id="cli", scopes=["email"], audience="https://api")
TOKEN = {"access_token": "AT", "token_type": "Bearer", "expires_in": 300,
         "refresh_token": "RT"}


class FakeTime:
    """A monotonic clock that only moves when `sleep` is called."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


class Provider:
    """The device and token endpoints; token answers come from a script."""

    def __init__(self, time: FakeTime, answers: list[Any], **device_doc: Any) -> None:
        self.time = time
        self.answers = list(answers)
        self.device_doc = {
            "device_code": "DEVICE-CODE",
            "user_code": "WDJB-MJHT",
            "verification_uri": f"{ISSUER}/device",
            "verification_uri_complete": f"{ISSUER}/device?user_code=WDJB-MJHT",
            "expires_in": 1800,
            "interval": 5,
        }
        self.device_doc.update(device_doc)
        self.device_doc = {k: v for k, v in self.device_doc.items() if v is not None}
        self.device_forms: list[dict[str, str]] = []
        self.polls: list[tuple[float, dict[str, str]]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if request.url.path == "/device/auth":
            self.device_forms.append(form)
            return httpx.Response(200, json=self.device_doc)
        assert request.url.path == "/token"
        self.polls.append((self.time.now, form))
        answer = self.answers.pop(0) if self.answers else "authorization_pending"
        if isinstance(answer, str):
            return httpx.Response(400, json={"error": answer, "error_description": "d"})
        if isinstance(answer, int):
            return httpx.Response(answer)
        return httpx.Response(200, json=answer)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def make_http(provider: Provider) -> IdPHttp:
    return IdPHttp(transport=httpx.MockTransport(provider.handler), max_retries=0,
                   sleep=lambda s: None)


@pytest.fixture
def run(fake_time: FakeTime) -> Iterator[Any]:
    clients: list[IdPHttp] = []

    def go(answers: list[Any], *, timeout: float = 300.0, opener: Any = None,
           open_complete: bool = True, meta: ProviderMetadata = META,
           **device_doc: Any) -> tuple[Any, Provider, str]:
        provider = Provider(fake_time, answers, **device_doc)
        http = make_http(provider)
        clients.append(http)
        err = io.StringIO()
        result: Any
        try:
            result = device_login(
                client_id="cli", scopes=["openid", "offline_access"], audience="https://api",
                metadata=meta, http=http, open_url=opener, open_complete=open_complete,
                stderr=err, deadline=fake_time.clock() + timeout, clock=fake_time.clock,
                sleep=fake_time.sleep,
            )
        except LoginError as exc:
            result = exc
        return result, provider, err.getvalue()

    yield go
    for c in clients:
        c.close()


def test_approved_after_pending(run: Any, fake_time: FakeTime) -> None:
    opened: list[str] = []
    token, provider, err = run(["authorization_pending", "authorization_pending", TOKEN],
                               opener=opened.append)
    assert token == TOKEN
    assert provider.device_forms == [
        {"client_id": "cli", "scope": "openid offline_access", "resource": "https://api"}
    ]
    assert [f for _, f in provider.polls] == [
        {"grant_type": DEVICE_CODE_GRANT_TYPE, "device_code": "DEVICE-CODE",
         "client_id": "cli", "resource": "https://api"}
    ] * 3
    assert fake_time.sleeps == [5, 5, 5]
    assert opened == [f"{ISSUER}/device?user_code=WDJB-MJHT"]
    assert f"{ISSUER}/device" in err
    assert "WDJB-MJHT" in err
    assert "DEVICE-CODE" not in err


def test_opener_gets_plain_uri_without_complete_form(run: Any) -> None:
    opened: list[str] = []
    run([TOKEN], opener=opened.append, verification_uri_complete=None)
    assert opened == [f"{ISSUER}/device"]


def test_a_browser_command_never_gets_the_user_code(run: Any) -> None:
    """Its arguments are readable by every local user, who could approve the login with
    their own account (issue 15, item 1)."""
    opened: list[str] = []
    _, _, err = run([TOKEN], opener=opened.append, open_complete=False)
    assert opened == [f"{ISSUER}/device"]
    assert "WDJB-MJHT" in err  # the user types it, from the terminal


def test_failing_opener_is_fine(run: Any) -> None:
    def broken(url: str) -> None:
        raise OSError("no browser")

    token, _, err = run([TOKEN], opener=broken)
    assert token == TOKEN
    assert "WDJB-MJHT" in err


def test_slow_down_adds_five_seconds_for_good(run: Any, fake_time: FakeTime) -> None:
    token, _, _ = run(["authorization_pending", "slow_down", "authorization_pending",
                       "slow_down", TOKEN], interval=2)
    assert token == TOKEN
    assert fake_time.sleeps == [2, 2, 7, 7, 12]


def test_default_interval_is_five_seconds(run: Any, fake_time: FakeTime) -> None:
    run(["authorization_pending", TOKEN], interval=None)
    assert fake_time.sleeps == [5, 5]


def test_expired_token(run: Any) -> None:
    exc, _, _ = run(["authorization_pending", "expired_token"])
    assert isinstance(exc, LoginError)
    assert exc.error == "expired_token"


def test_access_denied(run: Any) -> None:
    exc, _, _ = run(["access_denied"])
    assert isinstance(exc, LoginError)
    assert exc.error == "access_denied"
    assert "denied" in str(exc)


def test_other_oauth_errors_end_the_login(run: Any) -> None:
    exc, _, _ = run(["invalid_client"])
    assert isinstance(exc, LoginError)
    assert exc.error == "invalid_client"


def test_overall_timeout(run: Any, fake_time: FakeTime) -> None:
    exc, provider, _ = run([], timeout=60)
    assert isinstance(exc, LoginError)
    assert exc.error == "timeout"
    assert fake_time.now == 60
    assert len(provider.polls) == 12  # every 5 s, the last one exactly at the deadline


def test_device_code_lifetime_caps_the_timeout(run: Any, fake_time: FakeTime) -> None:
    exc, _, _ = run([], timeout=300, expires_in=20)
    assert isinstance(exc, LoginError)
    assert exc.error == "timeout"
    assert fake_time.now == 20


def test_transport_blips_back_off_and_recover(run: Any, fake_time: FakeTime) -> None:
    token, _, _ = run([503, 503, TOKEN], interval=1)
    assert token == TOKEN
    assert fake_time.sleeps == [1, 2, 3]


def test_persistent_transport_failure_surfaces_at_the_deadline(fake_time: FakeTime) -> None:
    provider = Provider(fake_time, [503] * 100)
    http = make_http(provider)
    try:
        with pytest.raises(TransportError):
            device_login(client_id="cli", scopes=[], audience="", metadata=META, http=http,
                         open_url=None, stderr=io.StringIO(), deadline=100,
                         clock=fake_time.clock, sleep=fake_time.sleep)
    finally:
        http.close()


def test_keyboard_interrupt_ends_at_once(fake_time: FakeTime) -> None:
    provider = Provider(fake_time, [])
    http = make_http(provider)

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    try:
        with pytest.raises(KeyboardInterrupt):
            device_login(client_id="cli", scopes=[], audience="", metadata=META, http=http,
                         open_url=None, stderr=io.StringIO(), deadline=100,
                         clock=fake_time.clock, sleep=interrupted)
    finally:
        http.close()
    assert provider.polls == []


def test_device_endpoint_refusal_is_a_login_error(fake_time: FakeTime) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "unauthorized_client"})

    http = IdPHttp(transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(LoginError) as info:
            device_login(client_id="cli", scopes=[], audience="", metadata=META, http=http,
                         open_url=None, stderr=io.StringIO(), deadline=100,
                         clock=fake_time.clock, sleep=fake_time.sleep)
    finally:
        http.close()
    assert info.value.error == "unauthorized_client"


# --- through interactive_login ----------------------------------------------------------------


def test_interactive_login_device_method(fake_time: FakeTime) -> None:
    provider = Provider(fake_time, ["slow_down", TOKEN])
    http = make_http(provider)
    err = io.StringIO()
    opened: list[str] = []
    try:
        token = interactive_login(oidc=OIDC, metadata=META, http=http, method="device",
                                  open_browser=opened.append, stderr=err,
                                  clock=fake_time.clock, sleep=fake_time.sleep,
                                  now=lambda: 1000.0)
    finally:
        http.close()
    # Parsed once, at the moment the response arrived: an absolute expiry, the tokens kept.
    assert (token.access_token, token.refresh_token, token.expiry) == ("AT", "RT", 1300.0)
    assert provider.device_forms[0]["scope"] == "email openid offline_access"
    assert opened == [f"{ISSUER}/device?user_code=WDJB-MJHT"]
    assert fake_time.sleeps == [5, 10]


def test_interactive_login_gives_the_default_browser_no_user_code(
    fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    import webbrowser

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    monkeypatch.setattr("oauth_auth._login.browser_unavailable_reason", lambda: "")
    provider = Provider(fake_time, [TOKEN])
    http = make_http(provider)
    try:
        interactive_login(oidc=OIDC, metadata=META, http=http, method="device",
                          stderr=io.StringIO(), clock=fake_time.clock, sleep=fake_time.sleep)
    finally:
        http.close()
    assert opened == [f"{ISSUER}/device"]


@pytest.mark.parametrize("interval", [0.01, 1e-9, 0.5])
def test_the_polling_interval_has_a_floor_of_a_second(
    run: Any, fake_time: FakeTime, interval: float
) -> None:
    # A provider saying interval 0.04 got 68 polls in 3 s (issue 15, item 12).
    run(["authorization_pending"] * 3 + [TOKEN], interval=interval)
    assert fake_time.sleeps == [1.0] * 4


@pytest.mark.parametrize("uri", [
    "http://idp.example.com/device",  # plain http to a host on the network
    "http://idp.localhost/device",  # a name that merely looks local
    "ftp://idp.example.com/device",
])
def test_a_verification_uri_must_be_https_or_loopback(run: Any, uri: str) -> None:
    result, provider, err = run([TOKEN], verification_uri=uri)
    assert isinstance(result, LoginError)
    assert "https" in str(result)
    assert provider.polls == []
    assert "WDJB-MJHT" not in err  # nobody is sent to type the code there


def test_a_plain_http_complete_uri_is_dropped(run: Any) -> None:
    opened: list[str] = []
    run([TOKEN], opener=opened.append,
        verification_uri_complete="http://idp.example.com/device?user_code=WDJB-MJHT")
    assert opened == [f"{ISSUER}/device"]


def test_a_loopback_verification_uri_may_be_plain_http(run: Any) -> None:
    opened: list[str] = []
    token, _, _ = run([TOKEN], opener=opened.append, verification_uri_complete=None,
                      verification_uri="http://127.0.0.1:9/device")
    assert token["access_token"] == "AT"
    assert opened == ["http://127.0.0.1:9/device"]


@pytest.mark.parametrize(
    ("answer", "expiry"),
    [({"access_token": "AT", "expires_in": 300, "refresh_token": "RT"}, None),
     ({"access_token": "AT", "token_type": "bearer", "expires_in": "300"}, 1300.0)],
)
def test_a_login_checks_the_token_response_as_a_refresh_does(
    fake_time: FakeTime, answer: dict[str, Any], expiry: float | None
) -> None:
    # Issue 12: a login ran a lenient check (no token_type passed, LoginError) and then the
    # strict parse (OAuthError). Now one rule: token_type required, numeric string taken.
    provider = Provider(fake_time, [answer])
    http = make_http(provider)
    try:
        if expiry is None:
            with pytest.raises(OAuthError, match="not Bearer") as info:
                interactive_login(oidc=OIDC, metadata=META, http=http, method="device",
                                  open_browser=lambda u: True, stderr=io.StringIO(),
                                  clock=fake_time.clock, sleep=fake_time.sleep)
            assert type(info.value) is OAuthError
            assert info.value.error == "invalid_response"
        else:
            token = interactive_login(oidc=OIDC, metadata=META, http=http, method="device",
                                      open_browser=lambda u: True, stderr=io.StringIO(),
                                      clock=fake_time.clock, sleep=fake_time.sleep,
                                      now=lambda: 1000.0)
            assert (token.access_token, token.expiry) == ("AT", expiry)
    finally:
        http.close()
    assert len(provider.polls) == 1


def test_interactive_login_device_timeout(fake_time: FakeTime) -> None:
    provider = Provider(fake_time, [])
    http = make_http(provider)
    try:
        with pytest.raises(LoginError, match="timed out"):
            interactive_login(oidc=OIDC, metadata=META, http=http, method="device",
                              open_browser=lambda u: True, stderr=io.StringIO(), timeout=30,
                              clock=fake_time.clock, sleep=fake_time.sleep)
    finally:
        http.close()
    assert fake_time.now == 30


def test_device_method_needs_the_endpoint() -> None:
    meta = ProviderMetadata(issuer=ISSUER, token_endpoint=f"{ISSUER}/token")
    http = IdPHttp(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    try:
        with pytest.raises(ConfigError, match="device"):
            interactive_login(oidc=OIDC, metadata=meta, http=http, method="device",
                              stderr=io.StringIO())
    finally:
        http.close()


def test_skip_browser_opens_nothing_in_the_device_flow(fake_time: FakeTime) -> None:
    provider = Provider(fake_time, [TOKEN])
    http = make_http(provider)
    opened: list[str] = []
    err = io.StringIO()
    try:
        interactive_login(oidc=OIDC, metadata=META, http=http, method="device",
                          skip_browser=True, open_browser=opened.append, stderr=err,
                          clock=fake_time.clock, sleep=fake_time.sleep)
    finally:
        http.close()
    assert opened == []
    assert "WDJB-MJHT" in err.getvalue()
