"""OAuthTokenSource: access tokens through four tiers, one sync core, a thin async driver.

The tiers, in the order `token()` tries them:

1. memory: this object's access token, refreshed with the refresh token it holds once it
   enters the preemptive window;
2. the shared access-token cache: secrets entry `<key>_AT` = `<token>|<RFC 3339 expiry>`,
   so short-lived processes reuse one access token instead of each spending the refresh
   token;
3. the stored refresh token: secrets entry `<key>`, which restores the session across
   process restarts;
4. the interactive login (browser + PKCE, or the device grant), only when `interactive`.

Everything slow (secrets backend, provider, lock files, browser) happens in `_obtain()`,
under an in-process lock and, when a secrets provider is shared, a cross-process file lock
per key, where the shared entries are re-read before refreshing: one refresh per expiry,
however many threads, tasks and processes ask at once. The async driver only adds an
asyncio lock per event loop and runs `_obtain()` in a worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ._keys import AT_SUFFIX
from ._params import OIDCParams
from ._token import (
    DEFAULT_PREEMPTIVE_WINDOW,
    Token,
    decode_at_entry,
    encode_at_entry,
    fingerprint,
    parse_token_response,
)
from .errors import (
    ConfigError,
    InvalidGrantError,
    LockTimeoutError,
    LoginRequiredError,
    OAuthAuthError,
    OAuthError,
    SecretsError,
)

if TYPE_CHECKING:
    import asyncio

    from ._discovery import ProviderMetadata
    from ._http import IdPHttp
    from .secrets import SecretsProvider

__all__ = ["OAuthTokenSource"]

log = logging.getLogger("oauth_auth")

#: First delay before retrying a failed proactive refresh while the token is still valid;
#: doubled after each further failure, up to PROACTIVE_RETRY_MAX.
PROACTIVE_RETRY_MIN = 5.0
PROACTIVE_RETRY_MAX = 60.0
#: How long a process waits for another one's refresh or login beyond the login timeout.
LOCK_GRACE = 60.0
#: How many rejected access tokens are remembered (never served again from tier 2).
MAX_REJECTED = 64
_LOGIN_METHODS = ("auto", "browser", "device")
#: Refresh errors besides invalid_grant that a new login can cure (the grant lacks a scope
#: or resource now asked for). Any other provider error (invalid_client, a malformed
#: answer...) is raised even when interactive: a browser login would not fix it, and the
#: user should see the real cause.
LOGIN_CURES = frozenset({"invalid_scope", "invalid_target"})


#: How long the last try to store a refused rotation (at exit) waits for the refresh lock.
EXIT_FLUSH_LOCK_TIMEOUT = 5.0


class _PendingWrite:
    """A rotated refresh token the secrets store refused, and a last try to store it.

    The provider has spent `spent` (which the store still holds) and issued `newer`, known
    only to this process. The token source stores it at its next refresh. So that a process
    which exits (or drops the source) before then does not take the session with it,
    `flush()` runs from a `weakref.finalize` (at interpreter exit or garbage collection) and
    tries once more, under the key's refresh lock and only if the store still holds `spent`:
    another process may have logged in since, and its token must not be overwritten.
    It holds no reference to the token source, so it never keeps one alive.
    """

    __slots__ = ("entry", "lock_dir", "secrets")

    def __init__(
        self, secrets: SecretsProvider | None, lock_dir: str | os.PathLike[str] | None
    ) -> None:
        self.secrets = secrets
        self.lock_dir = lock_dir
        self.entry: tuple[str, str | None, str] | None = None  # (key, spent, newer)

    def hold(self, key: str, spent: str | None, newer: str) -> None:
        self.entry = (key, spent, newer)

    def take(self, key: str) -> tuple[str | None, str] | None:
        """(spent, newer) for `key`, forgotten here: the caller now owns storing it."""
        entry, self.entry = self.entry, None
        if entry is None or entry[0] != key:
            return None
        return entry[1], entry[2]

    def flush(self) -> None:
        entry, self.entry = self.entry, None
        if entry is None or self.secrets is None:
            return
        key, spent, newer = entry
        from ._locking import lock_path, process_lock

        try:
            with process_lock(lock_path(key, self.lock_dir), EXIT_FLUSH_LOCK_TIMEOUT):
                if (self.secrets.get_secret(key) or None) == spent:
                    self.secrets.set_secret(key, newer)
                    log.info("stored the refresh token that an earlier write failed to store")
        except Exception as exc:  # noqa: BLE001 - at exit: report, never raise
            log.warning(
                "could not store the new refresh token before exiting (%s); the session"
                " may need a new login", _short(exc),
            )


@dataclass(frozen=True)
class LogoutResult:
    """What `logout()` did; the CLI reports it."""

    had_refresh_token: bool
    revoked: bool
    revocation_error: str
    deleted: bool


class OAuthTokenSource:
    """Serves access tokens for one OIDC client, refreshing and logging in as needed.

    Safe for concurrent use: `token()` from any number of threads, `atoken()` from any
    number of tasks on any number of event loops, and any number of processes sharing one
    secrets provider (a cross-process lock per key serializes refreshes and logins).
    A token in memory costs one attribute read and a clock call: no I/O, no lock.

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
        fallback_error: raised when there are no credentials and nothing went wrong.
        preemptive_refresh_window: how long before expiry to stop serving a token
            (timedelta or seconds; None means 30 s; negative is a ValueError).
        login_method: "auto", "browser" or "device".
        login_timeout: seconds for the whole interactive login.
        open_browser: called with the login URL; None uses the standard webbrowser.
        http_timeout: seconds allowed for each call to the provider.
        max_retries: retries of a provider call answered 5xx/429 or refused.
        lock_timeout: seconds to wait for another process's refresh or login
            (None: login_timeout + 60 s).
        lock_dir: directory of the cross-process lock files (default: the user's runtime
            directory, or $OAUTH_AUTH_LOCK_DIR).
        callback_host: host of the loopback redirect URI (`localhost` or `127.0.0.1`).
        auth_params: extra or overriding authorization request parameters.
        clock: seconds since the epoch; tests inject a fake one.
        transport: an httpx transport for provider calls (tests, proxies, custom TLS).
        verify: TLS verification for provider calls (bool or CA bundle path).
        stderr: where login instructions go (default: sys.stderr at login time).
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
        login_method: str = "auto",
        login_timeout: float = 300.0,
        open_browser: Callable[[str], object] | None = None,
        http_timeout: float = 10.0,
        max_retries: int = 2,
        lock_timeout: float | None = None,
        lock_dir: str | os.PathLike[str] | None = None,
        callback_host: str = "localhost",
        auth_params: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        transport: Any = None,
        verify: bool | str = True,
        stderr: TextIO | None = None,
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
        if login_method not in _LOGIN_METHODS:
            raise ConfigError(
                f"login_method {login_method!r} is not one of {', '.join(_LOGIN_METHODS)}"
            )
        if login_timeout <= 0:
            raise ConfigError("login_timeout must be positive")
        if http_timeout <= 0:
            raise ConfigError("http_timeout must be positive")
        if lock_timeout is not None and lock_timeout <= 0:
            raise ConfigError("lock_timeout must be positive")
        self.oidc = oidc
        self.interactive = interactive
        self.skip_browser = skip_browser
        self.login_method = login_method
        self.login_timeout = float(login_timeout)
        self.preemptive_refresh_window = window
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
        self._callback_host = callback_host
        self._auth_params = dict(auth_params or {})
        self._clock = clock
        self._transport = transport
        self._verify = verify
        self._stderr = stderr
        # Private test switch: turn the cross-process lock off to show the race it prevents.
        self._cross_process_lock = True

        self._lock = threading.Lock()
        self._memory: Token | None = None  # tier 1 access token (see `_token`)
        # What the fast path serves: (access token, until when); "until" is -inf when
        # memory is empty. One tuple read and one comparison per call.
        self._serve: tuple[str, float] = ("", -math.inf)
        self._refresh_token: str | None = None  # tier 1 refresh token
        self._retry_at = 0.0  # no proactive refresh before this (after a failure)
        self._failures = 0
        self._rejected: dict[str, None] = {}  # access tokens a resource server refused
        # A rotation the store refused: stored at the next refresh, or at exit at the latest.
        self._unsaved = _PendingWrite(secrets_provider, lock_dir)
        if secrets_provider is not None:
            weakref.finalize(self, self._unsaved.flush)
        self._warned_no_refresh = False
        self._http_client: IdPHttp | None = None
        self._alocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return (
            f"OAuthTokenSource(issuer={self.oidc.issuer!r}, client_id={self.oidc.client_id!r},"
            f" token={self._token!r}, interactive={self.interactive})"
        )

    @property
    def _token(self) -> Token | None:
        """The tier-1 access token; setting it also updates the fast path's copy."""
        return self._memory

    @_token.setter
    def _token(self, token: Token | None) -> None:
        self._memory = token
        if token is None:
            self._serve = ("", -math.inf)
        elif token.expiry is None:
            self._serve = (token.access_token, math.inf)
        else:
            until = token.refresh_at if token.refresh_at is not None else token.expiry
            self._serve = (token.access_token, until)

    # ------------------------------------------------------------------ public API

    def token(self) -> str:
        """A valid access token, from the first tier that has one.

        Raises:
            LoginRequiredError: (or `fallback_error`) nothing usable and not interactive.
            InvalidGrantError: the stored session is dead and not interactive.
            SecretsError, TransportError, OAuthError, LoginError: the real cause.
        """
        access, until = self._serve
        if self._clock() < until:
            return access
        with self._lock:
            return self._obtain().access_token

    async def atoken(self) -> str:
        """`token()` for asyncio: never blocks the event loop.

        A token in memory is returned at once; otherwise one task per event loop runs the
        blocking tiers in a worker thread while the others wait on an asyncio lock, then
        find the fresh token in memory.
        """
        access, until = self._serve
        if self._clock() < until:
            return access
        import asyncio

        async with self._async_lock():
            access, until = self._serve
            if self._clock() < until:
                return access
            return await asyncio.to_thread(self.token)

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
            current = self._token
            if token is None or (current is not None and current.access_token == token):
                self._token = None
                self._retry_at = 0.0
            if token is not None:
                self._remember_rejected(token)
            elif current is not None:
                self._remember_rejected(current.access_token)
            if self._secrets is None:
                return
            try:
                key = self._key()
                with self._exclusive(key, timeout=0):
                    if token is not None:
                        cached = decode_at_entry(self._secrets.get_secret(key + AT_SUFFIX))
                        if cached is None or cached.access_token != token:
                            return
                    self._secrets.delete_secret(key + AT_SUFFIX)
            except LockTimeoutError:
                log.debug("another process is refreshing; it replaces the shared access token")
            except OAuthAuthError as exc:
                log.debug("could not drop the shared access token: %s", exc)

    async def ainvalidate(self, token: str | None = None) -> None:
        """`invalidate()` for asyncio (the secrets backend runs in a worker thread)."""
        tok = self._token
        if self._secrets is None and (token is None or tok is None or tok.access_token != token):
            if token is not None:
                self._remember_rejected(token)
            return
        import asyncio

        await asyncio.to_thread(self.invalidate, token)

    def logout(self) -> None:
        """End the session: revoke the refresh token at the provider where it can (RFC
        7009), then delete both secrets entries and forget the tokens in memory.

        A failed revocation is logged and does not stop the local deletion.

        Raises:
            SecretsError: the entries could not be deleted.
        """
        self.logout_result()

    async def alogout(self) -> None:
        """`logout()` for asyncio."""
        import asyncio

        await asyncio.to_thread(self.logout_result)

    def logout_result(self) -> LogoutResult:
        """`logout()`, returning what it did (revoked or not, and why not)."""
        with self._lock:
            key = self._key()
            stored: str | None = None
            read_error: OAuthAuthError | None = None
            if self._secrets is not None:
                try:
                    stored = self._secrets.get_secret(key) or None
                except OAuthAuthError as exc:
                    read_error = exc
            refresh = stored or self._refresh_token
            revoked, why = False, ""
            if refresh:
                revoked, why = self._revoke(refresh)
            self._token = None
            self._refresh_token = None
            self._unsaved.entry = None
            deleted = False
            if self._secrets is not None:
                errors: list[OAuthAuthError] = []
                for name in (key, key + AT_SUFFIX):
                    try:
                        self._secrets.delete_secret(name)
                    except OAuthAuthError as exc:
                        errors.append(exc)
                if errors:
                    raise errors[0]
                if read_error is not None:
                    raise read_error
                deleted = True
            return LogoutResult(bool(refresh), revoked, why, deleted)

    # ------------------------------------------------------------------ the tiers

    def _obtain(self) -> Token:
        """Tiers 1-4 under the in-process lock (caller holds `self._lock`)."""
        now = self._clock()
        current = self._token
        if current is not None and current.fresh(now):
            return current
        if current is not None and current.valid(now) and now < self._retry_at:
            return current  # a proactive refresh failed recently: serve, retry later
        try:
            new = self._from_shared_tiers()
        except OAuthAuthError as exc:
            now = self._clock()
            if current is not None and current.valid(now):
                self._failures += 1
                delay = min(PROACTIVE_RETRY_MIN * 2 ** (self._failures - 1), PROACTIVE_RETRY_MAX)
                self._retry_at = now + delay
                log.warning(
                    "refreshing the access token failed (%s); serving the current one until"
                    " it expires, next attempt in %.0f s", _short(exc), delay,
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
        key = self._key()
        hit = self._read_access_cache(key, errors)
        if hit is not None:
            return hit
        with self._exclusive(key):
            # Another process may have refreshed while we waited for the lock.
            hit = self._read_access_cache(key, errors)
            if hit is not None:
                return hit
            try:
                stored = self._secrets.get_secret(key) or None
            except OAuthAuthError as exc:
                # Under the lock a failed read is an error, not a miss: refreshing with an
                # older copy could spend a rotated token and end the session.
                errors.append(exc)
                raise
            refresh, previous = stored or self._refresh_token, stored
            unsaved = self._unsaved.take(key)
            if unsaved is not None:
                spent, newer = unsaved
                if stored == spent:  # our rotation never reached the store: repair it
                    refresh = newer
                    previous = newer if self._store_refresh(key, newer, spent) else spent
            if refresh:
                try:
                    return self._refresh_and_store(key, refresh, previous)
                except InvalidGrantError as exc:
                    errors.append(exc)
                    retried = self._after_invalid_grant(key, refresh)
                    if retried is not None:
                        return retried
                except OAuthError as exc:
                    errors.append(exc)
                    if not (self.interactive and exc.error in LOGIN_CURES):
                        raise
            if self.interactive:
                return self._login_and_store(key)
        raise self._no_credentials(errors)

    def _without_secrets(self, errors: list[OAuthAuthError]) -> Token:
        """Tiers 1 and 4 only: nothing is shared, so no lock is taken."""
        if self._refresh_token:
            try:
                return self._refresh_and_store("", self._refresh_token, None)
            except InvalidGrantError as exc:
                self._refresh_token = None
                errors.append(exc)
            except OAuthError as exc:
                errors.append(exc)
                if not (self.interactive and exc.error in LOGIN_CURES):
                    raise
        if self.interactive:
            return self._login_and_store("")
        if errors:
            raise errors[0]
        raise SecretsError(
            "no secrets provider is configured, so there is no stored session to use"
            " (tiers 2 and 3 are skipped)",
            hint="pass secrets_provider=KeyringSecrets() to keep the session between runs,"
            " or interactive=True to log in",
        )

    def _read_access_cache(self, key: str, errors: list[OAuthAuthError]) -> Token | None:
        """Tier 2: the shared `<key>_AT` entry, if more than our window remains."""
        if self._secrets is None:
            return None
        try:
            raw = self._secrets.get_secret(key + AT_SUFFIX)
        except OAuthAuthError as exc:
            log.debug("reading the shared access token failed: %s", exc)
            errors.append(exc)
            return None
        cached = decode_at_entry(raw)
        if cached is None or cached.expiry is None or cached.access_token in self._rejected:
            return None
        now = self._clock()
        if cached.expiry - self.preemptive_refresh_window <= now:
            return None
        self._token = Token(cached.access_token, cached.expiry,
                            refresh_at=cached.expiry - self.preemptive_refresh_window)
        log.debug("access token %s served from the shared cache", fingerprint(cached.access_token))
        return self._token

    def _refresh_and_store(self, key: str, refresh: str, stored: str | None) -> Token:
        """Spend `refresh` at the token endpoint, then keep and persist the result."""
        from ._protocol import refresh_form

        meta = self._metadata()
        form = refresh_form(refresh, self.oidc.client_id, self.oidc.audience)
        log.debug("refreshing with refresh token %s", fingerprint(refresh))
        _, doc = self._http().post_form(meta.token_endpoint, form)
        token = parse_token_response(doc, self._clock(), previous_refresh_token=refresh)
        return self._install(key, token, previous=stored)

    def _after_invalid_grant(self, key: str, failed: str) -> Token | None:
        """The refresh token was refused. If a sibling rotated it meanwhile, use the newer
        one once; otherwise drop the dead one (only if it is still what is stored)."""
        if self._secrets is None:
            return None
        try:
            stored = self._secrets.get_secret(key) or None
        except OAuthAuthError as exc:
            log.warning("could not re-read the refresh token after invalid_grant: %s", exc)
            return None
        if stored and stored != failed:
            log.info("the stored refresh token changed meanwhile; retrying with it")
            try:
                return self._refresh_and_store(key, stored, stored)
            except InvalidGrantError:
                failed = stored
        if self._refresh_token in (failed, stored):
            self._refresh_token = None
        try:
            if (self._secrets.get_secret(key) or None) == failed:
                self._secrets.delete_secret(key)
                log.info("deleted the dead refresh token %s", fingerprint(failed))
        except OAuthAuthError as exc:
            log.warning("could not delete the dead refresh token: %s", exc)
        return None

    def _login_and_store(self, key: str) -> Token:
        """Tier 4: the interactive login, then store its refresh token."""
        from ._login import interactive_login

        meta = self._metadata()
        doc = interactive_login(
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
        )
        token = parse_token_response(doc, self._clock())
        if not token.refresh_token and not self._warned_no_refresh:
            self._warned_no_refresh = True
            log.warning(
                "the provider issued no refresh token, so this session will not outlive the"
                " process; it probably did not grant the offline_access scope"
            )
        return self._install(key, token, previous=None)

    def _install(self, key: str, token: Token, previous: str | None) -> Token:
        """Keep a new token in memory and persist it: refresh token first (only when it
        changed), then the `_AT` entry, then the config persister (only when it changed).
        """
        now = self._clock()
        self._token = token.with_window(now, self.preemptive_refresh_window)
        self._refresh_token = token.refresh_token
        if self._secrets is None or not key:
            return self._token
        rotated = bool(token.refresh_token) and token.refresh_token != previous
        if rotated:
            rotated = self._store_refresh(key, token.refresh_token or "", previous)
        entry = encode_at_entry(token)
        try:
            if entry is not None:
                self._secrets.set_secret(key + AT_SUFFIX, entry)
        except OAuthAuthError as exc:
            log.debug("could not share the access token: %s", exc)
        if rotated and self._persister is not None:
            expiry = token.expiry_datetime or datetime.fromtimestamp(0, tz=timezone.utc)
            try:
                self._persister(key, expiry)
            except Exception as exc:  # noqa: BLE001 - a persister bug must not lose a token
                log.warning("config_persister failed: %s", _short(exc))
        return self._token

    def _store_refresh(self, key: str, refresh: str, previous: str | None) -> bool:
        """Store a new refresh token in place of `previous`; False when the store refused
        (then it is pending: stored at the next refresh, or at exit at the latest)."""
        if self._secrets is None:
            return False
        try:
            self._secrets.set_secret(key, refresh)
        except OAuthAuthError as exc:
            log.warning(
                "could not store the new refresh token (%s); this process keeps it and will"
                " store it at its next refresh or when it exits", _short(exc),
            )
            self._unsaved.hold(key, previous, refresh)
            return False
        return True

    def _no_credentials(self, errors: list[OAuthAuthError]) -> BaseException:
        for exc in errors:
            if isinstance(exc, InvalidGrantError):
                return exc  # the session is dead: the most useful thing to say
        if errors:
            return errors[0]
        if self._fallback is not None:
            return self._fallback
        return LoginRequiredError(
            f"no usable credentials for client {self.oidc.client_id!r} at {self.oidc.issuer}",
            hint="log in interactively first (for example `oauth-auth login`)",
        )

    # ------------------------------------------------------------------ plumbing

    def _key(self) -> str:
        key = self._key_provider()
        if not isinstance(key, str) or not key.strip():
            raise ConfigError("key_provider returned an empty or non-string key")
        return key

    @contextlib.contextmanager
    def _exclusive(self, key: str, timeout: float | None = None) -> Iterator[None]:
        """The key's cross-process refresh lock (`timeout` None: `lock_timeout`)."""
        if not self._cross_process_lock:
            yield
            return
        from ._locking import lock_path, process_lock

        wait = self._lock_timeout if timeout is None else timeout
        with process_lock(lock_path(key, self._lock_dir), wait):
            yield

    def _http(self) -> IdPHttp:
        if self._http_client is None:
            from ._http import IdPHttp

            self._http_client = IdPHttp(
                timeout=self._http_timeout, max_retries=self._max_retries,
                transport=self._transport, verify=self._verify,
            )
        return self._http_client

    def _metadata(self) -> ProviderMetadata:
        from ._discovery import discover

        return discover(self.oidc.issuer, self._http())

    def _revoke(self, refresh: str) -> tuple[bool, str]:
        from ._protocol import revocation_form

        try:
            meta = self._metadata()
            if not meta.revocation_endpoint:
                return False, "the provider advertises no revocation endpoint"
            status = self._http().post_form_status(
                meta.revocation_endpoint, revocation_form(refresh, self.oidc.client_id)
            )
        except OAuthAuthError as exc:
            log.warning("revoking the refresh token failed: %s", _short(exc))
            return False, _short(exc)
        if status != 200:
            log.warning("revoking the refresh token failed: HTTP %s", status)
            return False, f"HTTP {status}"
        return True, ""

    def _remember_rejected(self, token: str) -> None:
        self._rejected[token] = None
        while len(self._rejected) > MAX_REJECTED:
            del self._rejected[next(iter(self._rejected))]

    def _async_lock(self) -> asyncio.Lock:
        import asyncio

        loop = asyncio.get_running_loop()
        lock = self._alocks.get(loop)
        if lock is None:
            lock = self._alocks.setdefault(loop, asyncio.Lock())
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


def _short(exc: BaseException) -> str:
    """One line naming an error, for warnings (our errors never contain secrets)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

