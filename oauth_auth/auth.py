"""OIDCAuth: one object that is a requests auth and an httpx auth (sync and async).

The retry-once rule lives in one sans-IO generator, `_bearer_flow`, that yields what it
needs ("a token", "invalidate this token", "send with this token") and receives the
answers. Three small drivers answer it: requests (through a response hook, the way
requests' own digest auth works), httpx sync and httpx async. The flow's shape is the
retry limit: send, on a 401 invalidate the token actually sent, get a new one, send once
more, stop. No counter, no loop.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import requests
import requests.auth

from ._protocol import should_retry_401

if TYPE_CHECKING:
    from requests.models import PreparedRequest, Response

__all__ = ["OIDCAuth"]


class TokenSourceLike(Protocol):
    """What OIDCAuth needs from a token source (OAuthTokenSource provides it)."""

    def token(self) -> str: ...

    async def atoken(self) -> str: ...

    def invalidate(self, token: str | None = None) -> None: ...


# The flow's requests to its driver: ("token", rejected) asks for a token, after
# invalidating `rejected` when it is not empty; ("send", token) asks to send the request
# with that token and report the `_Outcome`.
_TOKEN = "token"
_SEND = "send"

_Op = tuple[str, str]
# What a driver reports after a send: status, WWW-Authenticate values, same origin?
_Outcome = tuple[int, Iterable[str], bool]


def _bearer_flow(replayable: bool) -> Generator[_Op, Any, None]:
    """The retry-once flow, free of I/O: its shape is the retry limit."""
    token: str = yield (_TOKEN, "")
    status, challenges, same_origin = yield (_SEND, token)
    if not (replayable and same_origin and should_retry_401(status, challenges)):
        return
    fresh: str = yield (_TOKEN, token)  # invalidate exactly the token that was refused
    if fresh == token:
        return  # the source has nothing newer: a retry would be refused the same way
    yield (_SEND, fresh)


class _Exchange:
    """One request's run through `_bearer_flow`; `answer()` returns None when it ends."""

    __slots__ = ("_flow",)

    def __init__(self, replayable: bool) -> None:
        self._flow = _bearer_flow(replayable)

    def first(self) -> _Op:
        return next(self._flow)

    def answer(self, value: Any) -> _Op | None:
        try:
            return self._flow.send(value)
        except StopIteration:
            return None


def _bearer(token: str) -> str:
    return f"Bearer {token}"


class OIDCAuth(requests.auth.AuthBase, httpx.Auth):
    """Bearer auth for requests and httpx, with one retry on 401.

    Use it as `session.auth = OIDCAuth(source)`, `httpx.Client(auth=OIDCAuth(source))`
    or `httpx.AsyncClient(auth=OIDCAuth(source))`; one instance may serve all three at
    once. Safe for concurrent use from threads and tasks: it keeps no per-request state on
    itself and holds no lock while a request is in flight.

    A 401 is retried once with a fresh token, unless its Bearer challenge names an error
    other than `invalid_token` (such as `insufficient_scope`), the body cannot be replayed
    (a generator or consumed stream), or the 401 came from another origin after a
    redirect. 403 is never retried. Errors of the token source (login required, provider
    down) reach the caller as the library's typed errors.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(self, source: TokenSourceLike) -> None:
        if not callable(getattr(source, "token", None)):
            raise TypeError("OIDCAuth needs a token source with token() and atoken()")
        self.source = source

    def __repr__(self) -> str:
        return f"OIDCAuth({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OIDCAuth) and other.source is self.source

    def __hash__(self) -> int:
        return id(self.source)

    # ------------------------------------------------------------------ requests

    def __call__(self, r: PreparedRequest) -> PreparedRequest:
        """requests: add the header and a hook that answers a 401 once."""
        exchange = _Exchange(_requests_replayable(r))
        op: _Op | None = exchange.first()
        while op is not None and op[0] == _TOKEN:
            op = exchange.answer(self._token(op[1]))
        if op is None:  # pragma: no cover - the flow always sends first
            return r
        r.headers["Authorization"] = _bearer(op[1])
        origin = _origin(r.url or "")
        position = _body_position(r.body)

        def handle(response: Response, **kwargs: Any) -> Response:
            return self._requests_retry(exchange, response, origin, position, kwargs)

        r.register_hook("response", handle)  # type: ignore[no-untyped-call]
        return r

    def _token(self, rejected: str) -> str:
        if rejected:
            self.source.invalidate(rejected)
        return self.source.token()

    async def _atoken(self, rejected: str) -> str:
        if rejected:
            ainvalidate = getattr(self.source, "ainvalidate", None)
            if ainvalidate is not None:
                await ainvalidate(rejected)
            else:
                self.source.invalidate(rejected)
        return await self.source.atoken()

    def _requests_retry(
        self,
        exchange: _Exchange,
        response: Response,
        origin: str,
        position: int | None,
        kwargs: dict[str, Any],
    ) -> Response:
        same = _origin(response.request.url or "") == origin
        op = exchange.answer((response.status_code, _header_values(response.headers), same))
        while op is not None and op[0] == _TOKEN:
            op = exchange.answer(self._token(op[1]))
        if op is None:
            return response
        # Same dance as requests' HTTPDigestAuth.handle_401: drain and release the first
        # response, send a copy through the same adapter, keep the first in history.
        if position is not None:
            response.request.body.seek(position)  # type: ignore[union-attr]
        response.content  # noqa: B018 - consume the body so the connection can be reused
        response.close()
        retry = response.request.copy()
        retry.headers["Authorization"] = _bearer(op[1])
        retry.hooks = {"response": []}  # the retry is final: no second 401 handling
        _copy_cookies(response, retry)
        second: Response = response.connection.send(retry, **kwargs)
        second.history.append(response)
        second.request = retry
        return second

    # ------------------------------------------------------------------ httpx
    # The two drivers differ only in how they get a token (`_token` or `await _atoken`).

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """httpx.Client: the flow with blocking token calls."""
        send = _HttpxSender(request)
        op: _Op | None = send.exchange.first()
        while op is not None:
            if op[0] == _TOKEN:
                op = send.exchange.answer(self._token(op[1]))
            else:
                response = yield send.prepare(op[1])
                op = send.exchange.answer(send.outcome(response))

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """httpx.AsyncClient: the same flow with `atoken()`; nothing blocks the loop."""
        send = _HttpxSender(request)
        op: _Op | None = send.exchange.first()
        while op is not None:
            if op[0] == _TOKEN:
                op = send.exchange.answer(await self._atoken(op[1]))
            else:
                response = yield send.prepare(op[1])
                op = send.exchange.answer(send.outcome(response))


class _HttpxSender:
    """An httpx request's side of the exchange: header, body rewind, outcome."""

    __slots__ = ("_rewind", "_sent", "exchange", "request")

    def __init__(self, request: httpx.Request) -> None:
        self.request = request
        self.exchange = _Exchange(_httpx_replayable(request))
        self._rewind = _httpx_rewinder(request)
        self._sent = False

    def prepare(self, token: str) -> httpx.Request:
        if self._sent:
            self._rewind()
        self._sent = True
        self.request.headers["Authorization"] = _bearer(token)
        return self.request

    def outcome(self, response: httpx.Response) -> _Outcome:
        same = _origin(str(response.request.url)) == _origin(str(self.request.url))
        return response.status_code, response.headers.get_list("www-authenticate"), same


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


def _header_values(headers: Any) -> list[str]:
    value = headers.get("WWW-Authenticate")
    # requests folds repeated headers into one comma-separated value; the challenge
    # parser reads several challenges from one value.
    return [value] if value else []


def _requests_replayable(r: PreparedRequest) -> bool:
    body: Any = r.body
    if body is None or isinstance(body, (bytes, str)):
        return True
    return _body_position(body) is not None


def _body_position(body: Any) -> int | None:
    """Where a seekable file body starts, so a retry can rewind to it; else None."""
    if body is None or isinstance(body, (bytes, str)):
        return None
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


def _httpx_replayable(request: httpx.Request) -> bool:
    stream = request.stream
    if isinstance(stream, httpx.ByteStream):
        return True
    # Multipart bodies re-render from their fields (files are rewound by httpx itself).
    if type(stream).__name__ == "MultipartStream":
        return True
    return _httpx_file(request) is not None


def _httpx_file(request: httpx.Request) -> Any:
    """The seekable file behind an httpx content stream, if that is what it is."""
    inner = getattr(request.stream, "_stream", None)
    if inner is None or not hasattr(inner, "read"):
        return None
    return inner if _body_position(inner) is not None else None


def _httpx_rewinder(request: httpx.Request) -> Any:
    file = _httpx_file(request)
    if file is None:
        return lambda: None
    start = file.tell()
    return lambda: file.seek(start)
