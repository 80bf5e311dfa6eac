"""OAuthTokenSource: access tokens through four tiers, one sync core, a thin async driver.

The tiers, in the order `token()` tries them:

1. memory: this object's access token, refreshed with the refresh token it holds once it
   enters the preemptive window;
2. the shared access-token cache: secrets entry `<key>_AT` = `<token>|<RFC 3339 expiry>`,
   so short-lived processes reuse one access token instead of each spending the refresh
   token;
3. the stored refresh token: secrets entry `<key>`, which restores the session across
   process restarts;
4. a new session: the interactive login (browser + PKCE, or the device grant), only
   when `interactive`; or, for a machine, the `grant` (client credentials, token
   exchange: `oauth_auth.grants`), which runs where the login would, under the same
   locks (`_new_session` is the one place that picks).

Everything slow (secrets backend, provider, lock files, browser) happens in `_obtain()`,
under an in-process lock and, when a secrets provider is shared, the session store's
cross-process lock, where the shared entries are re-read before refreshing: one refresh
per expiry, however many threads, tasks and processes ask at once. How the entries are
read, locked, written and deleted is the session store's job (`_store`); this module
keeps only the tier order. The async driver only adds a lock per event loop (asyncio or
trio, through anyio) and runs `_obtain()` in a worker thread.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO, TypeGuard

from ._keys import normalize_scopes
from ._params import LOGIN_METHODS, LoginMethod, OIDCParams, merge_auth_params
from ._scrub import scrubbed
from ._token import (
    DEFAULT_PREEMPTIVE_WINDOW,
    Token,
    fingerprint,
    identity_claims,
    parse_token_response,
)
from .errors import (
    ConfigError,
    InvalidGrantError,
    LockTimeoutError,
    LoginError,
    LoginRequiredError,
    OAuthAuthError,
    OAuthError,
    SecretsError,
    fresh_copy,
    short_error,
)

if TYPE_CHECKING:
    import ssl

    from ._discovery import ProviderMetadata
    from ._http import IdPHttp
    from ._store import SecretsSessionStore
    from .grants import Grant
    from .secrets import SecretsProvider

__all__ = [
    "LOGIN_METHODS",
    "ClientRenewal",
    "LoginMethod",
    "LogoutResult",
    "OAuthTokenSource",
    "SourceStatus",
    "TokenSourceLike",
    "has_fast_path",
]

log = logging.getLogger("oauth_auth")

#: First delay before retrying a failed proactive refresh while the token is still valid;
#: doubled after each further failure, up to PROACTIVE_RETRY_MAX.
PROACTIVE_RETRY_MIN = 5.0
PROACTIVE_RETRY_MAX = 60.0
#: Seconds after a token from the provider during which a 401 gets no further refresh.
DEFAULT_REAUTH_INTERVAL = 10.0
#: How long a process waits for another one's refresh or login beyond the login timeout.
LOCK_GRACE = 60.0
#: How many rejected access tokens are remembered (never served again from tier 2).
MAX_REJECTED = 64
#: Refresh errors besides invalid_grant that a new login can cure (the grant lacks a scope
#: or resource now asked for). Any other provider error (invalid_client, a malformed
#: answer...) is raised even when interactive: a browser login would not fix it, and the
#: user should see the real cause.
LOGIN_CURES = frozenset({"invalid_scope", "invalid_target"})
#: What the fast path serves when memory holds nothing: no token, never valid.
_EMPTY: tuple[str, float] = ("", -math.inf)


class ClientRenewal(Protocol):
    """Replaces a client the authorization server no longer knows (it forgot a client
    registered by RFC 7591: a server reset, an MCP server with in-memory storage).

    `oauth_auth.resource.resource_session` gives one to the source of a session whose
    client it registered itself, never for a client id the user gave: it alone decides
    which failures mean "unknown client" and how a client is registered anew. The source
    only gives it the failures, under its locks, and retries once: the retry-once comes
    from the flow's shape, so nothing can loop.
    """

    def unknown_client(self, failure: OAuthAuthError) -> bool:
        """Whether `failure` (of a login or a refresh) says the server does not know the
        source's client."""
        ...

    def renew(self, oidc: OIDCParams, *, register: bool) -> OIDCParams | None:
        """`oidc` with another client: one kept meanwhile by another process, else (with
        `register`) a new registration, kept; None when there is none."""
        ...

    def explain(self, failure: OAuthAuthError, *, renewed: bool) -> OAuthAuthError:
        """The error to raise for `failure` that no (further) renewal cures; `renewed`:
        the client had been replaced already, and the new one was refused too."""
        ...


class TokenSourceLike(Protocol):
    """What `OIDCAuth` needs from a token source; `OAuthTokenSource` is one.

    `token()` may be called from any thread and `atoken()` from any task, so an
    implementation must be safe for that. `invalidate(token)` is called with the token a
    resource server answered 401 to, before asking for a fresh one.
    """

    def token(self) -> str: ...

    async def atoken(self) -> str: ...

    def invalidate(self, token: str | None = None) -> None: ...

    async def ainvalidate(self, token: str | None = None) -> None: ...


@dataclass(frozen=True)
class LogoutResult:
    """What `logout_result()` did; the CLI reports it.

    Attributes:
        had_refresh_token: a refresh token was stored or held in memory.
        revoked: the provider confirmed its revocation (RFC 7009).
        revocation_error: why it was not revoked ("" when it was, or nothing was held).
        deleted: both secrets entries were deleted.
        access_token_revoked: a session without a refresh token had its access token (in
            memory, else the shared entry's, while unexpired) revoked on its own, so a
            copy someone kept stops working now, not when it expires. (Revoking a refresh
            token revokes the access tokens of its grant: RFC 7009 section 2.1.)
    """

    had_refresh_token: bool
    revoked: bool
    revocation_error: str
    deleted: bool
    access_token_revoked: bool = False


@dataclass(frozen=True)
class SourceStatus:
    """A read-only view of what a token source holds, for status displays; no secret.

    Freshness is judged by the source's own rule (its preemptive window, and a token a
    resource server rejected is never fresh), so a display and `token()` agree.

    Attributes:
        memory_expiry: the expiry of the access token held in memory (tier 1); None when
            none is held or it has no expiry (see `memory_token`).
        memory_token: an access token is held in memory.
        memory_refresh_token: a refresh token is held in memory.
        shared_token: the shared access-token entry (tier 2) holds a token.
        shared_expiry: that token's expiry (None: no entry).
        shared_fresh: `token()` would serve that entry now.
        stored_refresh_token: the store holds a refresh token (tier 3); None when it was
            not read or the read failed.
        errors: what failed while reading the store (tier 2 first, then tier 3).
        identity: who the session in memory is logged in as, from its (validated) ID
            token: `sub`, and `email`, `name`, `preferred_username` when present; empty
            without an ID token. A login shows it, so a user sees which account was stored.
    """

    memory_expiry: datetime | None = None
    memory_token: bool = False
    memory_refresh_token: bool = False
    shared_token: bool = False
    shared_expiry: datetime | None = None
    shared_fresh: bool = False
    stored_refresh_token: bool | None = None
    errors: tuple[OAuthAuthError, ...] = ()
    identity: Mapping[str, str] = field(default_factory=dict)


class OAuthTokenSource:
    """Serves access tokens for one OIDC client, refreshing and logging in as needed.

    Safe for concurrent use: `token()` from any number of threads, `atoken()` from any
    number of tasks on any number of event loops, and any number of processes sharing one
    secrets provider (a cross-process lock per key serializes refreshes and logins).
    A token in memory costs one attribute read and a clock call: no I/O, no lock.

    Adapters that call `token()` on every request may read the memory tier themselves,
    as `OIDCAuth` does: `fast_path` is `(access token, serve until)`, and while
    `clock() < fast_path[1]`, `token()` returns `fast_path[0]` without doing anything
    else. `has_fast_path(source)` says whether that holds for a given object (not for a
    subclass that overrides `token()`).

    Args:
        oidc: the provider and client.
        key_provider: returns the secrets key of this session; called when needed (it
            may be called several times per `token()`), so it can read a config file.
        secrets_provider: where tiers 2 and 3 live; None keeps the session in memory only.
        interactive: whether tier 4 (a login with the user) may run.
        skip_browser: print the login URL to stderr instead of opening a browser.
        config_persister: called as `(key, expiry)` after a login or a rotation of the
            refresh token (never on routine refreshes); `expiry` is the UTC expiry of the
            access token issued with it (the epoch when the provider gave none).
        fallback_error: raised (a fresh copy each time) when there are no credentials and
            nothing went wrong.
        preemptive_refresh_window: how long before expiry to stop serving a token
            (timedelta or seconds; None means 30 s; negative is a ValueError).
        login_method: "auto", "browser" or "device".
        login_timeout: seconds for the whole interactive login.
        open_browser: called with the login URL; None uses the standard webbrowser.
        http_timeout: seconds allowed for each call to the provider, as a whole
            (connect, send and every read).
        max_retries: retries of a provider call answered 5xx/429 or refused.
        lock_timeout: seconds to wait for another process's refresh or login
            (None: login_timeout + 60 s).
        lock_dir: directory of the cross-process lock files (default: the user's runtime
            directory, or $OAUTH_AUTH_LOCK_DIR).
        callback_host: host of the loopback redirect URI ("localhost", "127.0.0.1" or
            "::1"); None uses `oidc.callback_host`.
        auth_params: extra or overriding authorization request parameters, merged over
            `oidc.auth_params`.
        clock: seconds since the epoch; tests inject a fake one.
        transport: an httpx transport for provider calls (tests, proxies, custom TLS).
        verify: TLS verification for provider calls: a bool, an `ssl.SSLContext`, or a CA
            bundle path (turned into an SSLContext).
        stderr: where login instructions go (default: sys.stderr at login time).
        reauth_interval: seconds after a 401 that a fresh token did not cure during which
            no 401 gets another refresh (see `reauth_allowed`); 0 turns that off.
        grant: how a machine gets a new token when tiers 1-3 have none, instead of an
            interactive login (`ClientCredentials`, `TokenExchange`); it runs under the
            same locks, so N processes make one token request. `interactive` is then
            not used.
        read_redirect: the browser login's paste mode (SSH without port forwarding):
            called with the redirect URI, it returns the URL the user's browser ended
            on, checked like a callback; no callback server is started.
        preflight: the browser login first asks the authorization endpoint, without a
            browser, whether it takes the request, so a wrong client id fails at once.
        renew_client: replaces a registered client the server forgot (`ClientRenewal`;
            what `resource_auth` passes for a client it registered): a login refused
            for it registers anew and logs in once more, a refresh refused for it takes
            another process's newer registration or, when interactive, logs in with a
            new one.
    """

    def __init__(
        self,
        oidc: OIDCParams,
        *,
        key_provider: Callable[[], str] | None = None,
        secrets_provider: SecretsProvider | None = None,
        interactive: bool = False,
        skip_browser: bool = False,
        config_persister: Callable[[str, datetime], None] | None = None,
        fallback_error: BaseException | None = None,
        preemptive_refresh_window: timedelta | float | None = None,
        login_method: LoginMethod = "auto",
        login_timeout: float = 300.0,
        open_browser: Callable[[str], object] | None = None,
        http_timeout: float = 10.0,
        max_retries: int = 2,
        lock_timeout: float | None = None,
        lock_dir: str | os.PathLike[str] | None = None,
        callback_host: str | None = None,
        auth_params: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        transport: Any = None,
        verify: bool | str | ssl.SSLContext = True,
        stderr: TextIO | None = None,
        reauth_interval: float = DEFAULT_REAUTH_INTERVAL,
        grant: Grant | None = None,
        read_redirect: Callable[[str], str] | None = None,
        preflight: bool = False,
        renew_client: ClientRenewal | None = None,
    ) -> None:
        if not isinstance(oidc, OIDCParams):
            raise TypeError("oidc must be an OIDCParams")
        if key_provider is None:
            raise TypeError(
                "key_provider is required: pass a function that returns the secrets key,"
                " for example lambda: derive_secret_key('MYAPP_', api_url, issuer)"
            )
        if not callable(key_provider):
            raise TypeError("key_provider must be callable")
        window = _window_seconds(preemptive_refresh_window)
        if login_method not in LOGIN_METHODS:
            raise ConfigError(
                f"login_method {login_method!r} is not one of {', '.join(LOGIN_METHODS)}"
            )
        if login_timeout <= 0:
            raise ConfigError("login_timeout must be positive")
        if http_timeout <= 0:
            raise ConfigError("http_timeout must be positive")
        if lock_timeout is not None and lock_timeout <= 0:
            raise ConfigError("lock_timeout must be positive")
        if not reauth_interval >= 0:
            raise ConfigError("reauth_interval must not be negative")
        if grant is not None:
            from .grants import Grant

            if not isinstance(grant, Grant):
                raise ConfigError(
                    "grant must be a grant of oauth_auth.grants",
                    hint="for example grant=ClientCredentials() or"
                    " grant=TokenExchange(KubernetesToken())",
                )
        self.grant = grant
        self.oidc = oidc
        self.interactive = interactive
        self.skip_browser = skip_browser
        self.login_method: LoginMethod = login_method
        self.login_timeout = float(login_timeout)
        self.preemptive_refresh_window = window
        #: Seconds since the epoch: what every freshness decision is judged against.
        self.clock = clock
        #: The memory tier as the fast path reads it: (access token, serve until); until
        #: is -inf when memory holds nothing. One tuple read and one comparison per call.
        self.fast_path: tuple[str, float] = _EMPTY
        self._key_provider = key_provider
        self._secrets = secrets_provider
        self._persister = config_persister
        self._fallback = fallback_error
        self._open_browser = open_browser
        self._http_timeout = float(http_timeout)
        self._max_retries = max_retries
        self._lock_timeout = (
            float(lock_timeout) if lock_timeout is not None else self.login_timeout + LOCK_GRACE
        )
        self._lock_dir = lock_dir
        self._callback_host = callback_host or oidc.callback_host
        self._auth_params = merge_auth_params(oidc.auth_params, auth_params)
        self._transport = transport
        self._verify = verify
        self._stderr = stderr
        self.reauth_interval = float(reauth_interval)
        self._read_redirect = read_redirect
        self._preflight = preflight
        self._renew_client = renew_client
        self._uncured_at = -math.inf  # when a fresh token last got a 401 too
        # Private test switch: turn the cross-process lock off to show the race it prevents.
        self._cross_process_lock = True

        self._lock = threading.Lock()
        self._memory: Token | None = None  # tier 1: the access token (set with `_keep`)
        self._refresh_token: str | None = None  # tier 1: the refresh token
        self._retry_at = 0.0  # no proactive refresh before this (after a failure)
        self._failures = 0
        self._rejected: dict[str, None] = {}  # access tokens a resource server refused
        self._store: SecretsSessionStore | None = None  # the session store of the last key
        self._warned_no_refresh = False
        self._http_client: IdPHttp | None = None
        # One async lock per event loop (asyncio) or run (trio), made by anyio.
        self._alocks: weakref.WeakKeyDictionary[object, Any] = weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return (
            f"OAuthTokenSource(issuer={self.oidc.issuer!r}, client_id={self.oidc.client_id!r},"
            f" token={self._memory!r}, interactive={self.interactive})"
        )

    def _keep(self, token: Token | None) -> Token | None:
        """Set the memory tier, and the fast path's copy of it."""
        self._memory = token
        if token is None:
            self.fast_path = _EMPTY
        elif token.expiry is None:
            self.fast_path = (token.access_token, math.inf)
        else:
            until = token.refresh_at if token.refresh_at is not None else token.expiry
            self.fast_path = (token.access_token, until)
        return token

    # ------------------------------------------------------------------ public API

    def token(self) -> str:
        """A valid access token, from the first tier that has one.

        Raises:
            LoginRequiredError: (or `fallback_error`) nothing usable and not interactive.
            InvalidGrantError: the stored session is dead and not interactive.
            SecretsError, TransportError, OAuthError, LoginError: the real cause.
        """
        access, until = self.fast_path
        if self.clock() < until:
            return access
        del access  # a stale token must not stay in this frame's locals if this fails
        with self._lock, scrubbed:
            return self._obtain().access_token

    async def atoken(self) -> str:
        """`token()` for asyncio and trio: never blocks the event loop.

        A token in memory is returned at once; otherwise one task per event loop runs the
        blocking tiers in a worker thread while the others wait on an async lock, then
        find the fresh token in memory.
        """
        access, until = self.fast_path
        if self.clock() < until:
            return access
        del access
        import anyio.to_thread

        async with self._async_lock():
            access, until = self.fast_path
            if self.clock() < until:
                return access
            del access
            return await anyio.to_thread.run_sync(self.token)

    @property
    def id_token(self) -> str | None:
        """The ID token that came with the access token held in memory: after a login or
        a refresh that returned one; None otherwise (a token from the shared cache has
        none). The command line keeps it beside the session for `status`."""
        held = self._memory
        return held.id_token if held is not None else None

    def reauth_allowed(self) -> bool:
        """Whether a 401 deserves a refresh now (`OIDCAuth` asks before its retry).

        Not within `reauth_interval` seconds of `reauth_failed()`: a fresh token was
        refused then too, so another would not cure this one either, and an API that
        always answers 401 would otherwise cost a refresh per request.
        """
        return self.clock() - self._uncured_at >= self.reauth_interval

    def reauth_failed(self) -> None:
        """Note that the retry with a fresh token got a 401 too (`OIDCAuth` calls it)."""
        self._uncured_at = self.clock()

    def step_up(self, scopes: Sequence[str]) -> str | None:
        """Log in once more, asking for this session's scopes and `scopes` too.

        For a resource whose 403 says `insufficient_scope` and names the scopes it needs
        (RFC 6750 section 3.1, the MCP step-up): `OIDCAuth` calls this and sends the
        request once more with the new token. A refresh cannot widen a grant, so only an
        interactive login can, and only when it would ask for something new: a source that
        is not interactive, or that already asked for every one of `scopes`, returns None
        and the 403 stands. The new session replaces the stored one (under the same lock
        as a refresh), and later logins of this source ask for the union too.
        """
        wanted = tuple(normalize_scopes(self.oidc.scopes, add=scopes))
        if not self.interactive or wanted == self.oidc.scopes:
            return None
        with self._lock, scrubbed:
            if wanted == self.oidc.scopes:  # another thread stepped up meanwhile
                return self._obtain().access_token
            self.oidc = dataclasses.replace(self.oidc, scopes=wanted)
            if self._secrets is None:
                return self._login_and_store(None, None).access_token
            store = self._store_of(self._key())
            with store.lock(self._lock_timeout):
                held = store.read_refresh_token().held
                return self._login_and_store(store, held).access_token

    def invalidate(self, token: str | None = None) -> None:
        """Forget an access token a resource server rejected (tiers 1 and 2).

        With `token`, the in-memory token is dropped only if it is that token, and the
        `<key>_AT` entry is deleted only if it still holds it, so a fresher token written
        by another process survives: the check and the delete happen under the key's
        refresh lock, taken without waiting (if another process holds it, it is refreshing
        and will replace the entry itself). Without `token`, both are dropped. The refresh
        token is kept: the next `token()` refreshes. Backend failures are logged, not
        raised, and the token is never served again by this object either way.
        """
        with self._lock:
            current = self._memory
            if token is None or (current is not None and current.access_token == token):
                self._keep(None)
                self._retry_at = 0.0
            if token is not None:
                self._remember_rejected(token)
            elif current is not None:
                self._remember_rejected(current.access_token)
            if self._secrets is None:
                return
            try:
                store = self._store_of(self._key())
                with scrubbed, store.lock(0):
                    store.delete_access_token_if(token)
            except LockTimeoutError:
                log.debug("another process is refreshing; it replaces the shared access token")
            except OAuthAuthError as exc:
                log.debug("could not drop the shared access token: %s", exc)

    async def ainvalidate(self, token: str | None = None) -> None:
        """`invalidate()` for asyncio and trio (the secrets backend runs in a worker
        thread)."""
        held = self._memory
        if self._secrets is None and (
            token is None or held is None or held.access_token != token
        ):
            if token is not None:
                self._remember_rejected(token)
            return
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.invalidate, token)

    def status(self, *, read_store: bool = True) -> SourceStatus:
        """What each tier holds, without a secret: for `oauth-auth status` and the like.

        Reads the shared access-token entry and the stored refresh token (unless
        `read_store` is False); a failed read is reported in `errors`, never raised.
        """
        with self._lock:
            held, refresh = self._memory, self._refresh_token
        memory_expiry = held.expiry_datetime if held is not None else None
        identity = identity_claims(held.id_token if held is not None else None)
        if not read_store:
            return SourceStatus(memory_expiry, held is not None, bool(refresh),
                                identity=identity)
        errors: list[OAuthAuthError] = []
        shared: Token | None = None
        stored: bool | None = None
        if self._secrets is None:
            errors.append(_no_secrets_error())
        else:
            try:
                store = self._store_of(self._key())
            except OAuthAuthError as exc:
                errors.append(exc)
            else:
                try:
                    shared = store.read_access_token()
                except OAuthAuthError as exc:
                    errors.append(exc)
                try:
                    stored = bool(store.read_refresh_token().held)
                except OAuthAuthError as exc:
                    errors.append(exc)
        return SourceStatus(
            memory_expiry=memory_expiry,
            memory_token=held is not None,
            memory_refresh_token=bool(refresh),
            shared_token=shared is not None,
            shared_expiry=shared.expiry_datetime if shared is not None else None,
            shared_fresh=shared is not None and self._servable(shared, self.clock()),
            stored_refresh_token=stored,
            errors=tuple(errors),
            identity=identity,
        )

    def logout(self) -> None:
        """End the session: revoke the refresh token (or, without one, the access token) at
        the provider where it can (RFC 7009), then delete both secrets entries and forget
        the tokens in memory.

        A failed revocation is logged and does not stop the local deletion.

        Raises:
            SecretsError: the entries could not be deleted.
        """
        self.logout_result()

    async def alogout(self) -> None:
        """`logout()` for asyncio and trio."""
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.logout_result)

    def logout_result(self) -> LogoutResult:
        """`logout()`, returning what it did (revoked or not, and why not)."""
        with scrubbed:
            return self._logout()

    def _logout(self) -> LogoutResult:
        with self._lock:
            key = self._key()
            store = self._store_of(key) if self._secrets is not None else None
            stored: str | None = None
            read_error: OAuthAuthError | None = None
            if store is not None:
                try:
                    stored = store.read_refresh_token().held
                except OAuthAuthError as exc:
                    read_error = exc
            refresh = stored or self._refresh_token
            revoked, why = False, ""
            if refresh:
                revoked, why = self._revoke(refresh)
            # Revoking a refresh token revokes the access tokens of its grant (RFC 7009
            # section 2.1: every provider here with a revocation endpoint does), so only a
            # session without one gets its access token revoked on its own.
            access = "" if refresh else self._access_to_revoke(store)
            access_revoked = bool(access) and self._revoke(access, "access_token")[0]
            self._keep(None)
            self._refresh_token = None
            deleted = False
            if store is not None:
                store.delete()
                if read_error is not None:
                    raise read_error
                deleted = True
            return LogoutResult(bool(refresh), revoked, why, deleted, access_revoked)

    def _access_to_revoke(self, store: SecretsSessionStore | None) -> str:
        """The access token a logout revokes: the one in memory, else the shared entry's
        while it has not expired (revoking an expired one would only cost a request)."""
        held = self._memory
        if held is None and store is not None:
            try:
                held = store.read_access_token()
            except OAuthAuthError:
                held = None
        if held is None or (held.expiry is not None and held.expiry <= self.clock()):
            return ""
        return held.access_token

    # ------------------------------------------------------------------ the tiers

    def _obtain(self) -> Token:
        """Tiers 1-4 under the in-process lock (caller holds `self._lock`)."""
        now = self.clock()
        current = self._memory
        if current is not None and current.fresh(now):
            return current
        if current is not None and current.valid(now) and now < self._retry_at:
            return current  # a proactive refresh failed recently: serve, retry later
        try:
            new = self._from_shared_tiers()
        except OAuthAuthError as exc:
            now = self.clock()
            if current is not None and current.valid(now):
                self._failures += 1
                delay = min(PROACTIVE_RETRY_MIN * 2 ** (self._failures - 1), PROACTIVE_RETRY_MAX)
                self._retry_at = now + delay
                log.warning(
                    "refreshing the access token failed (%s); serving the current one until"
                    " it expires, next attempt in %.0f s", short_error(exc), delay,
                )
                return current
            raise
        self._failures = 0
        self._retry_at = 0.0
        return new

    def _from_shared_tiers(self) -> Token:
        errors: list[OAuthAuthError] = []
        if self._secrets is None:
            return self._without_secrets(errors)
        store = self._store_of(self._key())
        hit = self._read_shared(store, errors)
        if hit is not None:
            return hit
        # While we wait for the lock, another process is most likely refreshing: its token
        # ends the wait as soon as it is shared, without taking the lock (a fleet's lease;
        # see `_store`). `_read_shared` applies the one tier-2 rule, so a token that is
        # expiring, rejected or absent never ends it (its read failures are not kept:
        # one per pause would pile up; the read before the wait kept the first).
        with store.lock(self._lock_timeout, done=lambda: self._read_shared(store, [])) as lock:
            if lock.found is not None:  # not `held`: serve it and touch nothing else
                log.debug("another process refreshed while this one waited; its token is"
                          " served without taking the lock")
                return lock.found
            # Another process may have refreshed while we waited for the lock.
            hit = self._read_shared(store, errors)
            if hit is not None:
                return hit
            try:
                stored = store.read_refresh_token()
            except OAuthAuthError as exc:
                # Under the lock a failed read is an error, not a miss: refreshing with an
                # older copy could spend a rotated token and end the session.
                errors.append(exc)
                if self.grant is None:
                    raise
                # A machine's grant spends nothing stored: a store that cannot be read
                # (a CI runner without a keyring) costs the sharing, not the token.
                log.warning("the secrets store failed (%s); the new token is not shared",
                            short_error(exc))
                return self._grant_and_store(self.grant, store, None)
            refresh = stored.token or self._refresh_token
            if refresh:
                try:
                    return self._refresh_and_store(store, refresh, stored.held)
                except InvalidGrantError as exc:
                    errors.append(exc)
                    retried = self._after_invalid_grant(store, refresh)
                    if retried is not None:
                        return retried
                except OAuthError as exc:
                    errors.append(exc)
                    renewal = self._renewal_for(exc)
                    if renewal is not None:
                        return self._after_unknown_client(renewal, store, refresh,
                                                          stored.held, exc)
                    if not (self._can_start_session() and exc.error in LOGIN_CURES):
                        raise
            if self._can_start_session():
                return self._new_session(store, stored.held)
        raise self._no_credentials(errors)

    def _without_secrets(self, errors: list[OAuthAuthError]) -> Token:
        """Tiers 1 and 4 only: nothing is shared, so no lock is taken."""
        if self._refresh_token:
            try:
                return self._refresh_and_store(None, self._refresh_token, None)
            except InvalidGrantError as exc:
                self._refresh_token = None
                errors.append(exc)
            except OAuthError as exc:
                errors.append(exc)
                renewal = self._renewal_for(exc)
                if renewal is not None:
                    return self._after_unknown_client(renewal, None, self._refresh_token,
                                                      None, exc)
                if not (self._can_start_session() and exc.error in LOGIN_CURES):
                    raise
        if self._can_start_session():
            return self._new_session(None, None)
        if errors:
            raise errors[0]
        raise _no_secrets_error()

    def _servable(self, shared: Token, now: float) -> bool:
        """The tier-2 rule: serve a shared token while more than our window remains,
        and never one a resource server rejected."""
        return (
            shared.expiry is not None
            and shared.access_token not in self._rejected
            and now < shared.expiry - self.preemptive_refresh_window
        )

    def _read_shared(
        self, store: SecretsSessionStore, errors: list[OAuthAuthError]
    ) -> Token | None:
        """Tier 2: the shared `<key>_AT` entry, if `_servable`; kept in memory too."""
        try:
            shared = store.read_access_token()
        except OAuthAuthError as exc:
            log.debug("reading the shared access token failed: %s", exc)
            errors.append(exc)
            return None
        if shared is None or shared.expiry is None or not self._servable(shared, self.clock()):
            return None
        log.debug("access token %s served from the shared cache", fingerprint(shared.access_token))
        return self._keep(Token(shared.access_token, shared.expiry,
                                refresh_at=shared.expiry - self.preemptive_refresh_window))

    def _refresh_and_store(
        self, store: SecretsSessionStore | None, refresh: str, held: str | None
    ) -> Token:
        """Spend `refresh` at the token endpoint, then keep and persist the result."""
        from ._protocol import client_auth_for, refresh_form

        meta = self._metadata()
        if store is not None and not store.confirm_lock():
            # Our lease ran out (a slow provider, a pause): its new holder may have spent
            # `refresh` already, and a reuse can cost the whole grant. Use its token if
            # it is there yet, else fail without spending anything.
            hit = self._read_shared(store, [])
            if hit is not None:
                return hit
            raise LockTimeoutError(
                "the refresh lease ran out before the refresh; the refresh token was kept",
                hint="try again (another process holds the lease now), and make lock_lease"
                " longer than a refresh can take",
            )
        oidc = self.oidc
        form = refresh_form(refresh, oidc.client_id, oidc.audience, oidc.audience_param)
        log.debug("refreshing with refresh token %s", fingerprint(refresh))
        _, doc = self._http().post_form(
            meta.token_endpoint,
            form,
            client=client_auth_for(
                oidc.client_id, oidc.client_secret, meta,
                fallback=oidc.provider_preset.client_auth_methods,
            ),
        )
        token = parse_token_response(doc, self.clock(), previous_refresh_token=refresh)
        return self._install(store, token, held)

    def _after_invalid_grant(self, store: SecretsSessionStore, failed: str) -> Token | None:
        """The refresh token was refused. If a sibling rotated it meanwhile, use the newer
        one once; otherwise drop the dead one (only if it is still what is stored)."""
        try:
            stored = store.read_refresh_token().held
        except OAuthAuthError as exc:
            log.warning("could not re-read the refresh token after invalid_grant: %s", exc)
            return None
        if stored and stored != failed:
            log.info("the stored refresh token changed meanwhile; retrying with it")
            try:
                return self._refresh_and_store(store, stored, stored)
            except InvalidGrantError:
                failed = stored
        if self._refresh_token in (failed, stored):
            self._refresh_token = None
        try:
            store.delete_refresh_token_if(failed)
        except OAuthAuthError as exc:
            log.warning("could not delete the dead refresh token: %s", exc)
        return None

    def _renewal_for(self, failure: OAuthAuthError) -> ClientRenewal | None:
        """`renew_client` when `failure` says the server forgot the client it can replace
        (a machine's grant has no registered client to replace); None otherwise."""
        renewal = self._renew_client
        if renewal is None or self.grant is not None or not renewal.unknown_client(failure):
            return None
        return renewal

    def _after_unknown_client(self, renewal: ClientRenewal, store: SecretsSessionStore | None,
                              refresh: str, held: str | None, failure: OAuthError) -> Token:
        """A refresh was refused because the server does not know the client. Another
        process may have registered a new one and logged in with it already (its refresh
        token is what `refresh` is now): switch to that client and refresh once more.
        Otherwise an interactive source logs in with a new registration; one that is not
        interactive says to log in (the refresh token stays: it is the login's to replace).
        """
        newer = renewal.renew(self.oidc, register=False)
        if newer is not None:
            log.info("the server does not know client %s; using client %s, registered"
                     " meanwhile", self.oidc.client_id, newer.client_id)
            self.oidc = newer
            try:
                return self._refresh_and_store(store, refresh, held)
            except OAuthError as again:
                if not self.interactive:
                    raise
                log.info("the refresh with client %s failed too (%s); logging in",
                         newer.client_id, short_error(again))
                return self._login_and_store(store, held)
        if not self.interactive:
            raise renewal.explain(failure, renewed=False) from failure
        return self._login_and_store(store, held, refused=failure)

    def _can_start_session(self) -> bool:
        """Whether tier 4 may run: a machine's grant, or a login with the user."""
        return self.grant is not None or self.interactive

    def _new_session(self, store: SecretsSessionStore | None, held: str | None) -> Token:
        """Tier 4, the one place that picks how: the grant when there is one (a machine
        has no person to log in), else the interactive login."""
        if self.grant is not None:
            return self._grant_and_store(self.grant, store, held)
        return self._login_and_store(store, held)

    def _grant_and_store(
        self, grant: Grant, store: SecretsSessionStore | None, held: str | None
    ) -> Token:
        """Tier 4 for a machine: run the grant, then keep and share its token like a
        login's (a refresh token, when the grant gave one, is stored in place of `held`)."""
        from .grants import run_grant

        token = run_grant(grant, self.oidc, self._metadata(), self._http(), self.clock)
        return self._install(store, token, held)

    def _login_and_store(self, store: SecretsSessionStore | None, held: str | None,
                         refused: OAuthAuthError | None = None) -> Token:
        """Tier 4: the interactive login, then store its refresh token in place of `held`
        (what the store held when the lock was taken).

        A login refused because the server does not know a registered client
        (`renew_client`) gets a new client and runs once more; so does one that starts
        after a refresh was `refused` for that reason, with the new client at once. Either
        way one renewal per login, and a new client refused too is a final error.
        """
        renewal = self._renew_client
        renewed = False
        if refused is not None and renewal is not None:
            newer = renewal.renew(self.oidc, register=True)
            if newer is None:
                raise renewal.explain(refused, renewed=False) from refused
            self.oidc, renewed = newer, True
        try:
            token = self._interactive_login()
        except (LoginError, OAuthError) as exc:
            renewal = self._renewal_for(exc)
            if renewal is None:
                raise
            newer = None if renewed else renewal.renew(self.oidc, register=True)
            if newer is None:
                raise renewal.explain(exc, renewed=renewed) from exc
            log.info("the server does not know client %s; logging in with client %s",
                     self.oidc.client_id, newer.client_id)
            self.oidc = newer
            try:
                token = self._interactive_login()
            except (LoginError, OAuthError) as again:
                if self._renewal_for(again) is not None:
                    raise renewal.explain(again, renewed=True) from again
                raise
        if not token.refresh_token and not self._warned_no_refresh:
            self._warned_no_refresh = True
            log.warning(
                "the provider issued no refresh token, so this session will not outlive the"
                " process; it probably did not grant the offline_access scope"
            )
        return self._install(store, token, held)

    def _interactive_login(self) -> Token:
        """One interactive login with the source's current client (nothing stored)."""
        from ._login import interactive_login

        # The device endpoint may be only in an RFC 8414 document: look there when the
        # device grant may be chosen.
        device_possible = self.login_method == "device" or (
            self.login_method == "auto" and self._open_browser is None and not self.skip_browser
        )
        meta = self._metadata(want=("device_authorization_endpoint",) if device_possible else ())
        return interactive_login(
            oidc=self.oidc,
            metadata=meta,
            http=self._http(),
            method=self.login_method,
            skip_browser=self.skip_browser,
            open_browser=self._open_browser,
            timeout=self.login_timeout,
            callback_host=self._callback_host,
            extra_params=self._auth_params,
            stderr=self._stderr,
            now=self.clock,
            read_redirect=self._read_redirect,
            preflight=self._preflight,
        )

    def _install(self, store: SecretsSessionStore | None, token: Token, held: str | None) -> Token:
        """Keep a new token in memory, then let the store persist it (in the contract's
        order: refresh token, `_AT` entry, config persister; see `_store`)."""
        kept = token.with_window(self.clock(), self.preemptive_refresh_window)
        self._keep(kept)
        self._refresh_token = token.refresh_token
        if store is not None:
            store.save(token, held)
        return kept

    def _no_credentials(self, errors: list[OAuthAuthError]) -> BaseException:
        for exc in errors:
            if isinstance(exc, InvalidGrantError):
                return exc  # the session is dead: the most useful thing to say
        if errors:
            return errors[0]
        if self._fallback is not None:
            return fresh_copy(self._fallback)  # the caller's instance would grow forever
        return LoginRequiredError(
            f"no usable credentials for client {self.oidc.client_id!r} at {self.oidc.issuer}",
            hint="log in interactively first (interactive=True); `oauth-auth login` serves"
            " this session only when its key is the command line's (README: Sharing the"
            " command line's login)",
        )

    # ------------------------------------------------------------------ plumbing

    def _key(self) -> str:
        key = self._key_provider()
        if not isinstance(key, str) or not key.strip():
            raise ConfigError("key_provider returned an empty or non-string key")
        return key

    def _store_of(self, key: str) -> SecretsSessionStore:
        """The session store of `key` (the last one is kept: keys rarely change, and it
        holds a pending rotation until it is stored)."""
        store = self._store
        if store is None or store.key != key:
            from ._store import SecretsSessionStore

            if self._secrets is None:
                raise _no_secrets_error()
            store = SecretsSessionStore(
                self._secrets, key, lock_dir=self._lock_dir, persister=self._persister,
                cross_process_lock=self._cross_process_lock,
            )
            self._store = store
        return store

    def _http(self) -> IdPHttp:
        if self._http_client is None:
            from ._http import IdPHttp

            self._http_client = IdPHttp(
                timeout=self._http_timeout, max_retries=self._max_retries,
                transport=self._transport, verify=self._verify,
            )
        return self._http_client

    def _metadata(self, want: tuple[str, ...] = ()) -> ProviderMetadata:
        from ._discovery import discover

        return discover(
            self.oidc.issuer,
            self._http(),
            endpoints=self.oidc.endpoints,
            tenant_issuers=self.oidc.provider_preset.tenant_issuers,
            want=want,
        )

    def _revoke(self, token: str, hint: str = "refresh_token") -> tuple[bool, str]:
        """Revoke one token at the provider (RFC 7009); (revoked, why not)."""
        from ._protocol import client_auth_for, revocation_form

        oidc = self.oidc
        try:
            meta = self._metadata(want=("revocation_endpoint",))
            if not meta.revocation_endpoint:
                return False, "the provider advertises no revocation endpoint"
            status = self._http().post_form_status(
                meta.revocation_endpoint,
                revocation_form(token, oidc.client_id, hint),
                client=client_auth_for(
                    oidc.client_id, oidc.client_secret, meta, revocation=True,
                    fallback=oidc.provider_preset.client_auth_methods,
                ),
            )
        except OAuthAuthError as exc:
            log.warning("revoking the %s failed: %s", hint.replace("_", " "), short_error(exc))
            return False, short_error(exc)
        if status != 200:
            log.warning("revoking the %s failed: HTTP %s", hint.replace("_", " "), status)
            return False, f"HTTP {status}"
        return True, ""

    def _remember_rejected(self, token: str) -> None:
        self._rejected[token] = None
        while len(self._rejected) > MAX_REJECTED:
            del self._rejected[next(iter(self._rejected))]

    def _async_lock(self) -> Any:
        """The anyio lock of the running event loop (asyncio) or run (trio)."""
        import anyio

        runtime = _current_runtime()
        lock = self._alocks.get(runtime)
        if lock is None:
            lock = self._alocks.setdefault(runtime, anyio.Lock())
        return lock

    def close(self) -> None:
        """Close the provider connection pool (optional; it is also closed at exit)."""
        if self._http_client is not None:
            self._http_client.close()
            self._http_client = None

    @property
    def lock_file(self) -> Path:
        """The cross-process lock file of this session's key."""
        from ._locking import lock_path

        return lock_path(self._key(), self._lock_dir)


def has_fast_path(source: object) -> TypeGuard[OAuthTokenSource]:
    """Whether an adapter may serve `source.fast_path` itself: an `OAuthTokenSource`
    whose `token()` and `atoken()` are this module's (a subclass that overrides either
    gets its own called, by every driver)."""
    if not isinstance(source, OAuthTokenSource):
        return False
    cls = type(source)
    return cls.token is OAuthTokenSource.token and cls.atoken is OAuthTokenSource.atoken


def _current_runtime() -> object:
    """The running event loop (asyncio) or trio run, as a weak-referenceable key."""
    import anyio.lowlevel

    return anyio.lowlevel.current_token().native_token


def _no_secrets_error() -> SecretsError:
    return SecretsError(
        "no secrets provider is configured, so there is no stored session to use"
        " (tiers 2 and 3 are skipped)",
        hint="pass secrets_provider=KeyringSecrets() to keep the session between runs,"
        " or interactive=True to log in",
    )


def _window_seconds(value: timedelta | float | None) -> float:
    if value is None:
        return DEFAULT_PREEMPTIVE_WINDOW
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ConfigError(
            f"preemptive_refresh_window must not be negative (got {seconds:g} s)",
            hint="None means the default of 30 s",
        )
    return seconds
