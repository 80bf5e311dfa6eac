"""OIDCAuth: one object that is a requests auth and an httpx auth (sync and async).

Every driver has the same straight-line shape, which is the retry limit: send with the
token, and if `_should_retry` says the 401 deserves it, get a fresh token through
`_replacement` (which invalidates exactly the token that was sent), send once more, stop.
No counter, no loop. The decision and the replacement are written once; the drivers
(requests through a response hook, the way requests' own digest auth works; httpx sync;
httpx async) only move requests and responses.

The hot path (a token in memory, a 2xx answer) costs a token lookup, one header and, for
requests, one hook: everything the retry needs is computed only when a 401 arrives.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import httpx
import requests
import requests.auth

from ._protocol import should_retry_401

if TYPE_CHECKING:
    from requests.models import PreparedRequest, Response

__all__ = ["OIDCAuth"]


class _Response(Protocol):
    @property
    def status_code(self) -> int: ...


_R = TypeVar("_R", bound=_Response)
_S = TypeVar("_S")


class TokenSourceLike(Protocol):
    """What OIDCAuth needs from a token source (OAuthTokenSource provides it)."""

    def token(self) -> str: ...

    async def atoken(self) -> str: ...

    def invalidate(self, token: str | None = None) -> None: ...


def _should_retry(
    response: _R,
    replayable: bool,
    sent: _S,
    sent_url: Callable[[_S], str],
    answer_url: Callable[[_R], str],
    challenges: Callable[[_R], Iterable[str]],
) -> bool:
    """Whether a response deserves the one retry with a fresh token.

    A 401 (not a 403), for a request whose body can be sent again, answered by the origin
    the token was sent to (not another host reached by a redirect), whose Bearer challenge
    names no error other than `invalid_token`. The accessors read the response only for a
    401, so a 2xx costs one comparison.
    """
    return (
        response.status_code == 401
        and replayable
        and _origin(answer_url(response)) == _origin(sent_url(sent))
        and should_retry_401(401, challenges(response))
    )


class OIDCAuth(requests.auth.AuthBase, httpx.Auth):
    """Bearer auth for requests and httpx, with one retry on 401.

    Use it as `session.auth = OIDCAuth(source)`, `httpx.Client(auth=OIDCAuth(source))`
    or `httpx.AsyncClient(auth=OIDCAuth(source))`; one instance may serve all three at
    once. Safe for concurrent use from threads and tasks: it keeps no per-request state on
    itself and holds no lock while a request is in flight.

    A 401 is retried once with a fresh token, unless its Bearer challenge names an error
    other than `invalid_token` (such as `insufficient_scope`), the body cannot be replayed
    (a generator or consumed stream), the 401 came from another origin after a redirect,
    or the source has no token newer than the refused one. 403 is never retried. Errors of
    the token source (login required, provider down) reach the caller as the library's
    typed errors.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(self, source: TokenSourceLike) -> None:
        if not callable(getattr(source, "token", None)):
            raise TypeError("OIDCAuth needs a token source with token() and atoken()")
        self.source = source
        self._ainvalidate = getattr(source, "ainvalidate", None)

    def __repr__(self) -> str:
        return f"OIDCAuth({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OIDCAuth) and other.source is self.source

    def __hash__(self) -> int:
        return id(self.source)

    # ------------------------------------------------------------ the shared replacement

    def _replacement(self, refused: str) -> str | None:
        """Invalidate the refused token; a fresh one, or None if the source has no other."""
        self.source.invalidate(refused)
        fresh = self.source.token()
        return None if fresh == refused else fresh

    async def _areplacement(self, refused: str) -> str | None:
        """`_replacement` for asyncio (the source's blocking work runs off the loop)."""
        if self._ainvalidate is not None:
            await self._ainvalidate(refused)
        else:
            self.source.invalidate(refused)
        fresh = await self.source.atoken()
        return None if fresh == refused else fresh

    # ------------------------------------------------------------ requests

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        """requests: add the header and a hook that answers a 401 once."""
        token = self.source.token()
        r.headers["Authorization"] = f"Bearer {token}"
        body: Any = r.body
        if body is None or isinstance(body, (bytes, str)):
            hook = _RequestsRetry(self, token, r.url or "", True, None)
        else:
            position = _body_position(body)
            hook = _RequestsRetry(self, token, r.url or "", position is not None, position)
        r.hooks["response"].append(hook)
        return r

    # ------------------------------------------------------------ httpx

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """httpx.Client: send; on a retry-worthy 401, once more with a fresh token."""
        token = self.source.token()
        rewind = _httpx_rewinder(request)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if not _httpx_should_retry(request, response, rewind):
            return
        fresh = self._replacement(token)
        if fresh is not None:
            yield _httpx_resend(request, rewind, fresh)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """httpx.AsyncClient: the same shape with `atoken()`; nothing blocks the loop."""
        token = await self.source.atoken()
        rewind = _httpx_rewinder(request)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if not _httpx_should_retry(request, response, rewind):
            return
        fresh = await self._areplacement(token)
        if fresh is not None:
            yield _httpx_resend(request, rewind, fresh)


class _RequestsRetry:
    """The response hook of one requests request: at most one retry, ever.

    requests copies hooks onto redirected requests, so the hook may run several times for
    one call; `used` makes the first response the only one it acts on.
    """

    __slots__ = ("auth", "position", "replayable", "token", "url", "used")

    def __init__(self, auth: OIDCAuth, token: str, url: str, replayable: bool,
                 position: int | None) -> None:
        self.auth = auth
        self.token = token
        self.url = url
        self.replayable = replayable
        self.position = position
        self.used = False

    def __call__(self, response: Response, **kwargs: Any) -> Response:
        if self.used:
            return response
        self.used = True
        if not _should_retry(response, self.replayable, self.url, str, _requests_url,
                             _requests_challenges):
            return response
        fresh = self.auth._replacement(self.token)
        if fresh is None:
            return response
        # Same dance as requests' HTTPDigestAuth.handle_401: drain and release the first
        # response, send a copy through the same adapter, keep the first in history.
        if self.position is not None:
            response.request.body.seek(self.position)  # type: ignore[union-attr]
        response.content  # noqa: B018 - consume the body so the connection can be reused
        response.close()
        retry = response.request.copy()
        retry.headers["Authorization"] = f"Bearer {fresh}"
        retry.hooks = {"response": []}  # the retry is final: no second 401 handling
        _copy_cookies(response, retry)
        second: Response = response.connection.send(retry, **kwargs)
        second.history.append(response)
        second.request = retry
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


def _requests_url(response: Response) -> str:
    return response.request.url or ""


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


def _no_rewind() -> None:
    """The body needs no rewinding (bytes, or a multipart body httpx re-renders)."""


def _httpx_rewinder(request: httpx.Request) -> Callable[[], None] | None:
    """How to replay an httpx request body; None when it cannot be replayed."""
    stream = request.stream
    if type(stream) is httpx.ByteStream or type(stream).__name__ == "MultipartStream":
        return _no_rewind
    inner = getattr(stream, "_stream", None)  # httpx's IteratorByteStream around a file
    if inner is None or not hasattr(inner, "read"):
        return None
    start = _body_position(inner)
    if start is None:
        return None
    return lambda: inner.seek(start)


def _httpx_should_retry(
    request: httpx.Request, response: httpx.Response, rewind: Callable[[], None] | None
) -> bool:
    return _should_retry(response, rewind is not None, request, _httpx_request_url,
                         _httpx_url, _httpx_challenges)


def _httpx_request_url(request: httpx.Request) -> str:
    return str(request.url)


def _httpx_url(response: httpx.Response) -> str:
    return str(response.request.url)


def _httpx_challenges(response: httpx.Response) -> list[str]:
    return response.headers.get_list("www-authenticate")


def _httpx_resend(
    request: httpx.Request, rewind: Callable[[], None] | None, token: str
) -> httpx.Request:
    if rewind is not None:
        rewind()
    request.headers["Authorization"] = f"Bearer {token}"
    return request
