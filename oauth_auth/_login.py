"""Tier 4: the interactive login driver (browser code + PKCE, or the device grant).

`interactive_login` ties the sans-IO pieces (`_authorize`, `_idtoken`) to the I/O ones
(`_loopback`, `_device`, the browser, stderr). It returns the provider's token response,
checked once by `_token.parse_token_response` (the rule every grant shares) and with the ID
token validated, and stores nothing: the token source decides what to keep, so a failed
check can never leave a half-trusted session behind.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, TextIO

from ._authorize import (
    AuthorizationRequest,
    StateMismatch,
    build_authorization_request,
    build_code_exchange,
    format_redirect_uri,
    login_scopes,
    parse_callback,
    wants_offline_access,
)
from ._device import device_login
from ._idtoken import validate_id_token
from ._loopback import CallbackServer
from ._params import LOGIN_METHODS
from ._protocol import ClientAuthentication, client_auth_for
from ._scrub import scrubs
from ._token import Token, parse_token_response
from .errors import ConfigError, LoginError, OAuthAuthError, OAuthError

if TYPE_CHECKING:
    from ._discovery import ProviderMetadata
    from ._http import IdPHttp
    from ._params import OIDCParams

__all__ = ["PreflightRefused", "browser_unavailable_reason", "choose_method",
           "interactive_login"]

log = logging.getLogger("oauth_auth")


def _in_ssh_session(environ: Mapping[str, str]) -> bool:
    return any(environ.get(v) for v in ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY"))


def browser_unavailable_reason(
    environ: Mapping[str, str] | None = None,
    platform: str | None = None,
    probe: Callable[[], object] | None = None,
) -> str:
    """Why no browser can be shown to the user here; "" when one can.

    A browser opened over SSH would appear on the remote machine's screen (or nowhere),
    and on Linux/BSD without X11 or Wayland `webbrowser` would at best find a console
    browser that takes over the terminal the login is printing to. `$BROWSER` is taken as
    the user's word that a browser works (WSL's `wslview`, for example).

    Args:
        environ: the environment (default `os.environ`).
        platform: `sys.platform` (default the real one).
        probe: finds a browser or raises `webbrowser.Error` (default `webbrowser.get`).
    """
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    has_display = bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    if not env.get("BROWSER") and not has_display:
        if _in_ssh_session(env):
            return "this is an SSH session without a display"
        if not plat.startswith(("darwin", "win32", "cygwin")):
            return "there is no graphical display (DISPLAY and WAYLAND_DISPLAY are unset)"
    try:
        (probe or webbrowser.get)()
    except webbrowser.Error:
        return "no web browser was found"
    return ""


def choose_method(
    method: str,
    *,
    metadata: ProviderMetadata,
    have_opener: bool,
    skip_browser: bool,
    unavailable_reason: Callable[[], str],
) -> str:
    """Resolve `login_method` to "browser" or "device".

    `auto` prefers the browser (the better experience, and the only flow that binds the
    response to this machine); it falls back to the device grant only when no browser can
    be shown and the provider advertises a device endpoint. `skip_browser` is a request
    for the browser flow with its URL printed, so it keeps the browser flow.

    Raises:
        ConfigError: an unknown method, or one the provider cannot do.
    """
    if method not in LOGIN_METHODS:
        raise ConfigError(
            f"login method {method!r} is not one of {', '.join(LOGIN_METHODS)}",
        )
    if method == "device":
        if not metadata.device_authorization_endpoint:
            raise ConfigError(
                "the identity provider does not advertise a device authorization endpoint",
                hint="use the browser login instead (--no-browser prints its URL)",
            )
        return "device"
    if method == "browser" or have_opener or skip_browser:
        return "browser"
    if metadata.device_authorization_endpoint and unavailable_reason():
        return "device"
    return "browser"


def _say(stderr: TextIO, text: str) -> None:
    print(text, file=stderr)
    stderr.flush()


def _open_or_print(
    url: str,
    *,
    start_url: str,
    port: int,
    opener: Callable[[str], object] | None,
    skip_browser: bool,
    unavailable: str,
    stderr: TextIO,
) -> None:
    """Show the authorization URL: open a browser when possible, print it otherwise.

    An `opener` callable runs in this process and gets `url` itself; the standard
    `webbrowser` runs a command, whose arguments every local user can read, so it gets
    the one-time `start_url` (see `_loopback`). Only stderr ever shows `url`.
    """
    why_not = ""
    if skip_browser:
        why_not = "skip"
    elif opener is None and unavailable:
        why_not = unavailable
    else:
        try:
            opened = opener(url) if opener is not None else webbrowser.open(start_url)
        except Exception:  # any failure of the opener means: print the URL instead
            log.debug("opening the browser failed", exc_info=True)
            opened = False
        if opened is False:
            why_not = "the browser could not be opened"
    if not why_not:
        _say(
            stderr,
            "Your browser has been opened to log in. If it did not open, visit this URL:\n\n"
            f"    {url}\n",
        )
        return
    intro = "" if why_not == "skip" else f"Cannot open a browser ({why_not}). "
    _say(stderr, f"{intro}To log in, open this URL in a browser:\n\n    {url}\n")
    if _in_ssh_session(os.environ):
        _say(
            stderr,
            "The browser must reach this machine's port"
            f" {port}: from your own computer, forward it with"
            f" `ssh -L {port}:localhost:{port} <this host>`, or use the device login"
            " (--device), or paste the final URL back (--paste).",
        )


def _exchange_error(exc: OAuthError) -> LoginError:
    text = f"the identity provider refused the authorization code: {exc.error}"
    if exc.description:
        text += f" ({exc.description})"
    return LoginError(
        text,
        error=exc.error,
        description=exc.description,
        hint="log in again; if it keeps failing, check the client's redirect URIs and"
        " PKCE settings at the identity provider",
    )


def _browser_login(
    *,
    oidc: OIDCParams,
    metadata: ProviderMetadata,
    http: IdPHttp,
    skip_browser: bool,
    opener: Callable[[str], object] | None,
    unavailable: str,
    callback_host: str,
    extra_params: Mapping[str, str] | None,
    stderr: TextIO,
    deadline: float,
    clock: Callable[[], float],
    now: Callable[[], float],
    read_redirect: Callable[[str], str] | None = None,
    preflight: bool = False,
) -> Token:
    port = oidc.port
    request: AuthorizationRequest = build_authorization_request(
        metadata=metadata,
        client_id=oidc.client_id,
        redirect_uri=format_redirect_uri(callback_host, port),
        scopes=_scopes(oidc, metadata),
        audience=oidc.audience,
        audience_param=oidc.audience_param,
        prompt=oidc.prompt,
        extra_params=extra_params,
    )
    if preflight:
        _preflight(http, request.url, oidc.client_id)
    if read_redirect is not None:
        code = _pasted_code(request, metadata, read_redirect, stderr)
        return _exchange(oidc, metadata, http, request, code, now)
    # Listen before showing the URL: the browser may come back very fast.
    with CallbackServer(
        host=callback_host,
        port=port,
        state=request.state,
        issuer=metadata.issuer,
        require_iss=metadata.iss_parameter_supported,
        authorization_url=request.url,
    ) as server:
        _open_or_print(
            request.url,
            start_url=server.start_url,
            port=port,
            opener=opener,
            skip_browser=skip_browser,
            unavailable=unavailable,
            stderr=stderr,
        )
        _say(stderr, f"Waiting for the browser to come back to {request.redirect_uri}"
             f" (up to {max(deadline - clock(), 0):.0f} s; Ctrl-C to cancel)...")
        code = server.wait(deadline=deadline, clock=clock)
    return _exchange(oidc, metadata, http, request, code, now)


class PreflightRefused(LoginError):
    """The authorization endpoint refused the request before any browser opened (HTTP 4xx).

    A `LoginError` like any other to callers; its own type because a provider that does
    not know a client cannot redirect an error to it, so it answers this way (the MCP SDK:
    400 `invalid_request`, "Client ID ... not found"): what `oauth_auth.resource` takes as
    the sign that a registered client was forgotten.
    """


def _preflight(http: IdPHttp, url: str, client_id: str) -> None:
    """Ask the authorization endpoint once, without a browser, whether it takes this
    request: a wrong client id or redirect URI is refused with a 4xx (the provider cannot
    redirect an error to a redirect URI it does not trust), which otherwise shows only in
    the browser while the command waits for the whole login timeout. A redirect or a page
    (the provider's login) passes; so does a provider that cannot be asked."""
    try:
        status, _ = http.probe(url)
    except OAuthAuthError as exc:
        log.debug("the authorization request's preflight failed: %s", exc)
        return
    if 400 <= status < 500 and status not in (401, 403, 429):
        raise PreflightRefused(
            f"the identity provider refused the authorization request (HTTP {status})"
            " before any browser opened",
            error="invalid_request",
            hint=f"check the client id ({client_id!r}), that its redirect URI"
            " http://localhost:<port>/callback is registered (--callback-port,"
            " --callback-host), and the scopes",
        )


#: How many pasted URLs of another login (a stale tab) are ignored before giving up.
PASTE_ATTEMPTS = 3


def _pasted_code(request: AuthorizationRequest, metadata: ProviderMetadata,
                 read_redirect: Callable[[str], str], stderr: TextIO) -> str:
    """The paste mode (SSH without port forwarding): the user opens the URL anywhere and
    pastes back the redirect URL the browser ended on, which is checked exactly like a
    callback (`parse_callback`: state, then iss, then error, then code)."""
    _say(stderr, f"To log in, open this URL in a browser:\n\n    {request.url}\n")
    _say(stderr, f"After the login the browser goes to {request.redirect_uri}?... (the"
         " page may fail to load: that is expected). Copy that whole URL from the"
         " address bar and paste it here (Ctrl-C to cancel).")
    for _ in range(PASTE_ATTEMPTS):
        pasted = read_redirect(request.redirect_uri).strip()
        head, _sep, query = pasted.partition("?")
        if head.rstrip("/") != request.redirect_uri.rstrip("/"):
            _say(stderr, f"That is not a URL under {request.redirect_uri}; paste the URL the"
                 " browser ended on.")
            continue
        try:
            return parse_callback(query.partition("#")[0], expected_state=request.state,
                                  issuer=metadata.issuer,
                                  require_iss=metadata.iss_parameter_supported)
        except StateMismatch:
            _say(stderr, "That URL belongs to another login (its state does not match);"
                 " paste the one from this login.")
    raise LoginError("no URL of this login was pasted", error="invalid_request",
                     hint="run the login again and paste the URL the browser ends on")


def _exchange(oidc: OIDCParams, metadata: ProviderMetadata, http: IdPHttp,
              request: AuthorizationRequest, code: str, now: Callable[[], float]) -> Token:
    """Trade the authorization code for tokens (once: a code is single-use)."""
    try:
        _, doc = http.post_form(
            metadata.token_endpoint,
            build_code_exchange(
                code=code,
                redirect_uri=request.redirect_uri,
                client_id=oidc.client_id,
                code_verifier=request.code_verifier,
                audience=oidc.audience,
                audience_param=oidc.audience_param,
            ),
            client=_client(oidc, metadata),
            replayable=False,  # an authorization code is single-use (RFC 6749 4.1.2)
        )
    except OAuthError as exc:
        raise _exchange_error(exc) from exc
    token = parse_token_response(doc, now())
    return _checked_id_token(
        token, oidc=oidc, metadata=metadata, http=http, nonce=request.nonce,
        required=request.wants_id_token,
    )


def _scopes(oidc: OIDCParams, metadata: ProviderMetadata) -> list[str]:
    """The login's scopes: `openid` unless the server is OAuth-only, `offline_access`
    as `OIDCParams.offline_access` and the provider's `scopes_supported` say."""
    return login_scopes(
        oidc.scopes,
        openid=metadata.issues_id_tokens,
        offline_access=wants_offline_access(oidc.offline_access, metadata.scopes_supported),
    )


def _client(oidc: OIDCParams, metadata: ProviderMetadata) -> ClientAuthentication:
    return client_auth_for(
        oidc.client_id, oidc.client_secret, metadata,
        fallback=oidc.provider_preset.client_auth_methods,
    )


def _checked_id_token(
    token: Token,
    *,
    oidc: OIDCParams,
    metadata: ProviderMetadata,
    http: IdPHttp,
    nonce: str | None,
    required: bool,
) -> Token:
    """The token, its ID token validated; an OAuth-only login (no `openid` asked for)
    keeps what the response gave without an ID token."""
    id_token = token.id_token
    if id_token is None:
        if required:
            raise LoginError(
                "the identity provider returned no ID token although openid was requested",
                error="invalid_response",
                hint="check that the client may use the openid scope",
            )
        return token
    if not required and not metadata.issues_id_tokens:
        # Nothing to verify it with, and nothing asked for it: keep no unverified token.
        return replace(token, id_token=None)
    validate_id_token(
        id_token,
        metadata=metadata,
        client_id=oidc.client_id,
        nonce=nonce,
        http=http,
        client_secret=oidc.client_secret,
        issuer_aliases=oidc.provider_preset.id_token_issuers,
    )
    return token


@scrubs
def interactive_login(
    *,
    oidc: OIDCParams,
    metadata: ProviderMetadata,
    http: IdPHttp,
    method: str = "auto",
    skip_browser: bool = False,
    open_browser: Callable[[str], object] | None = None,
    timeout: float = 300.0,
    callback_host: str = "localhost",
    extra_params: Mapping[str, str] | None = None,
    stderr: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.time,
    read_redirect: Callable[[str], str] | None = None,
    preflight: bool = False,
) -> Token:
    """Run the login; return the token it obtained.

    The token endpoint's response is parsed once (`parse_token_response`: a Bearer token,
    a usable lifetime) before its ID token is validated, when the flow returned one.
    Nothing is stored.

    Args:
        oidc: issuer, client id, scopes, audience and callback port.
        metadata: the provider's discovered and validated metadata.
        http: the IdP client (token endpoint, JWKS, device endpoint).
        method: "auto", "browser" or "device" (see `choose_method`).
        skip_browser: browser flow, but print the URL instead of opening a browser.
        open_browser: called with the authorization URL (device flow: the verification
            URI, its complete form when given); None means the standard `webbrowser`,
            which gets the one-time start page (device flow: the verification URI alone),
            since its command line is readable by every local user.
        timeout: seconds for the whole login.
        callback_host: the redirect URI's loopback host; the path is always /callback.
        extra_params: added to (or overriding) the authorization request's parameters.
        stderr: where the instructions for the user go (default: `sys.stderr` now).
        clock: monotonic seconds, for the timeout.
        sleep: waits between device-grant polls.
        now: seconds since the epoch, the moment a token response arrived (its expiry).
        read_redirect: the paste mode: called with the redirect URI, returns the URL
            the user's browser ended on (no callback server is started).
        preflight: ask the authorization endpoint (no browser) whether it takes the
            request first, so a wrong client id fails at once (the command line does).

    Raises:
        LoginError: the login failed, was denied, timed out, or a check failed.
        OAuthError: `invalid_response` when the token response is not a usable Bearer
            token (the same error a refresh gives).
        ConfigError: an unknown method, or one the provider cannot do.
        TransportError: the identity provider could not be reached.
    """
    out = sys.stderr if stderr is None else stderr
    if timeout <= 0:
        raise ConfigError(f"login timeout {timeout!r} must be positive")
    deadline = clock() + timeout
    unavailable_cache: list[str] = []

    def unavailable() -> str:
        if not unavailable_cache:
            unavailable_cache.append(browser_unavailable_reason())
        return unavailable_cache[0]

    chosen = choose_method(
        method,
        metadata=metadata,
        have_opener=open_browser is not None,
        skip_browser=skip_browser,
        unavailable_reason=unavailable,
    )
    if chosen == "device":
        # skip_browser means "open nothing, print": the device instructions are printed anyway.
        opener: Callable[[str], object] | None = None
        if not skip_browser:
            opener = open_browser
            if opener is None and not unavailable():
                opener = webbrowser.open
        scopes = _scopes(oidc, metadata)
        doc = device_login(
            client_id=oidc.client_id,
            scopes=scopes,
            audience=oidc.audience,
            audience_param=oidc.audience_param,
            client=_client(oidc, metadata),
            extra_params=extra_params,
            metadata=metadata,
            http=http,
            open_url=opener,
            # The browser command's arguments are readable by every local user: it gets
            # the verification URI alone, never the complete form with the user code.
            open_complete=opener is open_browser,
            stderr=out,
            deadline=deadline,
            clock=clock,
            sleep=sleep,
        )
        token = parse_token_response(doc, now())
        # No nonce in the device grant: the rest of the checks still apply. An ID token
        # is not required: providers differ on whether the device grant returns one.
        return _checked_id_token(
            token, oidc=oidc, metadata=metadata, http=http, nonce=None,
            required=False,
        )

    return _browser_login(
        oidc=oidc,
        metadata=metadata,
        http=http,
        skip_browser=skip_browser,
        opener=open_browser,
        unavailable="" if open_browser is not None or skip_browser else unavailable(),
        callback_host=callback_host,
        extra_params=extra_params,
        stderr=out,
        deadline=deadline,
        clock=clock,
        now=now,
        read_redirect=read_redirect,
        preflight=preflight,
    )
