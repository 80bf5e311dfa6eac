"""Item 1: the per-request cost of the auth hook with a token in memory.

Each contender is driven the way its HTTP client drives it, and nothing else is timed:

- requests: `auth(prepared_request)`, then the response hooks it registered are dispatched
  with a 200 response and the keyword arguments `Session.send` passes (what it does), then
  the hook list is emptied again;
- httpx (sync and async): the auth flow is started, its request taken, a 200 response
  sent back, until the flow ends (what `Client._send_handling_auth` does); for authlib,
  whose clients check the token before each request, `ensure_active_token` too;
- google-auth: `credentials.before_request(...)`, what `AuthorizedSession.request` calls.

The request goes to an https URL, as an API's does: a plain-http URL also costs
`OIDCAuth` its loopback check (RFC 6750 wants TLS; the host's verdict is remembered per
origin, so that is a prefix test and two cache reads per request).

The floor is a bare auth that only sets the header. Contenders are interleaved, in a new
random order in every run, and every figure is the median over runs of the per-call time.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import requests
import requests.auth
from requests.hooks import dispatch_hook

from benchmarks._common import Stat

TOKEN = "bench-access-token-" + "x" * 40
URL = "https://api.example.test/data"  # never contacted: the hooks run, nothing is sent
ISSUER = "http://127.0.0.1:9"
#: What `Session.send` passes to `dispatch_hook("response", ...)` besides the response.
SEND_KWARGS: dict[str, Any] = {"timeout": None, "verify": True, "proxies": {}, "stream": False,
                               "cert": None}


class FloorRequestsAuth(requests.auth.AuthBase):
    """The floor for requests: set the header, nothing else."""

    def __init__(self, token: str) -> None:
        self.value = f"Bearer {token}"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self.value
        return r


class FloorHttpxAuth(httpx.Auth):
    """The floor for httpx: set the header in the flow, nothing else."""

    def __init__(self, token: str) -> None:
        self.value = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["Authorization"] = self.value
        yield request


def oauth_auth_source() -> Any:
    """A token source holding a token in memory (read once from a tier-2 entry)."""
    from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCParams

    expiry = (datetime.now(timezone.utc) + timedelta(hours=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    store = MemorySecrets({"BENCH_AT": f"{TOKEN}|{expiry}"})
    source = OAuthTokenSource(OIDCParams(ISSUER, "bench"), key_provider=lambda: "BENCH",
                              secrets_provider=store)
    assert source.token() == TOKEN
    return source


def _authlib_token() -> dict[str, Any]:
    return {"access_token": TOKEN, "token_type": "Bearer", "refresh_token": "rt",
            "expires_at": int(time.time()) + 36000}


# ---------------------------------------------------------------------- contenders


def requests_contenders() -> dict[str, Callable[[requests.PreparedRequest], Any]]:
    """name -> callable(prepared) applying the auth as requests would."""
    from oauth_auth import OIDCAuth

    out: dict[str, Callable[[requests.PreparedRequest], Any]] = {
        "floor (set header)": FloorRequestsAuth(TOKEN),
        "oauth-auth OIDCAuth": OIDCAuth(oauth_auth_source()),
    }
    from authlib.integrations.requests_client import OAuth2Session

    session = OAuth2Session("bench", token=_authlib_token(), token_endpoint=ISSUER + "/token",
                            token_endpoint_auth_method="none")
    out["authlib OAuth2Session.token_auth"] = session.token_auth

    from requests_oauth2client import BearerToken, OAuth2AccessTokenAuth, OAuth2Client

    client = OAuth2Client(token_endpoint=ISSUER + "/token", client_id="bench", testing=True)
    out["requests-oauth2client OAuth2AccessTokenAuth"] = OAuth2AccessTokenAuth(
        client, BearerToken(TOKEN, expires_in=36000, refresh_token="rt"))

    import google.auth.transport.requests
    import google.oauth2.credentials

    creds = google.oauth2.credentials.Credentials(
        TOKEN, refresh_token="rt", token_uri=ISSUER + "/token", client_id="bench",
        client_secret="s", expiry=datetime.now(timezone.utc).replace(tzinfo=None)
        + timedelta(hours=10))
    auth_request = google.auth.transport.requests.Request()

    def google_before_request(r: requests.PreparedRequest) -> requests.PreparedRequest:
        creds.before_request(auth_request, r.method, r.url, r.headers)
        return r

    out["google-auth before_request (AuthorizedSession)"] = google_before_request
    return out


def httpx_contenders() -> dict[str, Callable[[httpx.Request], Any]]:
    """name -> callable(request) returning a started auth flow generator (sync)."""
    from oauth_auth import OIDCAuth

    floor = FloorHttpxAuth(TOKEN)
    ours = OIDCAuth(oauth_auth_source())
    out: dict[str, Callable[[httpx.Request], Any]] = {
        "floor (set header)": floor.sync_auth_flow,
        "oauth-auth OIDCAuth": ours.sync_auth_flow,
    }
    from authlib.integrations.httpx_client import OAuth2Client

    client = OAuth2Client("bench", token=_authlib_token(), token_endpoint=ISSUER + "/token",
                          token_endpoint_auth_method="none")

    def authlib_flow(request: httpx.Request) -> Any:
        client.ensure_active_token(client.token)  # what OAuth2Client.request does first
        return client.token_auth.sync_auth_flow(request)

    out["authlib OAuth2Client (ensure_active_token + OAuth2Auth)"] = authlib_flow

    from httpx_auth import OAuth2, OAuth2AuthorizationCodePKCE

    pkce = OAuth2AuthorizationCodePKCE(ISSUER + "/auth", ISSUER + "/token", client_id="bench")
    OAuth2.token_cache._add_token(pkce.state, TOKEN, time.time() + 36000, "rt")
    out["httpx-auth OAuth2AuthorizationCodePKCE (cached)"] = pkce.sync_auth_flow
    return out


def async_contenders() -> dict[str, Callable[[httpx.Request], Any]]:
    """name -> async callable(request) returning a started async auth flow."""
    from oauth_auth import OIDCAuth

    floor = FloorHttpxAuth(TOKEN)
    ours = OIDCAuth(oauth_auth_source())
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    client = AsyncOAuth2Client("bench", token=_authlib_token(),
                               token_endpoint=ISSUER + "/token",
                               token_endpoint_auth_method="none")

    async def floor_flow(request: httpx.Request) -> Any:
        return floor.async_auth_flow(request)

    async def ours_flow(request: httpx.Request) -> Any:
        return ours.async_auth_flow(request)

    async def authlib_flow(request: httpx.Request) -> Any:
        await client.ensure_active_token(client.token)
        return client.token_auth.async_auth_flow(request)

    return {
        "floor (set header)": floor_flow,
        "oauth-auth OIDCAuth": ours_flow,
        "authlib AsyncOAuth2Client (ensure_active_token + OAuth2Auth)": authlib_flow,
    }


# ---------------------------------------------------------------------- timing loops


def time_requests(auth: Callable[[requests.PreparedRequest], Any], calls: int) -> float:
    req = requests.Request("GET", URL).prepare()
    resp = requests.Response()
    resp.status_code = 200
    resp.request = req
    resp.url = URL
    hooks = req.hooks
    response_hooks = hooks["response"]
    clear = response_hooks.clear
    kwargs = SEND_KWARGS
    perf = time.perf_counter
    start = perf()
    for _ in range(calls):
        auth(req)
        dispatch_hook("response", hooks, resp, **kwargs)
        clear()
    return (perf() - start) / calls


def _time_httpx(flow_of: Callable[[httpx.Request], Any], calls: int) -> float:
    req = httpx.Request("GET", URL)
    resp = httpx.Response(200, request=req)
    perf = time.perf_counter
    start = perf()
    for _ in range(calls):
        flow = flow_of(req)
        flow.__next__()
        try:  # noqa: SIM105 - contextlib.suppress would add its own cost to the loop
            flow.send(resp)
        except StopIteration:
            pass
    return (perf() - start) / calls


def _time_async(flow_of: Callable[[httpx.Request], Any], calls: int) -> float:
    async def run() -> float:
        req = httpx.Request("GET", URL)
        resp = httpx.Response(200, request=req)
        perf = time.perf_counter
        start = perf()
        for _ in range(calls):
            flow = await flow_of(req)
            await flow.__anext__()
            try:  # noqa: SIM105 - contextlib.suppress would add its own cost to the loop
                await flow.asend(resp)
            except StopAsyncIteration:
                pass
        return (perf() - start) / calls

    return asyncio.run(run())


def _check_header(group: str, name: str, contender: Callable[..., Any]) -> None:
    """Every contender must really send `Bearer <TOKEN>` (else the comparison is void)."""
    if group == "requests":
        req = requests.Request("GET", URL).prepare()
        contender(req)
        value = req.headers.get("Authorization")
    elif group == "httpx":
        hreq = httpx.Request("GET", URL)
        sent = next(contender(hreq))
        value = sent.headers.get("Authorization")
    else:
        async def one() -> str | None:
            hreq = httpx.Request("GET", URL)
            flow = await contender(hreq)
            sent = await flow.__anext__()
            await flow.aclose()
            return sent.headers.get("Authorization")

        value = asyncio.run(one())
    if value != f"Bearer {TOKEN}":
        raise AssertionError(f"{group}/{name} sent {value!r}")


GROUPS: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[Any, int], float]]] = {
    "requests": (requests_contenders, time_requests),
    "httpx": (httpx_contenders, _time_httpx),
    "httpx async": (async_contenders, _time_async),
}


def run(runs: int = 20, calls: int = 20_000, seed: int = 8,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure every group: {"stats": {group: {contender: Stat of seconds per call}},
    "paired": {group: {"oauth-auth ...": {other: Stat of per-run ratios}}}}."""
    rng = random.Random(seed)
    results: dict[str, Any] = {}
    paired: dict[str, Any] = {}
    for group, (make, timer) in GROUPS.items():
        contenders = make()
        for name, contender in contenders.items():
            _check_header(group, name, contender)
            timer(contender, min(calls, 2000))  # warm-up
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(runs):
            order = list(contenders)
            rng.shuffle(order)
            for name in order:
                samples[name].append(timer(contenders[name], calls))
        results[group] = {name: Stat.of(values) for name, values in samples.items()}
        # Paired ratios: each run's contenders ran back to back, under the same load.
        paired[group] = {
            name: {other: Stat.of([a / b for a, b in zip(values, samples[other], strict=True)])
                   for other in samples}
            for name, values in samples.items() if name.startswith("oauth-auth")
        }
        floor = results[group]["floor (set header)"].median
        for name, stat in results[group].items():
            log(f"  [1] {group:11s} {name:60s} {stat.median * 1e6:7.2f} µs"
                f"  x{stat.median / floor:5.2f}")
    return {"stats": results, "paired": paired}


if __name__ == "__main__":
    run(runs=5, calls=5000)
