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
  replaying the old one would be `invalid_grant` and revoke the whole session;
- a URL httpx cannot even build a request for (a control character in a discovered
  endpoint) becomes `ConfigError`, never a raw httpx exception.

`timeout` bounds each attempt as a whole, not each socket operation: a provider that
trickles a byte just inside every read timeout would otherwise hold the call, and the
cross-process refresh lock with it, for as long as it likes. httpx has no such deadline,
so a watchdog shuts the attempt's socket down when it passes (the socket is learnt from
httpcore's `trace` extension; connections are not kept alive, so every attempt has its
own), and the body is read as a stream against the same deadline and against `MAX_BODY`,
so a huge answer never grows memory beyond the cap.

Nothing here logs or raises with a response body, which could contain tokens.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import os
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ._protocol import ClientAuthentication, encode_client_auth
from .errors import ConfigError, InvalidGrantError, OAuthError, TransportError, clip_text
from .presets import OAUTH_ERROR_ALIASES

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
#: Largest response body we read from the provider (bytes, after content decoding).
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class _Answer:
    """What one provider call returned: the status, one header, and the body when it fit
    in `MAX_BODY` (None: larger, and not read beyond the cap)."""

    status_code: int
    retry_after: str | None
    content: bytes | None
    #: WWW-Authenticate values (what a protected resource's 401 says, RFC 9728).
    challenges: tuple[str, ...] = ()


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


def _json_object(answer: _Answer) -> dict[str, Any] | None:
    """The response body as a JSON object, or None when it is anything else."""
    if answer.content is None:
        return None
    try:
        doc = json.loads(answer.content)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting: not for us
        return None
    return doc if isinstance(doc, dict) else None


#: Form fields that carry no secret. Every other value a request sent (refresh token, code,
#: verifier, device code, assertion, token to revoke...) is a secret to redact from what
#: the provider answers: a field added later is redacted unless it is listed here.
PUBLIC_FORM_FIELDS = frozenset({
    "grant_type", "client_id", "redirect_uri", "scope", "resource", "audience",
    "token_type_hint", "client_assertion_type", "subject_token_type", "actor_token_type",
    "requested_token_type", "response_type", "code_challenge_method",
})
#: Shorter values are left alone: they are not credentials, and replacing them would
#: garble the text ("1" in every number).
MIN_REDACTED_LENGTH = 8
REDACTED = "[redacted]"


def sent_secrets(
    data: Mapping[str, str] | None, client: ClientAuthentication | None = None
) -> tuple[str, ...]:
    """The secret values a request carries: its non-public form fields and the client
    secret, longest first (so a secret containing another is replaced whole)."""
    values = {v for k, v in (data or {}).items() if k not in PUBLIC_FORM_FIELDS}
    if client is not None and client.client_secret:
        values.add(client.client_secret)
    return tuple(sorted((v for v in values if len(v) >= MIN_REDACTED_LENGTH),
                        key=len, reverse=True))


def _text(doc: Mapping[str, Any], name: str, limit: int = 500,
          secrets: tuple[str, ...] = ()) -> str:
    """A string member, bounded, with control characters (terminal escapes) replaced:
    what a provider says ends up on the user's terminal. Every secret the request sent is
    replaced first (before the cut, so no part of one survives it)."""
    value = doc.get(name)
    if not isinstance(value, str):
        return ""
    for secret in secrets:
        value = value.replace(secret, REDACTED)
    return clip_text(value, limit)


def oauth_error_from(doc: Mapping[str, Any], status_code: int | None,
                     secrets: tuple[str, ...] = ()) -> OAuthError:
    """Build the typed error for an OAuth error document (pure).

    A provider's own code for a standard error (GitHub's `bad_refresh_token`...,
    `presets.OAUTH_ERROR_ALIASES`) becomes the standard code, the provider's code kept
    at the head of the description, so that a dead grant is an `InvalidGrantError`
    whoever says so. A provider that echoes what it was sent ("refresh token <token> is
    unknown") has each of `secrets` (`sent_secrets`) replaced by "[redacted]".
    """
    code = _text(doc, "error", 100, secrets) or "invalid_response"
    desc = _text(doc, "error_description", secrets=secrets)
    alias = OAUTH_ERROR_ALIASES.get(code)
    if alias is not None:
        code, desc = alias, f"{code}: {desc}" if desc else code
    uri = _text(doc, "error_uri", secrets=secrets)
    cls = InvalidGrantError if code == "invalid_grant" else OAuthError
    return cls(code, desc, error_uri=uri, status_code=status_code)


class _Watchdog:
    """Ends one attempt at its deadline by shutting its socket down (see the module doc).

    httpcore reports the socket of a new connection through the request's `trace`
    extension; `expired` tells the caller that a failure was the deadline's doing.
    A transport that makes no connections of its own (a mock, a custom transport) reports
    none: then only the body is held to the deadline, between chunks.
    """

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def trace(self, name: str, info: Mapping[str, Any]) -> None:
        if name in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                with self._lock:
                    self._sockets.append(sock)
                    if self.expired:
                        self._shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self._timer.cancel()


def ssl_verify(verify: bool | str | os.PathLike[str] | ssl.SSLContext) -> bool | ssl.SSLContext:
    """httpx's `verify`: a CA bundle path (file or directory) becomes an SSLContext, since
    httpx 0.28 deprecates string paths; a bool or an SSLContext is passed on."""
    if isinstance(verify, (str, os.PathLike)):
        path = os.fspath(verify)
        if os.path.isdir(path):
            return ssl.create_default_context(capath=path)
        return ssl.create_default_context(cafile=path)
    return verify


class IdPHttp:
    """Blocking HTTP calls to the identity provider, with typed errors and bounded retries.

    Safe for concurrent use from several threads (httpx.Client is; each attempt has its
    own deadline and connection).
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        verify: bool | str | ssl.SSLContext = True,
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
            verify=ssl_verify(verify),
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": "oauth-auth"},
            # HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY, SSL_CERT_FILE and SSL_CERT_DIR
            # apply as httpx reads them: behind a corporate proxy, refreshes work as the
            # API calls do. A transport passed in (tests, custom TLS) bypasses them.
            trust_env=True,
            # One connection per attempt, so the watchdog always knows its socket (and
            # never shuts down a pooled one another call reuses). IdP calls are rare.
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        # A token source is often dropped without close(): release the sockets with it.
        self._finalizer = weakref.finalize(self, self._client.close)

    def close(self) -> None:
        """Close the connection pool."""
        self._finalizer()

    def _attempt(
        self, method: str, url: str, data: Mapping[str, str] | None,
        json_body: Mapping[str, Any] | None = None,
        client: ClientAuthentication | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> _Answer:
        """One request and its body, all within `timeout` seconds.

        Raises:
            httpx.TimeoutException: the deadline passed (also when the watchdog cut it).
            httpx.HTTPError: the network failed.
            ConfigError: httpx cannot build a request for this URL or form.
        """
        watchdog = _Watchdog(self.timeout)
        deadline = time.monotonic() + self.timeout
        try:
            try:
                form_body: str | None = None
                headers: dict[str, str] | None = None
                if client is not None and data is not None:
                    # client authentication (authlib's encoding) decides the body's shape
                    headers, form_body = encode_client_auth(client, url, data)
                    data = None
                if extra_headers:
                    headers = {**(headers or {}), **extra_headers}
                request = self._client.build_request(
                    method, url, data=data, json=json_body, content=form_body, headers=headers,
                    extensions={"trace": watchdog.trace},
                )
            except (httpx.InvalidURL, ValueError, TypeError):
                raise ConfigError(
                    f"cannot send a request to {_endpoint_url(url)}: the URL is malformed",
                    hint="check the issuer URL and the provider's metadata (endpoints)",
                ) from None
            try:
                response = self._client.send(request, stream=True)
                try:
                    content = _read_capped(response, deadline)
                finally:
                    response.close()
            except httpx.HTTPError:
                if watchdog.expired:
                    raise httpx.ReadTimeout("the call's deadline passed") from None
                raise
            return _Answer(response.status_code, response.headers.get("Retry-After"), content,
                           tuple(response.headers.get_list("WWW-Authenticate")))
        finally:
            watchdog.cancel()

    def _send(
        self, method: str, url: str, *, data: Mapping[str, str] | None,
        json_body: Mapping[str, Any] | None = None,
        client: ClientAuthentication | None = None,
        replayable: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> _Answer:
        attempt = 0
        while True:
            try:
                answer = self._attempt(method, url, data, json_body, client, headers)
            except httpx.ConnectError as exc:
                untrusted = _certificate_failure(exc)
                if untrusted is not None:  # no retry: the certificate will not change
                    raise TransportError(
                        f"the TLS certificate of the identity provider at"
                        f" {_endpoint_url(url)} is not trusted ({untrusted})",
                        hint="if a proxy or a private CA signs it, set SSL_CERT_FILE (or"
                        " SSL_CERT_DIR) to that CA's certificates, or pass verify=",
                    ) from None
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
            if answer.status_code >= 500 or answer.status_code == 429:
                wait = _retry_after(answer.retry_after, time.time())
                # A one-time code (authorization code, device code) is never posted twice:
                # the server may have spent it before failing (RFC 6749 section 4.1.2).
                if (
                    replayable
                    and attempt < self.max_retries
                    and (wait is None or wait <= MAX_RETRY_AFTER)
                ):
                    self._pause(attempt, wait)
                    attempt += 1
                    continue
                raise TransportError(
                    f"the identity provider at {_endpoint_url(url)} answered HTTP"
                    f" {answer.status_code}",
                    status_code=answer.status_code,
                )
            return answer

    def _pause(self, attempt: int, retry_after: float | None) -> None:
        delay = self.backoff * (2**attempt)
        if retry_after is not None:
            delay = max(delay, retry_after)
        log.debug("retrying an identity provider call in %.2f s", delay)
        self._sleep(min(delay, MAX_RETRY_AFTER))

    def get_json(self, url: str, *, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET a JSON object (discovery, JWKS; `headers` for a service that wants a
        credential, as GitHub's OIDC token endpoint). Non-JSON or non-200 is a
        TransportError."""
        answer = self._send("GET", url, data=None, headers=headers)
        doc = _json_object(answer)
        if answer.status_code != 200 or doc is None:
            raise TransportError(
                f"{url} answered HTTP {answer.status_code}"
                + ("" if doc is not None else " without a JSON object"),
                status_code=answer.status_code,
                hint="check the issuer URL",
            )
        return doc

    def post_form(
        self,
        url: str,
        data: Mapping[str, str],
        *,
        client: ClientAuthentication | None = None,
        replayable: bool = True,
    ) -> tuple[int, dict[str, Any]]:
        """POST a form to a token-like endpoint; return (status, JSON object).

        Only a 2xx answer is a success: a redirect is never a token response, whatever
        its body says (this client does not follow redirects).

        Args:
            url: the endpoint.
            data: the form (with `client_id` for a public client).
            client: how the client authenticates (`_protocol.choose_client_auth`); None
                sends `data` as it is.
            replayable: False for a form carrying a one-time code: a 5xx or 429 answer is
                then not retried (a refused connection still is: nothing was sent).

        Raises:
            OAuthError: an OAuth error response (4xx with an `error` member, or a 2xx with
                an `error` member and no access token, as GitHub answers), a success
                status with a body that is not a JSON object, or any other status.
            TransportError: network failure, or 5xx/429 after the retries.
        """
        answer = self._send("POST", url, data=data, client=client, replayable=replayable)
        status = answer.status_code
        doc = _json_object(answer)
        if doc is not None and isinstance(doc.get("error"), str) and (
            status >= 400 or "access_token" not in doc
        ):
            raise oauth_error_from(doc, status, sent_secrets(data, client))
        if not 200 <= status < 300:
            raise OAuthError(
                "invalid_response",
                f"{_endpoint_url(url)} answered HTTP {status} without an OAuth error"
                + (" (a redirect is not a token response)" if 300 <= status < 400 else ""),
                status_code=status,
            )
        if doc is None:
            raise OAuthError(
                "invalid_response",
                f"{_endpoint_url(url)} answered HTTP {status} with a body that is"
                " not a JSON object" + (" (or larger than 1 MiB)" if answer.content is None
                                       else ""),
                status_code=status,
            )
        return status, doc

    def post_form_status(
        self, url: str, data: Mapping[str, str], *, client: ClientAuthentication | None = None
    ) -> int:
        """POST a form and return only the status code (revocation, RFC 7009)."""
        return self._send("POST", url, data=data, client=client).status_code

    def post_json(self, url: str, doc: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST a JSON object (RFC 7591 registration); return (status, JSON object).

        Raises:
            OAuthError: an error response (RFC 7591 section 3.2.2 uses OAuth's shape), or
                anything but a 2xx answer with a JSON object.
            TransportError: network failure, or 5xx/429 after the retries.
        """
        answer = self._send("POST", url, data=None, json_body=doc)
        status = answer.status_code
        reply = _json_object(answer)
        if reply is not None and "error" in reply and status >= 400:
            raise oauth_error_from(reply, status)
        if not 200 <= status < 300 or reply is None:
            raise OAuthError(
                "invalid_response",
                f"{_endpoint_url(url)} answered HTTP {status}"
                + ("" if reply is not None else " without a JSON object"),
                status_code=status,
            )
        return status, reply

    def probe(self, url: str) -> tuple[int, tuple[str, ...]]:
        """GET a resource without credentials: its status and WWW-Authenticate values.

        What a protected resource answers an anonymous request tells where to log in
        (RFC 9728 section 5.1).
        """
        answer = self._send("GET", url, data=None)
        return answer.status_code, answer.challenges


def _certificate_failure(exc: BaseException) -> str | None:
    """Why certificate verification failed, when that is what ended this connection.

    A proxy that intercepts TLS, or a company CA, looks like a dead provider otherwise;
    the reason is OpenSSL's (e.g. "unable to get local issuer certificate"), no secret.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return str(current.verify_message or current.reason or "verification failed")
        current = current.__cause__ or current.__context__
    return None


def _read_capped(response: httpx.Response, deadline: float) -> bytes | None:
    """The decoded body, read as a stream; None as soon as it exceeds `MAX_BODY`.

    Raises:
        httpx.ReadTimeout: the deadline passed between two chunks.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the call's deadline passed")
    return b"".join(chunks)


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
