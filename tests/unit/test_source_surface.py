"""OAuthTokenSource's public surface: the status view, the named fast path, the copy of
`fallback_error`, `atoken()` under trio, and `verify` as an SSLContext."""

from __future__ import annotations

import ssl
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCParams, SecretsError
from oauth_auth._token import Token, encode_at_entry
from oauth_auth.source import LOGIN_METHODS, has_fast_path
from tests.support.fakes import ISSUER, FakeClock, FakeProvider

KEY = "TEST_OAUTH_0000abcd"


def make(idp: FakeProvider, clock: FakeClock, secrets: Any, tmp_path: Path,
         **kwargs: Any) -> OAuthTokenSource:
    return OAuthTokenSource(
        OIDCParams(ISSUER, "cli"), key_provider=lambda: KEY, secrets_provider=secrets,
        clock=clock, transport=idp.transport(), max_retries=0, lock_dir=str(tmp_path),
        **kwargs,
    )


def depth(tb: TracebackType | None) -> int:
    n = 0
    while tb is not None:
        n, tb = n + 1, tb.tb_next
    return n


class NotLoggedIn(Exception):
    """A caller's own fallback error type."""


class NeedsKeyword(Exception):
    """An exception that cannot be rebuilt from its args (copy.copy fails on it)."""

    def __init__(self, *, why: str) -> None:
        super().__init__(why)


@pytest.mark.parametrize("fallback", [NotLoggedIn("log in first"), NeedsKeyword(why="x")])
def test_fallback_error_is_raised_as_a_copy_with_a_bounded_traceback(
    fallback: Exception, tmp_path: Path
) -> None:
    source = make(FakeProvider(), FakeClock(), MemorySecrets(), tmp_path,
                  fallback_error=fallback)
    depths = []
    for _ in range(5):
        with pytest.raises(type(fallback)) as caught:
            source.token()
        assert str(caught.value) == str(fallback)
        depths.append(depth(caught.value.__traceback__))
    assert len(set(depths)) == 1, depths  # was 4, 8, 12, 16... frames
    if isinstance(fallback, NotLoggedIn):
        assert caught.value is not fallback
        assert fallback.__traceback__ is None  # the caller's instance is left alone


def test_status_reports_each_tier_by_the_sources_own_rule(tmp_path: Path) -> None:
    idp, clock, secrets = FakeProvider(), FakeClock(), MemorySecrets()
    source = make(idp, clock, secrets, tmp_path, preemptive_refresh_window=60)
    view = source.status()
    assert (view.memory_token, view.shared_token, view.stored_refresh_token) == (
        False, False, False)
    assert view.errors == ()

    # a shared token with 90 s left is fresh for a 60 s window...
    secrets.set_secret(KEY + "_AT", encode_at_entry(Token("at-shared", clock.now + 90)) or "")
    secrets.set_secret(KEY, idp.seed("rt-0"))
    view = source.status()
    assert view.shared_token
    assert view.shared_fresh
    assert view.shared_expiry == datetime.fromtimestamp(int(clock.now + 90), tz=timezone.utc)
    assert view.stored_refresh_token is True
    assert not view.memory_token  # status() reads, it does not serve
    # ...not once less than the window remains
    clock.advance(31)
    assert not source.status().shared_fresh
    # and never a token a resource server rejected
    clock.advance(-31)
    source.invalidate("at-other")
    assert source.status().shared_fresh
    source._remember_rejected("at-shared")
    assert not source.status().shared_fresh

    assert source.token() == "at-1"  # refreshed: tier 1 now holds a token
    view = source.status(read_store=False)
    assert view.memory_token
    assert view.memory_refresh_token
    assert view.memory_expiry is not None
    assert view.stored_refresh_token is None  # not read


def test_status_reports_store_failures_without_raising(tmp_path: Path) -> None:
    class Broken(MemorySecrets):
        def get_secret(self, name: str) -> str | None:
            raise SecretsError("the keyring is locked")

    view = make(FakeProvider(), FakeClock(), Broken(), tmp_path).status()
    assert view.stored_refresh_token is None
    assert [e.message for e in view.errors] == ["the keyring is locked"] * 2
    view = make(FakeProvider(), FakeClock(), None, tmp_path).status()
    assert isinstance(view.errors[0], SecretsError)


def test_the_fast_path_is_named_and_a_subclass_keeps_its_token(tmp_path: Path) -> None:
    from oauth_auth import OIDCAuth

    class Custom(OAuthTokenSource):
        def token(self) -> str:
            return "custom-" + super().token()

    class Plain(OAuthTokenSource):
        pass

    idp, clock, secrets = FakeProvider(), FakeClock(), MemorySecrets()
    secrets.set_secret(KEY, idp.seed("rt-0"))
    base = make(idp, clock, secrets, tmp_path)
    assert base.fast_path[1] < clock.now  # nothing in memory
    assert base.token() == "at-1"
    assert base.fast_path[0] == "at-1"
    assert clock() < base.fast_path[1]
    assert has_fast_path(base)
    options: dict[str, Any] = {"key_provider": lambda: KEY, "secrets_provider": secrets,
                               "clock": clock, "transport": idp.transport(),
                               "lock_dir": str(tmp_path)}
    assert has_fast_path(Plain(OIDCParams(ISSUER, "cli"), **options))
    custom = Custom(OIDCParams(ISSUER, "cli"), **options)
    assert not has_fast_path(custom)
    assert not has_fast_path(object())

    class AsyncCustom(OAuthTokenSource):
        async def atoken(self) -> str:
            return "async-custom-" + await super().atoken()

    # The async httpx driver reads the fast path too: an overridden atoken() must win.
    async_custom = AsyncCustom(OIDCParams(ISSUER, "cli"), **options)
    assert not has_fast_path(async_custom)
    assert async_custom.token() == "at-1"  # in memory now

    async def sent_async() -> str | None:
        import httpx

        seen: list[str | None] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request.headers.get("Authorization"))
            return httpx.Response(200)

        async with httpx.AsyncClient(auth=OIDCAuth(async_custom),
                                     transport=httpx.MockTransport(handler)) as client:
            await client.get("https://api.example.test/x")
        return seen[0]

    import asyncio

    assert asyncio.run(sent_async()) == "Bearer async-custom-at-1"

    import requests

    prepared = requests.Request("GET", "https://api.example.test/").prepare()
    custom.token()  # in memory now: the fast path would serve it without the prefix
    OIDCAuth(custom)(prepared)
    assert prepared.headers["Authorization"].startswith("Bearer custom-")


def test_login_methods_are_the_literal() -> None:
    assert LOGIN_METHODS == ("auto", "browser", "device")


def test_atoken_works_under_trio_and_asyncio(tmp_path: Path) -> None:
    import anyio

    idp, clock, secrets = FakeProvider(), FakeClock(), MemorySecrets()
    secrets.set_secret(KEY, idp.seed("rt-0"))
    source = make(idp, clock, secrets, tmp_path)
    got: list[str] = []

    async def many() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(one)
        await source.ainvalidate(got[-1])
        got.append(await source.atoken())

    async def one() -> None:
        got.append(await source.atoken())

    anyio.run(many, backend="trio")
    assert got == ["at-1"] * 8 + ["at-2"]
    assert idp.counts["refresh"] == 2  # one refresh for eight tasks, one after the 401
    clock.advance(3600)
    got.clear()
    anyio.run(many, backend="asyncio")
    assert got == ["at-3"] * 8 + ["at-4"]
    assert idp.counts["refresh"] == 4


def test_verify_accepts_an_ssl_context_and_a_path(tmp_path: Path) -> None:
    import certifi

    from oauth_auth._http import ssl_verify

    context = ssl.create_default_context()
    assert ssl_verify(context) is context
    assert ssl_verify(False) is False
    made = ssl_verify(certifi.where())
    assert isinstance(made, ssl.SSLContext)
    assert made.verify_mode == ssl.CERT_REQUIRED
    from oauth_auth._http import IdPHttp

    # httpx 0.28 deprecates a string `verify` (a DeprecationWarning: an error here)
    IdPHttp(verify=certifi.where()).close()
    IdPHttp(verify=context).close()
