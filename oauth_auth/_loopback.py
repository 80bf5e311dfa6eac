"""The loopback callback server of the browser login (RFC 8252 section 7.3).

It listens on loopback only, on exactly the configured port (a provider that registered
the exact redirect URI would reject any other), and only `GET /callback` with our `state`
can end the flow. Everything else gets a page and is otherwise ignored: `/favicon.ico` and
other paths a 404, a callback with a foreign `state` an error page (a stale tab or another
local program must not be able to abort the user's login).

For `localhost` it listens on both 127.0.0.1 and ::1, because which one the browser
resolves `localhost` to depends on the machine; for an IP literal, on that address only.
A request whose `Host` is not one of those names with our port (a page of another site
whose name an attacker re-pointed at 127.0.0.1: DNS rebinding) gets 421 and nothing else.

The start page: a browser command's arguments are readable by every local user
(/proc/<pid>/cmdline), so the authorization URL (state, nonce, code challenge) must not be
one of them, or another user could log in as themselves with our state and deliver their
code to this server (login CSRF). The browser is given `start_url` instead, a one-time page
of this server at an unguessable path, which redirects to the authorization URL. The first
fetch gets the redirect; a second fetch, whoever makes it, ends the login with a
`LoginError` (either someone else used the page first, or the user's own browser is second
to someone else), so a stolen start URL never yields a login the user did not see fail.

That leaves a race: another user who watches for the browser command could fetch the
page, log in as themselves and deliver their code before the user's browser starts. So
on Linux every request is also checked for who sent it: a connection whose other end is
a socket of another local user (found in /proc/net/tcp, by address and port) gets 403 and
counts for nothing. Root's sockets pass (root could read this process anyway, and
relays such as WSL's or Docker's run as root), and so does a peer the table does not
show (another network namespace or machine, e.g. an SSH port forward's far end).

The request line (which carries the code) is never logged, pages echo only HTML-escaped
error codes and descriptions, and they are served with `no-store`, `no-referrer` and a
CSP that allows nothing but inline style.

Concurrency: the servers run in daemon threads; `wait()` is called from one thread (the
login's); the first conclusive callback wins.
"""

from __future__ import annotations

import errno
import hmac
import html
import http.server
import logging
import os
import secrets
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from ._authorize import CALLBACK_PATH, StateMismatch, format_redirect_uri, parse_callback
from .errors import ConfigError, LoginError

__all__ = [
    "START_PATH_PREFIX",
    "CallbackServer",
    "allowed_hosts",
    "listen_addresses",
    "peer_uid",
]

log = logging.getLogger("oauth_auth")

#: Seconds a browser connection may stay idle before its handler thread drops it (a
#: speculative preconnect that never sends a request must not hold a thread for long).
HANDLER_TIMEOUT = 10.0
#: How often the waiting thread wakes up to check the deadline (seconds).
WAIT_SLICE = 0.25
#: How often the serving threads check whether they should stop (seconds).
POLL_INTERVAL = 0.05
#: The start page's path is this prefix and an unguessable token.
START_PATH_PREFIX = "/start/"
#: Bytes of randomness in the start page's path.
START_TOKEN_BYTES = 32


def listen_addresses(host: str) -> list[str]:
    """The loopback addresses to listen on for a redirect URI host.

    `localhost` means both 127.0.0.1 and ::1; an IP literal means itself. Anything else
    is refused: RFC 8252 requires the loopback interface.

    Raises:
        ConfigError: the host is not a loopback host.
    """
    format_redirect_uri(host, 1)  # validates the host
    bare = host.strip("[]").lower()
    if bare == "localhost":
        return ["127.0.0.1", "::1"]
    return [bare]


def _proc_net_address(address: str, port: int) -> str:
    """An address and port as /proc/net/tcp{,6} print them: 32-bit words in host order."""
    if ":" in address:
        raw = socket.inet_pton(socket.AF_INET6, address.split("%", 1)[0])
    else:
        raw = socket.inet_aton(address)
    words = struct.unpack(f"={len(raw) // 4}I", raw)
    return "".join(f"{w:08X}" for w in words) + f":{port:04X}"


def peer_uid(peer: tuple[Any, ...], local: tuple[Any, ...]) -> int | None:
    """The user owning the other end of a loopback TCP connection; None when unknown.

    Linux only: the socket whose local end is `peer` and whose remote end is `local` in
    /proc/net/tcp (or tcp6). None elsewhere, or when no such socket is in this network
    namespace (the peer is on another machine or in another namespace).
    """
    if not sys.platform.startswith("linux"):
        return None
    table = "/proc/net/tcp6" if ":" in str(peer[0]) else "/proc/net/tcp"
    try:
        want = (_proc_net_address(str(peer[0]), int(peer[1])),
                _proc_net_address(str(local[0]), int(local[1])))
        with open(table, encoding="ascii") as rows:
            next(rows, None)  # the header
            for row in rows:
                fields = row.split()
                if len(fields) > 7 and (fields[1], fields[2]) == want:
                    return int(fields[7])
    except (OSError, ValueError):
        return None
    return None


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The `Host` header values the callback server answers (lower case, with the port).

    The redirect URI's host and the addresses listened on for it: `localhost`, 127.0.0.1
    and [::1] for `localhost`; an IP literal alone for itself. The bare name is allowed on
    port 80 only, where browsers leave the port out.

    Raises:
        ConfigError: the host is not a loopback host.
    """
    names = {host.strip("[]").lower(), *listen_addresses(host)}
    netlocs = [f"[{n}]" if ":" in n else n for n in names]
    allowed = {f"{n}:{port}" for n in netlocs}
    if port == 80:
        allowed.update(netlocs)
    return frozenset(allowed)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;
color:#222}}h1{{font-size:1.4em}}.ok{{color:#0a7a2f}}.err{{color:#b00020}}
code{{background:#f3f3f3;padding:0 .2em}}</style></head>
<body><h1 class="{cls}">{title}</h1>{body}</body></html>
"""


def _finished_page() -> bytes:
    """What a start page or callback fetched after the login ended shows (with 409)."""
    return _page("Login already finished",
                 _p("This login has already finished. You can close this tab."), ok=False)


def _page(title: str, body_html: str, *, ok: bool) -> bytes:
    return _PAGE.format(
        title=html.escape(title), body=body_html, cls="ok" if ok else "err"
    ).encode("utf-8")


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _error_details(error: str, description: str) -> str:
    parts = []
    if error:
        parts.append(f"<p>Error: <code>{html.escape(error)}</code></p>")
    if description:
        parts.append(_p(description))
    return "".join(parts)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Answers one browser request; the owning CallbackServer decides what it means."""

    server_version = "oauth-auth"
    sys_version = ""
    timeout = HANDLER_TIMEOUT
    protocol_version = "HTTP/1.0"

    # The server class sets this on its handler subclass.
    owner: CallbackServer

    def do_GET(self) -> None:
        if (self.headers.get("Host") or "").lower() not in self.owner.hosts:
            # DNS rebinding: a page of another site may not talk to this server.
            self._send(421, _page("Wrong address", _p(
                f"This login server answers only at {self.owner.redirect_uri}."), ok=False))
            return
        uid = peer_uid(self.client_address, self.connection.getsockname())
        if uid is not None and uid not in (0, os.getuid()):
            log.warning("the login callback server refused a request from another local"
                        " user (uid %d)", uid)
            self._send(403, _page("Not yours", _p(
                "This login belongs to another user of this machine."), ok=False))
            return
        parts = urlsplit(self.path)
        extra: dict[str, str] | None = None
        if parts.path == CALLBACK_PATH:
            status, body, conclusive = self.owner._on_callback(parts.query)
        elif self.owner._is_start_path(parts.path):
            status, body, extra, conclusive = self.owner._on_start()
        else:
            self._send(404, _page("Not found", _p("This is not the login callback."), ok=False))
            return
        try:
            self._send(status, body, extra)
        finally:
            # Ending the flow only after the page is written lets the browser get it even
            # when the process exits right after the login.
            if conclusive:
                self.owner._finish()

    def do_POST(self) -> None:
        self._not_allowed()

    def do_PUT(self) -> None:
        self._not_allowed()

    def do_DELETE(self) -> None:
        self._not_allowed()

    def do_HEAD(self) -> None:
        self._not_allowed()

    def _not_allowed(self) -> None:
        self._send(405, _page("Method not allowed", _p("Only GET is served here."), ok=False),
                   extra={"Allow": "GET"})

    def _send(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = {
            "Content-Type": "text/html; charset=utf-8",
            "Content-Length": str(len(body)),
            "Cache-Control": "no-store",
            "Pragma": "no-cache",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "Connection": "close",
            **(extra or {}),
        }
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes the request line -- with the authorization code -- to stderr.
        # Log only the method and path, at debug level.
        log.debug("loopback callback server: %s %s", self.command,
                  urlsplit(getattr(self, "path", "") or "").path)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # On POSIX, SO_REUSEADDR lets us rebind right after a previous login left TIME_WAIT
    # connections, but never onto a port another socket is listening on. On Windows it
    # would allow exactly that (port stealing), so it stays off there.
    allow_reuse_address = os.name != "nt"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A browser that hangs up or a preconnect that times out is not worth a traceback
        # on the user's terminal.
        log.debug("loopback callback server: a connection failed", exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


#: errno values meaning "this machine has no such address/family" (no IPv6 on loopback).
_UNAVAILABLE = {errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT}


class CallbackServer:
    """Listens for the authorization response on the loopback interface.

    Bind happens in the constructor so that a busy port fails before a browser is opened.
    Use as a context manager (or call `close()`), so the port is released however the
    login ends, Ctrl-C included.

    Args:
        host: the redirect URI's host (`localhost`, `127.0.0.1`, `::1`).
        port: the redirect URI's port; exactly this one is used.
        state: the `state` of the authorization request.
        issuer: the provider's issuer, compared with the RFC 9207 `iss` parameter.
        require_iss: the provider promises `iss`, so its absence is an error.
        authorization_url: where the one-time start page (`start_url`) redirects; None
            serves no start page.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        state: str,
        issuer: str,
        require_iss: bool = False,
        authorization_url: str | None = None,
    ) -> None:
        if not 0 < port < 65536:
            raise ConfigError(f"callback port {port!r} is not a TCP port (1-65535)")
        self.redirect_uri = format_redirect_uri(host, port)
        self.hosts = allowed_hosts(host, port)
        self.port = port
        self._authorization_url = authorization_url
        self._start_path = START_PATH_PREFIX + secrets.token_urlsafe(START_TOKEN_BYTES)
        self._start_fetches = 0
        self._state = state
        self._issuer = issuer
        self._require_iss = require_iss
        self._done = threading.Event()
        self._claimed = False
        self._lock = threading.Lock()
        self._code: str | None = None
        self._error: LoginError | None = None
        self._servers: list[_Server] = []
        self._threads: list[threading.Thread] = []
        handler = type("_BoundHandler", (_Handler,), {"owner": self})
        try:
            for address in listen_addresses(host):
                cls = _Server6 if ":" in address else _Server
                try:
                    self._servers.append(cls((address, port), handler))
                except OSError as exc:
                    if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                        raise self._busy(exc) from None
                    if address == "::1" and len(listen_addresses(host)) > 1 and (
                        exc.errno in _UNAVAILABLE or isinstance(exc, socket.gaierror)
                    ):
                        log.debug("no IPv6 loopback here; listening on 127.0.0.1 only")
                        continue
                    raise LoginError(
                        f"cannot listen on {address} port {port} for the login callback:"
                        f" {exc.strerror or exc}",
                        hint="choose another port with callback_port (--callback-port)",
                    ) from None
        except BaseException:
            self.close()
            raise
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": POLL_INTERVAL},
                name="oauth-auth-callback",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def _busy(self, exc: OSError) -> LoginError:
        if exc.errno == errno.EADDRINUSE:
            reason = "is already in use (another program, or another login, listens there)"
        else:
            reason = "may not be used by this user (permission denied)"
        return LoginError(
            f"the login callback port {self.port} {reason}",
            error="port_in_use",
            hint=f"stop the program using port {self.port}, or choose another port with"
            " callback_port (--callback-port) and register its redirect URI at the provider",
        )

    @property
    def addresses(self) -> list[str]:
        """The addresses actually listened on (tests; diagnostics)."""
        return [str(s.server_address[0]) for s in self._servers]

    @property
    def start_url(self) -> str:
        """The one-time start page: what a browser command is given instead of the
        authorization URL (which must not be on any command line)."""
        return self.redirect_uri.removesuffix(CALLBACK_PATH) + self._start_path

    def _is_start_path(self, path: str) -> bool:
        return self._authorization_url is not None and hmac.compare_digest(
            path.encode("utf-8", "replace"), self._start_path.encode("ascii")
        )

    def _on_start(self) -> tuple[int, bytes, dict[str, str] | None, bool]:
        """Answer a fetch of the start page: the redirect once, then the end of the login.

        Returns the status, the page, extra headers and whether the flow ends.
        """
        with self._lock:
            if self._claimed:
                return 409, _finished_page(), None, False
            self._start_fetches += 1
            if self._start_fetches == 1 and self._authorization_url is not None:
                target = self._authorization_url
                return 302, _page(
                    "Continue to log in",
                    f'<p><a href="{html.escape(target)}">Continue to the identity'
                    " provider</a>.</p>",
                    ok=True,
                ), {"Location": target}, False
            self._error = LoginError(
                "the login's start page was opened a second time, so the login was stopped:"
                " another program on this machine may have opened it first",
                error="start_page_reused",
                hint="run the login again, and open its page only once; if you did not open"
                " it twice, check who else can run programs on this machine",
            )
            self._claimed = True
            return 400, _page(
                "Login stopped",
                _p("This login page was opened more than once, so the login was stopped for"
                   " your safety: another program may have opened it first.")
                + _p("Return to the terminal and run the login again."),
                ok=False,
            ), None, True

    def _on_callback(self, query: str) -> tuple[int, bytes, bool]:
        """Decide the answer to one `GET /callback`; called from a handler thread.

        Returns the status, the page, and whether this callback ends the flow (then the
        handler calls `_finish()` once the page is sent).
        """
        with self._lock:
            if self._claimed:
                return 409, _finished_page(), False
            try:
                code = parse_callback(
                    query,
                    expected_state=self._state,
                    issuer=self._issuer,
                    require_iss=self._require_iss,
                )
            except StateMismatch as stray:
                log.debug("ignored a callback whose state does not match this login")
                return 400, _page(
                    "Not this login",
                    _p(
                        "This response does not belong to the login in progress (its state"
                        " does not match), so it was ignored. If you started a new login,"
                        " finish it in the newest browser tab."
                    )
                    + _error_details(stray.error, stray.description),
                    ok=False,
                ), False
            except LoginError as exc:
                self._error = exc
                self._claimed = True
                return 400 if exc.error != "access_denied" else 200, _page(
                    "Login failed",
                    _p("The login did not complete.")
                    + _error_details(exc.error, exc.description or exc.message)
                    + _p("You can close this tab and return to the terminal."),
                    ok=False,
                ), True
            self._code = code
            self._claimed = True
            return 200, _page(
                "Login complete",
                _p("You are logged in. You can close this tab and return to the terminal."),
                ok=True,
            ), True

    def _finish(self) -> None:
        self._done.set()

    def wait(self, *, deadline: float, clock: Callable[[], float] = time.monotonic) -> str:
        """Block until a conclusive callback arrives; return the authorization code.

        Args:
            deadline: the `clock()` value at which to give up.
            clock: monotonic seconds (tests inject a fake one).

        Raises:
            LoginError: the provider answered with an error, the response failed a check,
                or the deadline passed.
            KeyboardInterrupt: propagated at once (the caller's `close()` frees the port).
        """
        while not self._done.wait(WAIT_SLICE):
            if clock() >= deadline:
                break
        with self._lock:
            if self._error is not None:
                raise self._error
            if self._code is not None:
                return self._code
            # Nothing conclusive arrived in time; late callbacks get "already finished".
            self._claimed = True
        raise LoginError(
            "the login timed out waiting for the browser to return to"
            f" {self.redirect_uri}",
            error="timeout",
            hint="run the login again and complete it in the browser, or raise the timeout",
        )

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        servers, threads = self._servers, self._threads
        self._servers, self._threads = [], []
        # shutdown() waits for serve_forever() to return, so only for servers that run one.
        for server in servers[: len(threads)]:
            server.shutdown()
        for thread in threads:
            thread.join()
        for server in servers:
            server.server_close()

    def __enter__(self) -> CallbackServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
