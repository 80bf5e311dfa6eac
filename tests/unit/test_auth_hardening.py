"""OIDCAuth's hardening rules: no bearer token over plain http to a host that is not
loopback (RFC 6750 section 5.3), and an API that always answers 401 costs one refresh per
`reauth_interval`, not one per request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import requests

from oauth_auth import ConfigError, MemorySecrets, OAuthTokenSource, OIDCAuth, OIDCParams
from tests.support.api import ProtectedAPI
from tests.support.fakes import ISSUER, FakeClock, FakeProvider

KEY = "HARDENING_KEY"
CLIENTS = ["requests", "httpx", "httpx-async"]


class CountingSource:
    """A token source that counts what it is asked for."""

    def __init__(self) -> None:
        self.calls = 0

    def token(self) -> str:
        self.calls += 1
        return "a-token-that-must-stay-on-tls"

    async def atoken(self) -> str:
        return self.token()

    def invalidate(self, token: str | None = None) -> None:
        pass

    async def ainvalidate(self, token: str | None = None) -> None:
        pass


def send(client: str, auth: OIDCAuth, url: str) -> int:
    if client == "requests":
        with requests.Session() as s:
            s.auth = auth
            return s.get(url, timeout=10).status_code
    if client == "httpx":
        with httpx.Client(auth=auth, timeout=10) as c:
            return c.get(url).status_code

    async def go() -> int:
        async with httpx.AsyncClient(auth=auth, timeout=10) as c:
            return (await c.get(url)).status_code

    return asyncio.run(go())


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(
    "url", ["http://api.example.com/x", "http://idp.localhost:9/x", "http://10.0.0.7/x",
            "HTTP://API.EXAMPLE.COM/x"],
)
def test_plain_http_to_a_host_that_is_not_loopback_gets_no_token(client: str, url: str) -> None:
    source = CountingSource()
    with pytest.raises(ConfigError, match="plain http") as caught:
        send(client, OIDCAuth(source), url)
    assert "allow_insecure_http=True" in caught.value.hint
    assert source.calls == 0  # no token was even asked for


def test_the_remembered_plain_http_verdict_is_per_host() -> None:
    """The requests driver parses a plain-http URL's host once per origin (a cache): the
    verdict still follows the host, every time, whatever the path or the user info."""
    from oauth_auth.auth import _http_url_host

    assert _http_url_host("http://127.0.0.1:9/data?x=/y") == "127.0.0.1"
    assert _http_url_host("http://evil.example/x?127.0.0.1") == "evil.example"
    assert _http_url_host("http://u:p@[::1]:8/a") == "::1"
    assert _http_url_host("http://localhost?next=/x") == "localhost"
    source = CountingSource()
    auth = OIDCAuth(source)
    for _ in range(3):
        request = requests.Request("GET", "http://api.example.com/x").prepare()
        with pytest.raises(ConfigError, match="plain http"):
            auth(request)
        assert "Authorization" not in request.headers
    request = requests.Request("GET", "http://127.0.0.1:9/x").prepare()
    assert auth(request).headers["Authorization"] == "Bearer a-token-that-must-stay-on-tls"
    assert source.calls == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_plain_http_to_loopback_and_allowed_http_carry_the_token(
    client: str, api_factory: Callable[..., ProtectedAPI]
) -> None:
    api = api_factory(lambda token: token == "a-token-that-must-stay-on-tls")
    source = CountingSource()
    assert send(client, OIDCAuth(source), api.url + "/data") == 200  # 127.0.0.1
    assert send(client, OIDCAuth(source, allow_insecure_http=True), api.url + "/data") == 200
    assert [s.authorization for s in api.seen] == ["Bearer a-token-that-must-stay-on-tls"] * 2


def test_allow_insecure_http_lets_the_token_go_to_any_http_host() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200)

    auth = OIDCAuth(CountingSource(), allow_insecure_http=True)
    with httpx.Client(auth=auth, transport=httpx.MockTransport(handler)) as c:
        assert c.get("http://api.example.com/x").status_code == 200
    assert seen == ["Bearer a-token-that-must-stay-on-tls"]


# ---------------------------------------------------------------- reauth_interval


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_source(fake_idp: FakeProvider, clock: FakeClock, tmp_path: Any, *,
                cached: bool, **kw: Any) -> OAuthTokenSource:
    store = MemorySecrets()
    store.set_secret(KEY, fake_idp.seed())
    if cached:  # a token another process left in the shared cache
        store.set_secret(KEY + "_AT", "at-cached|2099-01-01T00:00:00Z")
    return OAuthTokenSource(OIDCParams(ISSUER, "cli"), key_provider=lambda: KEY,
                            secrets_provider=store, clock=clock,
                            transport=fake_idp.transport(), max_retries=0,
                            lock_dir=str(tmp_path), **kw)


@pytest.mark.parametrize("client", CLIENTS)
def test_twenty_requests_to_an_always_401_api_cost_one_refresh(
    client: str, fake_idp: FakeProvider, clock: FakeClock, tmp_path: Any,
    api_factory: Callable[..., ProtectedAPI],
) -> None:
    api = api_factory(lambda token: True)
    api.mode = "always_401"
    auth = OIDCAuth(make_source(fake_idp, clock, tmp_path, cached=True))
    statuses = [send(client, auth, api.url + "/data") for _ in range(20)]
    assert statuses == [401] * 20
    assert fake_idp.counts["refresh"] == 1  # it was 20 before reauth_interval
    assert api.count() == 21  # the first request was retried once, no other
    # Once reauth_interval has passed, a 401 deserves one more try.
    clock.advance(10)
    assert send(client, auth, api.url + "/data") == 401
    assert fake_idp.counts["refresh"] == 2
    assert api.count() == 23


def test_a_401_cured_by_the_fresh_token_holds_nothing_off(
    fake_idp: FakeProvider, clock: FakeClock, tmp_path: Any,
    api_factory: Callable[..., ProtectedAPI],
) -> None:
    api = api_factory(lambda token: token.startswith("at-") and token != "at-cached")
    api.rejected_tokens.add("at-cached")
    source = make_source(fake_idp, clock, tmp_path, cached=True)
    auth = OIDCAuth(source)
    assert send("httpx", auth, api.url + "/data") == 200  # retried, cured
    assert source.reauth_allowed()
    api.rejected_tokens.add("at-1")  # the next token is revoked at once
    assert send("httpx", auth, api.url + "/data") == 200  # retried again: at-2
    assert fake_idp.counts["refresh"] == 2


def test_reauth_interval_zero_retries_every_401(
    fake_idp: FakeProvider, clock: FakeClock, tmp_path: Any,
    api_factory: Callable[..., ProtectedAPI],
) -> None:
    api = api_factory(lambda token: True)
    api.mode = "always_401"
    auth = OIDCAuth(make_source(fake_idp, clock, tmp_path, cached=True, reauth_interval=0))
    for _ in range(3):
        assert send("requests", auth, api.url + "/data") == 401
    assert fake_idp.counts["refresh"] == 3


def test_a_negative_reauth_interval_is_refused(fake_idp: FakeProvider, clock: FakeClock,
                                               tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="reauth_interval"):
        make_source(fake_idp, clock, tmp_path, cached=False, reauth_interval=-1)
