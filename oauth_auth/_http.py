"""The library's own HTTP client for talking to the identity provider.

The token endpoint never goes through the user's authorized session (that would recurse:
the session's auth asks for a token, which asks the session...), so IdP calls use this
small driver around `httpx.Client`. It owns the error mapping every caller relies on:

- an OAuth error response (RFC 6749 section 5.2) becomes `OAuthError`, and
  `invalid_grant` becomes `InvalidGrantError`;
- 5xx and 429 answers are retried a bounded number of times with exponential backoff
  that honours `Retry-After`, then become `TransportError`;
- network failures become `TransportError`. A connection that was refused is retried (the
  request never left), but a timeout or dropped connection after the request was sent is
  NOT retried for POSTs: the provider may already have rotated the refresh token, and
  replaying the old one would be `invalid_grant` and revoke the whole session.

Nothing here logs or raises with a response body, which could contain tokens.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from .errors import InvalidGrantError, OAuthError, TransportError

__all__ = ["DEFAULT_TIMEOUT", "IdPHttp"]

log = logging.getLogger("oauth_auth")

#: Seconds allowed for one IdP HTTP call (connect + read), unless the caller sets another.
DEFAULT_TIMEOUT = 10.0
#: How many times a 5xx/429 answer or a refused connection is retried.
DEFAULT_MAX_RETRIES = 2
#: First backoff delay in seconds; doubled at every retry.
DEFAULT_BACKOFF = 0.5
#: Longest Retry-After we are willing to honour before giving up instead.
MAX_RETRY_AFTER = 30.0
#: Largest response body we read from the provider.
MAX_BODY = 1 << 20


def _retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²".isdigit() is True too
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The response body as a JSON object, or None when it is anything else."""
    if len(response.content) > MAX_BODY:
        return None
    try:
        doc = json.loads(response.content)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting: not for us
        return None
    return doc if isinstance(doc, dict) else None


def _text(doc: Mapping[str, Any], name: str, limit: int = 500) -> str:
    """A string member, bounded, with control characters (terminal escapes) replaced:
    what a provider says ends up on the user's terminal."""
    value = doc.get(name)
    if not isinstance(value, str):
        return ""
    return "".join(ch if ch.isprintable() else "?" for ch in value[:limit])


def oauth_error_from(doc: Mapping[str, Any], status_code: int | None) -> OAuthError:
    """Build the typed error for an OAuth error document (pure)."""
    code = _text(doc, "error", 100) or "invalid_response"
    desc = _text(doc, "error_description")
    uri = _text(doc, "error_uri")
    cls = InvalidGrantError if code == "invalid_grant" else OAuthError
    return cls(code, desc, error_uri=uri, status_code=status_code)


class IdPHttp:
    """Blocking HTTP calls to the identity provider, with typed errors and bounded retries.

    Safe for concurrent use from several threads (httpx.Client is).
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        verify: bool | str = True,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self._sleep = sleep
        self._client = httpx.Client(
            timeout=timeout,
            transport=transport,
            verify=verify,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "oauth-auth"},
            trust_env=False,
        )
        # A token source is often dropped without close(): release the sockets with it.
        self._finalizer = weakref.finalize(self, self._client.close)

    def close(self) -> None:
        """Close the connection pool."""
        self._finalizer()

    def _send(self, method: str, url: str, *, data: Mapping[str, str] | None) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self._client.request(method, url, data=data)
            except httpx.ConnectError as exc:
                # The request never reached the server: safe to retry, even a POST.
                if attempt < self.max_retries:
                    self._pause(attempt, None)
                    attempt += 1
                    continue
                raise TransportError(
                    f"cannot connect to the identity provider at {_endpoint_url(url)}"
                    f" ({type(exc).__name__})"
                ) from None
            except httpx.TimeoutException as exc:
                if method == "GET" and attempt < self.max_retries:
                    self._pause(attempt, None)
                    attempt += 1
                    continue
                raise TransportError(
                    f"the identity provider at {_endpoint_url(url)} did not answer within"
                    f" {self.timeout:g} s ({type(exc).__name__})",
                    hint="try again later, or raise the timeout",
                ) from None
            except httpx.HTTPError as exc:
                if method == "GET" and attempt < self.max_retries:
                    self._pause(attempt, None)
                    attempt += 1
                    continue
                raise TransportError(
                    f"the connection to the identity provider at {_endpoint_url(url)} failed"
                    f" ({type(exc).__name__})"
                ) from None
            if response.status_code >= 500 or response.status_code == 429:
                wait = _retry_after(response.headers.get("Retry-After"), time.time())
                if attempt < self.max_retries and (wait is None or wait <= MAX_RETRY_AFTER):
                    self._pause(attempt, wait)
                    attempt += 1
                    continue
                raise TransportError(
                    f"the identity provider at {_endpoint_url(url)} answered HTTP"
                    f" {response.status_code}",
                    status_code=response.status_code,
                )
            return response

    def _pause(self, attempt: int, retry_after: float | None) -> None:
        delay = self.backoff * (2**attempt)
        if retry_after is not None:
            delay = max(delay, retry_after)
        log.debug("retrying an identity provider call in %.2f s", delay)
        self._sleep(min(delay, MAX_RETRY_AFTER))

    def get_json(self, url: str) -> dict[str, Any]:
        """GET a JSON object (discovery, JWKS). Non-JSON or non-200 is a TransportError."""
        response = self._send("GET", url, data=None)
        doc = _json_object(response)
        if response.status_code != 200 or doc is None:
            raise TransportError(
                f"{url} answered HTTP {response.status_code}"
                + ("" if doc is not None else " without a JSON object"),
                status_code=response.status_code,
                hint="check the issuer URL",
            )
        return doc

    def post_form(self, url: str, data: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """POST a form to a token-like endpoint; return (status, JSON object).

        Raises:
            OAuthError: an OAuth error response (4xx with an `error` member), or a success
                status with a body that is not a JSON object.
            TransportError: network failure, or 5xx/429 after the retries.
        """
        response = self._send("POST", url, data=data)
        doc = _json_object(response)
        if doc is not None and "error" in doc and response.status_code >= 400:
            raise oauth_error_from(doc, response.status_code)
        if response.status_code >= 400:
            raise OAuthError(
                "invalid_response",
                f"{_endpoint_url(url)} answered HTTP {response.status_code} without an OAuth error",
                status_code=response.status_code,
            )
        if doc is None:
            raise OAuthError(
                "invalid_response",
                f"{_endpoint_url(url)} answered HTTP {response.status_code} with a body that is"
                " not a JSON object",
                status_code=response.status_code,
            )
        return response.status_code, doc

    def post_form_status(self, url: str, data: Mapping[str, str]) -> int:
        """POST a form and return only the status code (revocation, RFC 7009)."""
        return self._send("POST", url, data=data).status_code


def _endpoint_url(url: str) -> str:
    """The URL as error messages show it: scheme, host, port and path.

    Not an origin (the path is kept, so the message names the endpoint); the query, the
    fragment and any user-info are dropped, since a query may carry a code or a secret.
    """
    try:
        u = httpx.URL(url)
    except Exception:  # noqa: BLE001 - a URL we cannot parse is shown as "the provider"
        return "the provider"
    return f"{u.scheme}://{u.netloc.decode('ascii', 'replace')}{u.path}"
