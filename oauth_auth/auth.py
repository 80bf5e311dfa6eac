"""OIDCAuth: one object that is a requests auth and an httpx auth (sync and async).

Every driver has the same straight-line shape, which is the retry limit: send with the
token, and if `_plan` says the 401 (or a 403 asking for more scopes) deserves it, get a
token through `_retry_token` (a fresh one, after invalidating exactly the token that was
sent, or a step-up login's), send once more, stop.
No counter, no loop. The decision and the replacement are written once; the drivers
(requests through a response hook, the way requests' own digest auth works; httpx sync;
httpx async) only move requests and responses.

The hot path (a token in memory, a 2xx answer) costs a token lookup, one header and, for
requests, one hook: everything the retry needs is computed only when a 401 arrives.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import requests
import requests.auth

from ._discovery import is_loopback_host
from ._protocol import should_retry_401, step_up_scopes
from ._scrub import scrubbed
from .errors import ConfigError
from .source import OAuthTokenSource, TokenSourceLike, has_fast_path

if TYPE_CHECKING:
    from requests.models import PreparedRequest, Response

__all__ = ["OIDCAuth"]


#: The answers that may get the one retry: 401 (a fresh token) and 403 (a step-up).
_RETRY_STATUSES = frozenset({401, 403})


def _httpx2_auth_base() -> type:
    """httpx2's `Auth` when httpx2 is installed, else an empty placeholder class.

    httpx2 (httpx's successor, what the MCP Python SDK 2.x builds its HTTP client on) takes
    an `auth=` that is an instance of *its* `Auth` as a flow and wraps any other callable
    as a function auth, which would call the requests hook with an httpx2 request. Being a
    subclass is the only way in; httpx2 is imported only where it is installed.
    """
    if importlib.util.find_spec("httpx2") is None:
        return type("_NoHttpx2", (), {"__slots__": ()})
    import httpx2

    return httpx2.Auth


if TYPE_CHECKING:
    _Httpx2Auth = object
else:
    _Httpx2Auth = _httpx2_auth_base()


class OIDCAuth(requests.auth.AuthBase, httpx.Auth, _Httpx2Auth):
    """Bearer auth for requests and httpx, with one retry on 401.

    Use it as `session.auth = OIDCAuth(source)`, `httpx.Client(auth=OIDCAuth(source))`
    or `httpx.AsyncClient(auth=OIDCAuth(source))`, and, where httpx2 is installed,
    `httpx2.Client` / `httpx2.AsyncClient` the same way (the MCP SDK's client); one
    instance may serve them all at once. Safe for concurrent use from threads and tasks:
    it keeps no per-request state on itself and holds no lock while a request is in
    flight.

    A request to a plain `http://` URL whose host is not a loopback address gets no
    token and raises `ConfigError`, unless `allow_insecure_http=True`.

    A 401 is retried once with a fresh token, unless the source says a fresh token was
    refused moments ago (`reauth_allowed()`, see `OAuthTokenSource`'s
    `reauth_interval`), its Bearer challenge says
    `insufficient_scope`, the body cannot be replayed
    (a generator or consumed stream), or the 401 came from another origin after a
    redirect (the token never goes there). A 403 whose Bearer challenge says
    `insufficient_scope` and names a `scope` is retried once, under the same conditions,
    with the token of a step-up login (`step_up`, by default the source's own
    `step_up(scopes)`, which only an interactive `OAuthTokenSource` performs); every other
    403 is final. Errors of the token source (login required, provider down) reach the
    caller as the library's typed errors.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        source: TokenSourceLike,
        *,
        allow_insecure_http: bool = False,
        step_up: Callable[[Sequence[str]], str | None] | None = None,
    ) -> None:
        if not callable(getattr(source, "token", None)):
            raise TypeError("OIDCAuth needs a token source with token() and atoken()")
        self.source = source
        #: Send the token over plain http to hosts that are not loopback (RFC 6750
        #: section 5.3 requires TLS; only for a network you trust end to end).
        self.allow_insecure_http = allow_insecure_http
        #: What a 403 `insufficient_scope` with a `scope` calls: a login asking for those
        #: scopes too, returning its token, or None when it will not log in.
        self._step_up: Callable[[Sequence[str]], str | None] | None = (
            step_up if step_up is not None else getattr(source, "step_up", None)
        )
        # A source may say a 401 deserves no refresh now, and be told when a fresh token
        # was refused too (OAuthTokenSource.reauth_allowed and reauth_failed).
        self._reauth_allowed: Callable[[], bool] | None = getattr(
            source, "reauth_allowed", None
        )
        self._reauth_failed: Callable[[], None] | None = getattr(source, "reauth_failed", None)
        self._ainvalidate = getattr(source, "ainvalidate", None)
        self._token = source.token  # bound once: the hot path makes no method objects
        self._hook = _shared_requests_hook(self)
        #: (the last token sent on requests, its header value), compared by identity.
        self._header: tuple[str | None, str] = (None, "")
        # requests calls the auth on every request, where one Python call frame is ~4% of
        # the whole cost (benchmarks/hook_profile.py): for a source with the named fast
        # path (an OAuthTokenSource whose token() is not overridden), the drivers read the
        # memory tier themselves, the same tuple and clock `token()` reads first, and
        # call `token()` for everything else.
        self._fast: OAuthTokenSource | None = source if has_fast_path(source) else None

    def __repr__(self) -> str:
        return f"OIDCAuth({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OIDCAuth) and other.source is self.source

    def __hash__(self) -> int:
        return id(self.source)

    # ------------------------------------------------------------ the shared decisions

    def _may_reauth(self) -> bool:
        allowed = self._reauth_allowed
        return allowed is None or bool(allowed())

    def _after_retry(self, status: int) -> None:
        """The retry's answer: a 401 to the fresh token too holds off the next refreshes."""
        if status == 401 and self._reauth_failed is not None:
            self._reauth_failed()

    def _refuse_plain_http(self, host: str | None) -> None:
        """For a plain http request: raise ConfigError when its host is not loopback,
        unless allowed. The drivers call it only for http URLs, so https costs nothing."""
        if not self.allow_insecure_http and not _loopback(host):
            raise ConfigError(
                f"refusing to send a bearer token over plain http to {host!r}: RFC 6750"
                " requires TLS",
                hint="use the https URL, or pass OIDCAuth(..., allow_insecure_http=True) for"
                " a network you trust",
            )


    def _plan(self, status: int, challenges: Iterable[str]) -> tuple[str, ...] | None:
        """What the one retry of a replayable same-origin 401 or 403 needs, if any.

        None: no retry. (): a fresh token, for a 401 (unless its challenge says
        `insufficient_scope`, or a fresh token was refused moments ago). Scopes: a step-up
        login asking for them, for a 403 whose `insufficient_scope` challenge names them,
        when there is a step-up to call.
        """
        if status == 401:
            return () if should_retry_401(status, challenges) and self._may_reauth() else None
        if status != 403 or self._step_up is None:
            return None
        return step_up_scopes(status, challenges) or None

    def _retry_token(self, status: int, challenges: Iterable[str], refused: str) -> str | None:
        """The token for the one retry (see `_plan`), or None for no retry.

        For a 401 the refused token is invalidated first and the request is sent once more
        whatever comes back: an `OAuthTokenSource` never serves a token it was told was
        refused, and a source that has nothing newer gets its answer from the resource
        server, once.
        """
        plan = self._plan(status, challenges)
        if plan is None:
            return None
        if not plan:
            self.source.invalidate(refused)
            return self.source.token()
        step_up = self._step_up  # set whenever _plan gives scopes
        return step_up(plan) if step_up is not None else None

    async def _aretry_token(
        self, status: int, challenges: Iterable[str], refused: str
    ) -> str | None:
        """`_retry_token` for asyncio and trio: the blocking work runs off the loop."""
        plan = self._plan(status, challenges)
        if plan is None:
            return None
        if not plan:
            if self._ainvalidate is not None:
                await self._ainvalidate(refused)
            else:
                self.source.invalidate(refused)
            return await self.source.atoken()
        step_up = self._step_up
        if step_up is None:
            return None
        import anyio.to_thread

        return await anyio.to_thread.run_sync(step_up, plan)

    # ------------------------------------------------------------ requests

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        """requests: add the header and a hook that answers a 401 once."""
        url = r.url
        if url and url[4] == ":" and url.startswith("http:"):  # an index first: https is free
            self._refuse_plain_http(_http_url_host(url))
        fast = self._fast
        if fast is not None:
            access, until = fast.fast_path
            if fast.clock() >= until:
                del access  # not left in this frame's locals if the refresh fails
                access = fast.token()
        else:
            access = self._token()
        header = self._header
        if header[0] is not access:  # a new token: its header is built once, not per request
            header = self._header = (access, f"Bearer {access}")
        r.headers["Authorization"] = header[1]
        body: Any = r.body
        if body is None or isinstance(body, (bytes, str)):
            r.hooks["response"].append(self._hook)  # shared: nothing to remember
        else:
            # A file (rewound to where it starts now) or an iterator (never replayed).
            r.hooks["response"].append(_RequestsRetry(self, _body_position(body)))
        return r

    # ------------------------------------------------------------ httpx

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """httpx.Client: send; on a retry-worthy 401, once more with a fresh token.

        No token is kept in this generator's locals (its frame is in the traceback of
        whatever fails here, and nothing of the library's clears a running frame): the
        one sent is read back from the request.
        """
        url = request.url
        if url.scheme == "http":
            self._refuse_plain_http(url.host)
        fast = self._fast
        if fast is not None:
            access, until = fast.fast_path
            if fast.clock() >= until:
                del access
                access = fast.token()
        else:
            access = self._token()
        # A bytes body (the common case) needs no rewinding: decided without a call.
        rewind = (_no_rewind if type(request.stream).__name__ in _REPLAYABLE_STREAMS
                  else _httpx_rewinder(request))
        request.headers["Authorization"] = f"Bearer {access}"
        del access  # this generator's frame outlives the request
        response = yield request
        if response.status_code not in _RETRY_STATUSES:
            return  # the common case, without a call
        if not _httpx_may_retry(request, response, rewind):
            return
        with scrubbed:
            fresh = self._retry_token(response.status_code,
                                      response.headers.get_list("www-authenticate"),
                                      _sent_token(request))
        if fresh is None:
            return
        second = yield _httpx_resend(request, rewind, fresh)
        self._after_retry(second.status_code)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """httpx.AsyncClient: the same shape with `atoken()`; nothing blocks the loop."""
        url = request.url
        if url.scheme == "http":
            self._refuse_plain_http(url.host)
        # A bytes body (the common case) needs no rewinding: decided without a call.
        rewind = (_no_rewind if type(request.stream).__name__ in _REPLAYABLE_STREAMS
                  else _httpx_rewinder(request))
        fast = self._fast
        if fast is not None:  # the memory tier read here, as the sync drivers do: no await
            access, until = fast.fast_path
            if fast.clock() >= until:
                del access
                access = await fast.atoken()
        else:
            access = await self.source.atoken()
        request.headers["Authorization"] = f"Bearer {access}"
        del access  # this generator's frame outlives the request
        response = yield request
        if response.status_code not in _RETRY_STATUSES:
            return  # the common case, without a call
        if not _httpx_may_retry(request, response, rewind):
            return
        with scrubbed:
            fresh = await self._aretry_token(response.status_code,
                                             response.headers.get_list("www-authenticate"),
                                             _sent_token(request))
        if fresh is None:
            return
        second = yield _httpx_resend(request, rewind, fresh)
        self._after_retry(second.status_code)


def _shared_requests_hook(auth: OIDCAuth) -> Callable[..., Response]:
    """The response hook of every request whose body replays as it is (none, bytes, str).

    requests calls it on every response, so it is shaped for that: a plain function rather
    than a bound method, and the keyword arguments `Session.send` passes as named
    parameters rather than one `**kwargs` dict; together that saves about 0.1 µs per
    request, a tenth of what the hook costs (benchmarks/hook_profile.py). The dict is built
    on a 401 only.
    """

    def hook(
        response: Response,
        timeout: Any = None,
        verify: Any = True,
        proxies: Any = None,
        stream: bool = False,
        cert: Any = None,
        **more: Any,
    ) -> Response:
        if response.status_code not in _RETRY_STATUSES:  # the common case, first
            return response
        kwargs = {"timeout": timeout, "verify": verify, "proxies": proxies, "stream": stream,
                  "cert": cert, **more}
        with scrubbed:
            return _requests_retry(auth, response, None, kwargs)

    return hook


class _RequestsRetry:
    """The response hook of a request whose body is a stream: where a file starts, or
    None for a body that cannot be sent twice (an iterator, an unseekable file)."""

    __slots__ = ("auth", "position")

    def __init__(self, auth: OIDCAuth, position: int | None) -> None:
        self.auth = auth
        self.position = position

    def __call__(self, response: Response, **kwargs: Any) -> Response:
        if response.status_code not in _RETRY_STATUSES:
            return response
        with scrubbed:
            return _requests_retry(self.auth, response, self.position, kwargs)


def _requests_retry(
    auth: OIDCAuth, response: Response, position: int | None, kwargs: dict[str, Any]
) -> Response:
    """Answer a requests 401 or 403: once, through the same adapter, like HTTPDigestAuth.

    requests runs the hook for every response of a redirect chain, so everything is read
    from the request that got this 401, never from the first one: requests strips the
    Authorization header on a cross-origin redirect, and then the 401 is not about our
    token and nothing is sent (a fresh token must never follow a redirect to another
    host); a 301/302/303 may have turned a POST with a file into a GET without a body.
    The retry carries no hook, so this runs at most once per call.
    """
    sent = response.request.headers.get("Authorization") or ""
    if not sent.startswith("Bearer "):
        return response
    body: Any = response.request.body
    rewind = body is not None and not isinstance(body, (bytes, str))
    if rewind and position is None:
        return response  # the body cannot be sent twice
    fresh = auth._retry_token(response.status_code, _requests_challenges(response), sent[7:])
    if fresh is None:
        return response
    # Drain and release the first response, send a copy through the same adapter, keep
    # the first in history.
    if rewind:
        body.seek(position)
    response.content  # noqa: B018 - consume the body so the connection can be reused
    response.close()
    retry = response.request.copy()
    retry.headers["Authorization"] = f"Bearer {fresh}"
    retry.hooks = {"response": []}  # the retry is final: no second 401 handling
    _copy_cookies(response, retry)
    second: Response = response.connection.send(retry, **kwargs)
    second.history.append(response)
    second.request = retry
    auth._after_retry(second.status_code)
    return second


# ---------------------------------------------------------------------- helpers


def _origin(url: str | bytes) -> str:
    """scheme://host:port, lower-cased, for same-origin checks."""
    if isinstance(url, bytes):
        url = url.decode("utf-8", "replace")
    try:
        u = httpx.URL(url)
    except Exception:  # noqa: BLE001 - an unparsable URL is never "the same origin"
        return f"<unparsable {id(url)}>"
    port = u.port or {"http": 80, "https": 443}.get(u.scheme, 0)
    return f"{u.scheme}://{u.host}:{port}"


def _requests_challenges(response: Response) -> list[str]:
    # requests folds repeated headers into one comma-separated value; the challenge
    # parser reads several challenges from one value.
    value = response.headers.get("WWW-Authenticate")
    return [value] if value else []


def _body_position(body: Any) -> int | None:
    """Where a seekable file body starts, so a retry can rewind to it; else None."""
    tell = getattr(body, "tell", None)
    seek = getattr(body, "seek", None)
    if tell is None or seek is None:
        return None
    try:
        seekable = getattr(body, "seekable", lambda: True)()
        return int(tell()) if seekable else None
    except (OSError, ValueError):
        return None


def _copy_cookies(response: Response, retry: PreparedRequest) -> None:
    from requests.cookies import extract_cookies_to_jar

    jar = getattr(retry, "_cookies", None)
    if jar is None:
        return
    extract_cookies_to_jar(jar, response.request, response.raw)  # type: ignore[no-untyped-call]
    retry.prepare_cookies(jar)


#: httpx's and httpx2's request streams that send the same bytes again as they are (bytes
#: content, and multipart bodies, which both re-render from their fields). Matched by name
#: so that httpx2's classes need no import.
_REPLAYABLE_STREAMS = frozenset({"ByteStream", "MultipartStream"})


def _no_rewind() -> None:
    """The body needs no rewinding (bytes, or a multipart body httpx re-renders)."""


@functools.lru_cache(maxsize=256)
def _loopback(host: str | None) -> bool:
    """`is_loopback_host`, remembered: a plain-http request asks it every time, and a
    client talks to few hosts (the verdict is by address, so it never goes stale)."""
    return is_loopback_host(host)


@functools.lru_cache(maxsize=256)
def _origin_host(prefix: str) -> str | None:
    return urlsplit(prefix).hostname


def _http_url_host(url: str) -> str | None:
    """The host of an ``http:`` URL, parsed once per origin rather than once per request:
    everything before the first "/" after the scheme holds the whole authority (which
    ends at the first "/", "?" or "#"), so `urlsplit` of that prefix finds the same host."""
    end = url.find("/", 7)
    return _origin_host(url if end == -1 else url[:end])


def _httpx_rewinder(request: httpx.Request) -> Callable[[], None] | None:
    """How to replay an httpx request body; None when it cannot be replayed."""
    stream = request.stream
    if type(stream).__name__ in _REPLAYABLE_STREAMS:
        return _no_rewind
    inner = getattr(stream, "_stream", None)  # httpx's IteratorByteStream around a file
    if inner is None or not hasattr(inner, "read"):
        return None
    start = _body_position(inner)
    if start is None:
        return None
    return lambda: inner.seek(start)


def _httpx_may_retry(
    request: httpx.Request, response: httpx.Response, rewind: Callable[[], None] | None
) -> bool:
    """Whether a 401 or 403 may get the one retry at all: its body can be sent again,
    and it came from the token's own origin (httpx follows redirects inside one auth
    step, stripping the header across origins, so the answer may come from elsewhere).
    What kind of retry, if any, `OIDCAuth._retry_token` decides."""
    return (
        response.status_code in _RETRY_STATUSES
        and rewind is not None
        and _origin(str(response.request.url)) == _origin(str(request.url))
    )


def _sent_token(request: Any) -> str:
    """The bearer token an httpx (or httpx2) request carries."""
    return str(request.headers.get("Authorization", ""))[len("Bearer "):]


def _httpx_resend(
    request: httpx.Request, rewind: Callable[[], None] | None, token: str
) -> httpx.Request:
    if rewind is not None:
        rewind()
    request.headers["Authorization"] = f"Bearer {token}"
    return request
