"""OIDCAuth with requests, httpx and httpx2 (sync and async clients) against a loopback API.

The token source is real (fake provider on MockTransport, fake clock); the API is a real
HTTP server on 127.0.0.1 that counts the requests it sees.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import httpx2
import pytest
import requests

from oauth_auth import LoginRequiredError, MemorySecrets, OAuthTokenSource, OIDCAuth, OIDCParams
from oauth_auth._protocol import parse_bearer_challenges, should_retry_401
from tests.support.api import ProtectedAPI
from tests.support.fakes import ISSUER, FakeClock, FakeProvider

KEY = "AUTH_TEST_KEY"
CLIENTS = ["requests", "httpx", "httpx-async", "httpx2", "httpx2-async"]
#: The async clients, and the sync httpx-shaped ones (httpx2 is httpx's successor).
ASYNC = ("httpx-async", "httpx2-async")
HTTPX_SYNC = ("httpx", "httpx2")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def source(fake_idp: FakeProvider, clock: FakeClock, tmp_path: Any) -> OAuthTokenSource:
    store = MemorySecrets()
    store.set_secret(KEY, fake_idp.seed())
    return OAuthTokenSource(OIDCParams(ISSUER, "cli"), key_provider=lambda: KEY,
                            secrets_provider=store, clock=clock, transport=fake_idp.transport(),
                            max_retries=0, lock_dir=str(tmp_path))


@pytest.fixture
def api(api_factory: Callable[..., ProtectedAPI], fake_idp: FakeProvider) -> ProtectedAPI:
    # accepts any token the fake provider issued
    return api_factory(lambda token: token.startswith("at-"))


def send(client: str, auth: OIDCAuth, method: str, url: str, **kwargs: Any) -> tuple[int, int]:
    """Send one request with the named client; return (status, len(history))."""
    if client == "requests":
        with requests.Session() as s:
            s.auth = auth
            r = s.request(method, url, timeout=10, **kwargs)
            return r.status_code, len(r.history)
    module: Any = httpx2 if client.startswith("httpx2") else httpx
    if client in HTTPX_SYNC:
        with module.Client(auth=auth, timeout=10) as c:
            resp = c.request(method, url, **kwargs)
            return resp.status_code, len(resp.history)

    async def go() -> tuple[int, int]:
        async with module.AsyncClient(auth=auth, timeout=10) as c:
            resp = await c.request(method, url, **kwargs)
            return resp.status_code, len(resp.history)

    return asyncio.run(go())


def body_kwargs(client: str, kind: str) -> dict[str, Any]:
    if kind == "bytes":
        return {"data": b"\x00raw-bytes\xff"} if client == "requests" else {
            "content": b"\x00raw-bytes\xff"}
    if kind == "str":
        return {"data": "plain text"} if client == "requests" else {"content": "plain text"}
    if kind == "json":
        return {"json": {"a": [1, 2, 3], "b": "ü"}}
    if kind == "form":
        return {"data": {"field": "value", "other": "x y"}}
    if kind == "file":
        if client == "requests":
            f = io.BytesIO(b"HEADER" + b"file-body" * 1000)
            f.read(6)  # a file already positioned past a header: rewound to here, not to 0
            return {"data": f}
        # (httpx itself computes Content-Length from the whole file, so start at 0 there)
        return {"content": io.BytesIO(b"file-body" * 1000)}
    raise AssertionError(kind)


@pytest.mark.parametrize("client", CLIENTS)
def test_bearer_header_is_sent(client: str, source: OAuthTokenSource, api: ProtectedAPI,
                               fake_idp: FakeProvider) -> None:
    status, history = send(client, OIDCAuth(source), "GET", api.url + "/data")
    assert (status, history) == (200, 0)
    assert [s.authorization for s in api.seen] == ["Bearer at-1"]
    assert fake_idp.counts["refresh"] == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_rejected_token_is_retried_once_with_a_new_one(
    client: str, source: OAuthTokenSource, api: ProtectedAPI, fake_idp: FakeProvider
) -> None:
    api.rejected_tokens.add("at-1")
    status, history = send(client, OIDCAuth(source), "GET", api.url + "/data")
    assert status == 200
    assert history == 1
    assert [s.authorization for s in api.seen] == ["Bearer at-1", "Bearer at-2"]
    assert fake_idp.counts["refresh"] == 2


@pytest.mark.parametrize("client", CLIENTS)
def test_always_401_is_sent_twice_then_returned(
    client: str, source: OAuthTokenSource, api: ProtectedAPI
) -> None:
    api.mode = "always_401"
    status, _ = send(client, OIDCAuth(source), "GET", api.url + "/data")
    assert status == 401
    assert api.count() == 2


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize(("mode", "status"), [("insufficient_scope", 401), ("forbidden", 403)])
def test_no_retry_when_a_new_token_would_not_help(
    client: str, mode: str, status: int, source: OAuthTokenSource, api: ProtectedAPI,
    fake_idp: FakeProvider,
) -> None:
    api.mode = mode
    assert send(client, OIDCAuth(source), "GET", api.url + "/data")[0] == status
    assert api.count() == 1
    assert fake_idp.counts["refresh"] == 1


# httpx.AsyncClient takes no sync file objects as content, so that pair is not a case.
BODY_CASES = [(c, k) for c in CLIENTS for k in ("bytes", "str", "json", "form", "file")
              if not (c in ASYNC and k == "file")]


@pytest.mark.parametrize(("client", "kind"), BODY_CASES)
def test_replayable_bodies_are_replayed_intact(
    client: str, kind: str, source: OAuthTokenSource, api: ProtectedAPI
) -> None:
    api.rejected_tokens.add("at-1")
    kwargs = body_kwargs(client, kind)
    status, _ = send(client, OIDCAuth(source), "POST", api.url + "/upload", **kwargs)
    assert status == 200
    assert api.count() == 2
    first, second = api.seen
    assert first.body == second.body
    assert len(first.body) > 0
    if kind == "file":
        assert first.body == b"file-body" * 1000
    if kind == "json":
        assert json.loads(second.body) == {"a": [1, 2, 3], "b": "ü"}


@pytest.mark.parametrize("client", CLIENTS)
def test_generator_body_is_not_replayed(client: str, source: OAuthTokenSource,
                                        api: ProtectedAPI) -> None:
    api.rejected_tokens.add("at-1")

    def chunks() -> Iterator[bytes]:
        yield b"one,"
        yield b"two"

    async def achunks() -> AsyncIterator[bytes]:
        yield b"one,"
        yield b"two"

    if client == "requests":
        kwargs: dict[str, Any] = {"data": chunks()}
    elif client in HTTPX_SYNC:
        kwargs = {"content": chunks()}
    else:
        kwargs = {"content": achunks()}
    status, _ = send(client, OIDCAuth(source), "POST", api.url + "/stream", **kwargs)
    assert status == 401
    assert api.count() == 1
    assert api.seen[0].body == b"one,two"


@pytest.mark.parametrize("client", CLIENTS)
def test_cross_origin_redirect_never_carries_the_token(
    client: str, source: OAuthTokenSource, api: ProtectedAPI,
    api_factory: Callable[..., ProtectedAPI],
) -> None:
    other = api_factory(lambda token: True)
    api.redirect_to = other.url
    kwargs: dict[str, Any] = {} if client == "requests" else {"follow_redirects": True}
    status, _ = send(client, OIDCAuth(source), "GET", api.url + "/redirect", **kwargs)
    assert status == 401  # the other origin got no token, so it refused
    assert api.seen[0].authorization == "Bearer at-1"
    assert [s.authorization for s in other.seen] == [None]  # and no retry went there


# httpx itself cannot follow a 307/308 with a file body (it does not rewind it: "Too little
# data for declared Content-Length", with or without an auth), and an AsyncClient takes no
# sync file at all; those combinations are requests-only.
REDIRECT_BODY_CASES = [
    (c, st, k) for c in CLIENTS for st in (302, 303, 307, 308) for k in ("bytes", "file")
    if k == "bytes" or c == "requests" or (c in HTTPX_SYNC and st in (302, 303))
]


@pytest.mark.parametrize(("client", "status", "kind"), REDIRECT_BODY_CASES)
def test_a_body_redirected_to_another_origin_never_carries_a_token(
    client: str, status: int, kind: str, source: OAuthTokenSource, api: ProtectedAPI,
    api_factory: Callable[..., ProtectedAPI], fake_idp: FakeProvider,
) -> None:
    """A POST redirected to another host that answers 401: no token, old or fresh, goes
    there (a file body once made requests retry the 401 at the other host)."""
    other = api_factory(lambda token: True)
    api.redirect_to, api.redirect_status = other.url, status
    kwargs: dict[str, Any] = {} if client == "requests" else {"follow_redirects": True}
    kwargs.update(body_kwargs(client, kind))
    status_code, _ = send(client, OIDCAuth(source), "POST", api.url + "/redirect", **kwargs)
    assert status_code == 401
    assert [s.authorization for s in api.seen] == ["Bearer at-1"]
    assert [s.authorization for s in other.seen] == [None]
    assert other.seen[0].method == ("POST" if status in (307, 308) else "GET")
    assert fake_idp.counts["refresh"] == 1  # the 401 from elsewhere invalidated nothing


@pytest.mark.parametrize(("client", "status"),
                         [("requests", 303), ("requests", 307), ("httpx", 303),
                          ("httpx2", 303)])
def test_a_file_body_redirected_on_the_same_origin_is_retried_there(
    client: str, status: int, source: OAuthTokenSource, api: ProtectedAPI,
) -> None:
    """303 turns the POST into a GET without a body (the retry must not try to rewind a
    file that is gone), 307 keeps the file (the retry rewinds it)."""
    api.redirect_to, api.redirect_status = api.url, status
    api.rejected_tokens.add("at-1")
    kwargs: dict[str, Any] = {} if client == "requests" else {"follow_redirects": True}
    kwargs.update(body_kwargs(client, "file"))
    status_code, _ = send(client, OIDCAuth(source), "POST", api.url + "/redirect", **kwargs)
    assert status_code == 200
    echoes = [s for s in api.seen if s.path == "/echo"]
    assert [s.authorization for s in echoes] == ["Bearer at-1", "Bearer at-2"]
    if status == 307:
        assert [s.body for s in echoes] == [b"file-body" * 1000] * 2
    else:
        assert [(s.method, s.body) for s in echoes] == [("GET", b"")] * 2


@pytest.mark.parametrize("client", CLIENTS)
def test_a_source_with_nothing_newer_still_gets_its_one_retry(
    client: str, api: ProtectedAPI
) -> None:
    """Send once more whatever the source hands back; the second answer is returned."""

    class Static:
        def __init__(self) -> None:
            self.invalidated: list[str | None] = []

        def token(self) -> str:
            return "at-static"

        async def atoken(self) -> str:
            return "at-static"

        def invalidate(self, token: str | None = None) -> None:
            self.invalidated.append(token)

    static = Static()
    api.mode = "always_401"
    status, _ = send(client, OIDCAuth(static), "GET", api.url + "/data")
    assert status == 401
    assert [s.authorization for s in api.seen] == ["Bearer at-static"] * 2
    assert static.invalidated == ["at-static"]


@pytest.mark.parametrize("client", CLIENTS)
def test_token_source_errors_reach_the_caller_typed(client: str, fake_idp: FakeProvider,
                                                    clock: FakeClock, tmp_path: Any,
                                                    api: ProtectedAPI) -> None:
    empty = OAuthTokenSource(OIDCParams(ISSUER, "cli"), key_provider=lambda: KEY,
                             secrets_provider=MemorySecrets(), clock=clock,
                             transport=fake_idp.transport(), lock_dir=str(tmp_path))
    with pytest.raises(LoginRequiredError):
        send(client, OIDCAuth(empty), "GET", api.url + "/data")
    assert api.count() == 0


def test_requests_retry_keeps_first_response_in_history_and_releases_it(
    source: OAuthTokenSource, api: ProtectedAPI
) -> None:
    api.rejected_tokens.add("at-1")
    with requests.Session() as s:
        s.auth = OIDCAuth(source)
        r = s.get(api.url + "/data", timeout=10)
        assert r.status_code == 200
        assert [h.status_code for h in r.history] == [401]
        assert r.history[0].raw.closed or r.history[0]._content_consumed
        assert r.request.headers["Authorization"] == "Bearer at-2"
        # the pooled connection is still usable afterwards
        assert s.get(api.url + "/again", timeout=10).status_code == 200
    assert api.count() == 3


def test_requests_retry_goes_out_with_the_same_send_options(
    source: OAuthTokenSource, api: ProtectedAPI
) -> None:
    """The retry uses the adapter of the first send and the same timeout, verify, proxies,
    stream and cert (the hook receives them from Session.send and passes them on)."""
    from requests.adapters import HTTPAdapter

    seen: list[dict[str, Any]] = []

    class Recording(HTTPAdapter):
        def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            seen.append(dict(kwargs))
            return super().send(request, **kwargs)

    api.rejected_tokens.add("at-1")
    with requests.Session() as s:
        s.mount("http://", Recording())
        s.auth = OIDCAuth(source)
        r = s.get(api.url + "/data", timeout=(3.5, 7), stream=True, verify=False,
                  proxies={"https": "http://127.0.0.1:9"})
        assert r.status_code == 200
        r.close()
    assert len(seen) == 2
    assert seen[0] == seen[1]
    assert seen[0]["timeout"] == (3.5, 7)
    assert seen[0]["stream"] is True
    assert seen[0]["verify"] is False


def test_one_auth_shared_by_threads(source: OAuthTokenSource, api: ProtectedAPI,
                                    fake_idp: FakeProvider) -> None:
    auth = OIDCAuth(source)
    statuses: list[int] = []
    with requests.Session() as s:
        s.auth = auth

        def worker() -> None:
            for _ in range(5):
                statuses.append(s.get(api.url + "/t", timeout=10).status_code)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert statuses == [200] * 40
    assert fake_idp.counts["refresh"] == 1


def test_requests_serves_memory_then_refreshes_at_the_window(
    source: OAuthTokenSource, api: ProtectedAPI, fake_idp: FakeProvider, clock: FakeClock
) -> None:
    """requests reads an OAuthTokenSource's memory tier itself (a measured shortcut): it
    must serve exactly what token() would, and hand over to token() at the window."""
    auth = OIDCAuth(source)
    with requests.Session() as s:
        s.auth = auth
        assert s.get(api.url + "/a", timeout=10).status_code == 200  # miss: token()
        assert s.get(api.url + "/b", timeout=10).status_code == 200  # memory
        clock.advance(3600 - 29)  # 29 s left, inside the 30 s window: refreshed
        assert s.get(api.url + "/c", timeout=10).status_code == 200
        source.invalidate()  # memory emptied: the shortcut must not serve the old token
        assert s.get(api.url + "/d", timeout=10).status_code == 200
    assert [x.authorization for x in api.seen] == [
        "Bearer at-1", "Bearer at-1", "Bearer at-2", "Bearer at-3"]
    assert fake_idp.counts["refresh"] == 3


async def test_50_concurrent_async_requests_during_expiry_make_one_refresh(
    source: OAuthTokenSource, api: ProtectedAPI, fake_idp: FakeProvider, clock: FakeClock
) -> None:
    auth = OIDCAuth(source)
    async with httpx.AsyncClient(auth=auth, timeout=10) as c:
        assert (await c.get(api.url + "/warm")).status_code == 200
        clock.advance(3600)  # expired
        responses = await asyncio.gather(*(c.get(api.url + f"/r{i}") for i in range(50)))
    assert [r.status_code for r in responses] == [200] * 50
    assert fake_idp.counts["refresh"] == 2
    assert {s.authorization for s in api.seen[1:]} == {"Bearer at-2"}


def test_import_oauth_auth_does_not_import_http_stacks() -> None:
    import subprocess
    import sys

    code = (
        "import sys, oauth_auth; from oauth_auth import OAuthTokenSource, OIDCParams;"
        "print(sorted(m for m in ('requests','httpx','authlib','keyring','joserfc')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_oidcauth_is_both_auth_types(source: OAuthTokenSource) -> None:
    import requests.auth

    auth = OIDCAuth(source)
    assert isinstance(auth, requests.auth.AuthBase)
    assert isinstance(auth, httpx.Auth)
    with pytest.raises(TypeError):
        OIDCAuth(object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (401, [], True),
        (401, ["Bearer"], True),
        (401, ['Bearer realm="x", error="invalid_token"'], True),
        (401, ['Bearer error="insufficient_scope", scope="a b"'], False),
        (401, ['Basic realm="x", Bearer error="insufficient_scope"'], False),
        (401, ['Basic realm="x", Bearer error="invalid_request"'], True),
        (401, ['Bearer error="token_expired"'], True),  # not RFC 6750, but seen in the wild
        (401, ['Bearer error="invalid_token", Bearer error="insufficient_scope"'], False),
        (401, ['Basic realm="x"'], True),
        (403, [], False),
        (500, [], False),
        (401, ['Bearer error="invalid_token", error_description="a \\"quoted\\" thing"'], True),
    ],
)
def test_retry_decision(status: int, headers: list[str], expected: bool) -> None:
    assert should_retry_401(status, headers) is expected


def test_challenge_parser_reads_quoted_values() -> None:
    (c,) = parse_bearer_challenges(['Bearer realm="a, b", error="invalid_token", scope="x"'])
    assert c.params == {"realm": "a, b", "error": "invalid_token", "scope": "x"}
    assert parse_bearer_challenges(["garbage ===", ""]) == []


def test_streaming_responses_work_and_the_401_retry_still_happens(
    source: OAuthTokenSource, api: ProtectedAPI
) -> None:
    api.rejected_tokens.add("at-1")
    with requests.Session() as s:
        s.auth = OIDCAuth(source)
        with s.get(api.url + "/stream", stream=True, timeout=10) as r:
            body = b"".join(r.iter_content(4))
        assert r.status_code == 200
        assert json.loads(body)["path"] == "/stream"
    with httpx.Client(auth=OIDCAuth(source)) as c, c.stream("GET", api.url + "/s2") as resp:
        assert resp.status_code == 200
        assert json.loads(resp.read())["path"] == "/s2"
    assert [s.authorization for s in api.seen] == ["Bearer at-1", "Bearer at-2", "Bearer at-2"]
