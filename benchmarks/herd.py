"""Item 3: the herd. 64 threads, then 1,000 asyncio tasks, ask for a token at expiry.

Every contender starts from the same state: a real session at the local provider (login
through the bench's HTTP browser, rotation of refresh tokens on, reuse detection on), an
access token that has expired and a valid refresh token. Then all callers are released
at once, each asking for a token through the library's own per-request path (its auth
hook, or the call its client makes before each request). The provider's counters are
the referee: refresh requests that succeeded, `invalid_grant` answers, logins. After the
herd, the refresh token the library now holds is introspected: is the session alive?

Peers are configured the way their documentation says, for a public client where they
can (authlib, requests-oauth2client, httpx-auth) and a confidential client
(client_secret_post) for google-auth, whose refresh requires a secret.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import requests

from benchmarks._common import (
    CONFIDENTIAL_CLIENT_ID,
    CONFIDENTIAL_CLIENT_SECRET,
    introspect_active,
    login,
)
from tests.support.idp import refresh_count

THREADS = 64
TASKS = 1000
DEADLINE = 90.0  # seconds any one herd may take before it is abandoned


class BrowserLoginAttempted(RuntimeError):
    """Raised by the stub that replaces httpx-auth's browser login in the herd."""


@dataclass
class Contender:
    """One library set up at expiry: `call()` (threads) or `acall()` (tasks) asks once."""

    name: str
    call: Callable[[], Any] | None = None
    acall: Callable[[], Any] | None = None
    held_refresh_token: Callable[[], str | None] = lambda: None
    logins: Callable[[], int] = lambda: 0
    cleanup: Callable[[], None] = lambda: None
    notes: list[str] = field(default_factory=list)


@dataclass
class HerdResult:
    name: str
    mode: str
    callers: int
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    refresh_ok: int = 0
    invalid_grant: int = 0
    other_token_requests: int = 0
    logins_started: int = 0
    distinct_tokens: int = 0
    served_live: int = 0  # callers whose token still works after the herd
    wall_s: float = 0.0
    loop_stall_s: float | None = None
    session_alive: bool | None = None
    notes: str = ""
    skipped: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _expired_at() -> int:
    return int(time.time()) - 60


def _url(idp: Any) -> str:
    return idp.issuer + "/api"


# ---------------------------------------------------------------------- contenders


def oauth_auth(idp: Any, tokens: dict[str, Any], tmp: Path, mode: str) -> Contender:
    """A source that held a token which has now expired (its clock jumps an hour)."""
    from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCAuth, OIDCParams

    offset = [0.0]
    store = MemorySecrets({"HERD": tokens["refresh_token"]})
    source = OAuthTokenSource(
        OIDCParams(idp.issuer, idp.client_id), key_provider=lambda: "HERD",
        secrets_provider=store, lock_dir=tmp / "locks",
        clock=lambda: time.time() + offset[0])
    source.token()  # one refresh: now a token is in memory and in tier 2
    offset[0] = 3600.0  # ...and it has expired (tier 2's copy too)
    auth = OIDCAuth(source)

    def call() -> str:
        request = requests.Request("GET", _url(idp)).prepare()
        auth(request)
        return request.headers["Authorization"]

    async def acall() -> str:
        request = httpx.Request("GET", _url(idp))
        flow = auth.async_auth_flow(request)
        sent = await flow.__anext__()
        await flow.aclose()
        return sent.headers["Authorization"]

    return Contender("oauth-auth (OIDCAuth on OAuthTokenSource)", call, acall,
                     held_refresh_token=lambda: store.get_secret("HERD"),
                     cleanup=source.close)


def authlib_session(idp: Any, tokens: dict[str, Any], tmp: Path, mode: str) -> Contender:
    from authlib.integrations.requests_client import OAuth2Session

    token = {**tokens, "expires_at": _expired_at()}
    token.pop("expires_in", None)
    updates: list[Any] = []
    session = OAuth2Session(idp.client_id, token=token, token_endpoint=idp.token_endpoint,
                            token_endpoint_auth_method="none",
                            update_token=lambda t, **kw: updates.append(t))

    def call() -> str:
        request = requests.Request("GET", _url(idp)).prepare()
        session.token_auth(request)
        return str(request.headers["Authorization"])

    return Contender("authlib OAuth2Session (requests)", call,
                     held_refresh_token=lambda: session.token.get("refresh_token"),
                     cleanup=session.close)


def authlib_async(idp: Any, tokens: dict[str, Any], tmp: Path, mode: str) -> Contender:
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    token = {**tokens, "expires_at": _expired_at()}
    token.pop("expires_in", None)
    holder: dict[str, Any] = {}

    def client() -> Any:  # created inside the event loop that uses it
        if "client" not in holder:
            holder["client"] = AsyncOAuth2Client(
                idp.client_id, token=token, token_endpoint=idp.token_endpoint,
                token_endpoint_auth_method="none")
        return holder["client"]

    async def acall() -> str:
        c = client()
        await c.ensure_active_token(c.token)  # what AsyncOAuth2Client.request does first
        request = httpx.Request("GET", _url(idp))
        flow = c.token_auth.async_auth_flow(request)
        sent = await flow.__anext__()
        await flow.aclose()
        return sent.headers["Authorization"]

    def held() -> str | None:
        c = holder.get("client")
        return c.token.get("refresh_token") if c is not None else None

    return Contender("authlib AsyncOAuth2Client (httpx)", acall=acall, held_refresh_token=held)


def requests_oauth2client(idp: Any, tokens: dict[str, Any], tmp: Path, mode: str) -> Contender:
    from requests_oauth2client import BearerToken, OAuth2AccessTokenAuth, OAuth2Client

    client = OAuth2Client(token_endpoint=idp.token_endpoint, client_id=idp.client_id,
                          testing=True)  # testing=True: it refuses http:// endpoints
    expired = datetime.now(timezone.utc) - timedelta(seconds=60)
    auth = OAuth2AccessTokenAuth(client, BearerToken(
        tokens["access_token"], expires_at=expired, refresh_token=tokens["refresh_token"]))

    def call() -> str:
        request = requests.Request("GET", _url(idp)).prepare()
        auth(request)
        return str(request.headers["Authorization"])

    def held() -> str | None:
        return auth.token.refresh_token if auth.token is not None else None

    return Contender("requests-oauth2client OAuth2AccessTokenAuth", call,
                     held_refresh_token=held)


def google_auth(idp: Any, tokens: dict[str, Any], tmp: Path, mode: str) -> Contender:
    import google.auth.transport.requests
    import google.oauth2.credentials

    expired = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=60)
    creds = google.oauth2.credentials.Credentials(
        tokens["access_token"], refresh_token=tokens["refresh_token"],
        token_uri=idp.token_endpoint, client_id=CONFIDENTIAL_CLIENT_ID,
        client_secret=CONFIDENTIAL_CLIENT_SECRET, expiry=expired)
    session = requests.Session()
    transport = google.auth.transport.requests.Request(session)

    def call() -> str:
        headers: dict[str, str] = {}
        creds.before_request(transport, "GET", _url(idp), headers)  # AuthorizedSession's
        return headers["authorization"]

    return Contender("google-auth Credentials (AuthorizedSession)", call,
                     held_refresh_token=lambda: creds.refresh_token, cleanup=session.close,
                     notes=["confidential client: Credentials.refresh requires client_secret"])


def httpx_auth(idp: Any, tokens: dict[str, Any], tmp: Path, mode: str) -> Contender:
    from httpx_auth import OAuth2, OAuth2AuthorizationCodePKCE

    auth = OAuth2AuthorizationCodePKCE(idp.authorization_endpoint, idp.token_endpoint,
                                       client_id=idp.client_id,
                                       redirect_uri_port=8666, redirect_uri_endpoint="callback")
    logins = [0]
    lock = threading.Lock()

    def stub_browser_login() -> Any:
        # httpx-auth would start a loopback server and open a browser here.
        with lock:
            logins[0] += 1
        raise BrowserLoginAttempted("httpx-auth started a browser login")

    auth.request_new_token = stub_browser_login  # type: ignore[method-assign]
    # Its documented way to reuse a session: the token cache, here holding the expired
    # access token with its refresh token.
    OAuth2.token_cache._add_token(auth.state, tokens["access_token"], _expired_at(),
                                  tokens["refresh_token"])

    def call() -> str:
        request = httpx.Request("GET", _url(idp))
        flow = auth.sync_auth_flow(request)
        sent = next(flow)
        flow.close()
        return sent.headers["Authorization"]

    async def acall() -> str:
        request = httpx.Request("GET", _url(idp))
        flow = auth.async_auth_flow(request)
        sent = await flow.__anext__()
        await flow.aclose()
        return sent.headers["Authorization"]

    def held() -> str | None:
        entry = OAuth2.token_cache.tokens.get(auth.state)
        return entry[2] if entry and len(entry) > 2 else None

    def cleanup() -> None:
        OAuth2.token_cache.tokens.pop(auth.state, None)

    return Contender("httpx-auth OAuth2AuthorizationCodePKCE (token cache)", call, acall,
                     held_refresh_token=held, logins=lambda: logins[0], cleanup=cleanup,
                     notes=["browser login stubbed: counted, then raises"])


SETUPS: list[tuple[Callable[..., Contender], bool]] = [
    # (factory, needs the confidential client)
    (oauth_auth, False),
    (authlib_session, False),
    (authlib_async, False),
    (requests_oauth2client, False),
    (google_auth, True),
    (httpx_auth, False),
]

NOT_CONFIGURED = {
    "threads": {
        "msal PublicClientApplication": "msal needs an https authority: canonicalize() refuses"
        " the bench's http://127.0.0.1 provider; it also has no per-request auth hook",
    },
    "tasks": {
        "requests-oauth2client": "no asyncio API (requests only)",
        "google-auth": "its asyncio credentials need the aiohttp transport, not httpx",
        "msal": "no asyncio API; and see threads",
    },
}


# ---------------------------------------------------------------------- the herd


def _herd_threads(contender: Contender, n: int) -> tuple[list[Any], float]:
    assert contender.call is not None
    go = threading.Event()
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        go.wait(DEADLINE)
        try:
            results[i] = contender.call()  # type: ignore[misc]
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    start = time.perf_counter()
    go.set()
    deadline = time.monotonic() + DEADLINE
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    wall = time.perf_counter() - start
    for i, t in enumerate(threads):
        if t.is_alive():
            results[i] = TimeoutError("still running at the deadline")
    return results, wall


def _herd_tasks(contender: Contender, n: int) -> tuple[list[Any], float, float]:
    assert contender.acall is not None

    async def main() -> tuple[list[Any], float, float]:
        stall = [0.0]
        stop = asyncio.Event()

        async def heartbeat() -> None:
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                stall[0] = max(stall[0], now - last - 0.001)
                last = now

        beat = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.01)
        start = time.perf_counter()
        gathered = asyncio.gather(*(contender.acall() for _ in range(n)),  # type: ignore[misc]
                                  return_exceptions=True)
        try:
            results = list(await asyncio.wait_for(gathered, DEADLINE))
        except asyncio.TimeoutError:
            results = [TimeoutError("still running at the deadline")] * n
        wall = time.perf_counter() - start
        stop.set()
        await beat
        return results, wall, stall[0]

    return asyncio.run(main())


def run_one(idp: Any, factory: Callable[..., Contender], confidential: bool, mode: str,
            tmp: Path) -> HerdResult | None:
    if confidential:
        tokens = login(idp, client_id=CONFIDENTIAL_CLIENT_ID,
                       client_secret=CONFIDENTIAL_CLIENT_SECRET)
    else:
        tokens = login(idp)
    contender = factory(idp, tokens, tmp, mode)
    if (mode == "threads" and contender.call is None) or (
            mode == "tasks" and contender.acall is None):
        contender.cleanup()
        return None
    n = THREADS if mode == "threads" else TASKS
    idp.reset_counts()
    stall = None
    try:
        if mode == "threads":
            results, wall = _herd_threads(contender, n)
        else:
            results, wall, stall = _herd_tasks(contender, n)
        counts = idp.counts()
        result = HerdResult(contender.name, mode, n, wall_s=wall, loop_stall_s=stall)
        errors: Counter[str] = Counter()
        headers = set()
        for r in results:
            if isinstance(r, BaseException):
                errors[type(r).__name__] += 1
            else:
                result.ok += 1
                headers.add(r)
        result.errors = dict(errors)
        result.distinct_tokens = len(headers)
        live = {h: introspect_active(idp, h.split(" ", 1)[-1]) for h in headers}
        result.served_live = sum(1 for r in results
                                 if not isinstance(r, BaseException) and live[r])
        result.refresh_ok = refresh_count(counts, "ok")
        result.invalid_grant = refresh_count(counts, "invalid_grant")
        by_grant = counts.get("token", {})
        result.other_token_requests = sum(
            n for grant, outcomes in by_grant.items() for outcome, n in outcomes.items()
            if not (grant == "refresh_token" and outcome in ("ok", "invalid_grant")))
        result.logins_started = contender.logins() + int(counts.get("authorization", 0))
        held = contender.held_refresh_token()
        result.session_alive = bool(held) and introspect_active(idp, held)
        result.notes = "; ".join(contender.notes)
        return result
    finally:
        contender.cleanup()


def run(idp: Any, reps: int = 3, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every contender in both modes against the provider `idp` (rotation on), `reps`
    times each (a fresh session every time: thread timing varies from run to run)."""
    import logging

    logging.getLogger("oauth_auth").setLevel(logging.ERROR)  # the herd logs by design
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="oauth-auth-herd-") as tmp:
        for mode in ("threads", "tasks"):
            for factory, confidential in SETUPS:
                runs: list[HerdResult] = []
                for _ in range(reps):
                    result = run_one(idp, factory, confidential, mode, Path(tmp))
                    if result is None:
                        break
                    runs.append(result)
                if not runs:
                    continue
                summary = summarize(runs)
                out.append(summary)
                log(f"  [3] {mode:7s} {summary['name']:55s} refresh ok"
                    f" {summary['refresh_ok']:>7s}  invalid_grant {summary['invalid_grant']:>7s}"
                    f"  logins {summary['logins_started']:>7s}  served {summary['ok']:>9s},"
                    f" still valid {summary['served_live']:>9s}/{summary['callers']}  alive"
                    f" {summary['session_alive']}  {summary['wall_ms']} ms")
    return {"reps": reps, "results": out, "not_configured": NOT_CONFIGURED}


def _span(values: list[int]) -> str:
    """"3" when every run agrees, else "min-max"."""
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def summarize(runs: list[HerdResult]) -> dict[str, Any]:
    """One row for the runs of a contender: ranges of counts, sessions alive k/n."""
    first = runs[0]
    errors: Counter[str] = Counter()
    for r in runs:
        errors.update(r.errors)
    walls = sorted(r.wall_s for r in runs)
    stalls = sorted(r.loop_stall_s for r in runs if r.loop_stall_s is not None)
    return {
        "name": first.name, "mode": first.mode, "callers": first.callers, "reps": len(runs),
        "ok": _span([r.ok for r in runs]),
        "served_live": _span([r.served_live for r in runs]),
        "refresh_ok": _span([r.refresh_ok for r in runs]),
        "invalid_grant": _span([r.invalid_grant for r in runs]),
        "logins_started": _span([r.logins_started for r in runs]),
        "other_token_requests": _span([r.other_token_requests for r in runs]),
        "distinct_tokens": _span([r.distinct_tokens for r in runs]),
        "session_alive": f"{sum(bool(r.session_alive) for r in runs)}/{len(runs)}",
        "wall_ms": f"{walls[len(walls) // 2] * 1e3:.0f}",
        "loop_stall_ms": f"{stalls[len(stalls) // 2] * 1e3:.0f}" if stalls else "-",
        "errors": dict(errors),  # summed over the runs
        "notes": first.notes,
        "runs": [r.as_dict() for r in runs],
    }


if __name__ == "__main__":
    import warnings

    from benchmarks._common import start_provider

    warnings.simplefilter("ignore", DeprecationWarning)
    with start_provider() as provider:
        run(provider)
