"""The session store: how one session's tokens are kept, shared and replaced (the seam).

A session lives in two entries of a secrets provider under one key: the refresh token
under ``<key>`` and the shared access token under ``<key>_AT`` (``<token>|<RFC 3339
expiry>``, ToolHive's format). `OAuthTokenSource` decides *when* to read, refresh or log
in (the tier order); a `SessionStore` decides *how* the entries are read, locked, written
and deleted, so that every process that shares them sees one consistent session.

The protocol (`SessionStore`), operation by operation:

- `read_access_token()`: the ``<key>_AT`` entry decoded, whatever its expiry (the token
  source judges freshness by its own window); None when the entry is missing or
  malformed. A backend failure raises `SecretsError`.
- `read_refresh_token()`: what to spend and what the store holds, as `StoredRefresh`.
  A backend failure raises `SecretsError` and is never reported as "nothing stored":
  under the lock, refreshing with an older copy could spend a rotated token and end the
  session. If this store holds a rotation it could not write earlier (see "pending
  rotation" below) and the entry still holds the token that rotation spent, the newer
  token is written now (compare-and-set against the spent one) and returned to spend.
- `lock(timeout, done=None)`: a context manager that gives its holder the right to
  refresh or log in for this key, held across the re-read, the refresh and the write
  ("lock, re-read, refresh only if still needed, write, unlock"). It waits at most
  `timeout` seconds (0: do not wait) and raises `LockTimeoutError` when another holder
  keeps it; a store that cannot create its lock raises `ConfigError`. On one host it is
  an OS file lock (`_locking.process_lock`), released by the OS when its holder dies. A
  provider with a ``lock`` capability (below) replaces it with its own, typically a lease
  that runs out when its holder stops, so the lock may be lost while held: that is why
  every refresh token write is a compare-and-set.

  It yields a `Locked`, which tells the block whether it holds the lock. `done` is the
  caller's way to stop waiting for a result it can have without the lock: a callable
  that returns what it found (the token source passes its tier-2 read, which returns a
  servable shared access token) or None. A lock that can wait long asks it while it
  waits; once it returns something the wait ends without the lock, and the block gets
  `Locked(found=<that>)`, whose `held` is False: the block must serve `found` and do
  nothing that needs the lock (no refresh, no login, no write). Otherwise `held` is True
  and `found` None. The store decides `held` from its own record of what `done`
  returned, never from what the provider's lock yields. Only a provider's ``lock``
  capability uses `done`; the OS file lock does not (see `file_lock_factory`: one host
  hands its file lock on within milliseconds, and asking a keyring every poll could
  prompt the user), and neither does the lock turned off, so there `held` is always True.
- `confirm_lock()`: called under the lock right before a refresh token is spent: whether
  the lock is still held (a lease is renewed for another full length). False when a lease
  ran out and may be another's: the caller must not spend the token it read, which the
  other holder may have spent already (a reuse, which many providers answer by revoking
  the grant). False as well outside a held lock (a `Locked` whose `held` is False): the
  second guard that nothing is spent without the lock. An OS file lock cannot run out:
  True while held.
- `save(token, previous)`: keep a newly issued token, in the contract's order: first the
  refresh token (only when it differs from `previous`), then the ``<key>_AT`` entry, then
  the config persister (only when the refresh token was stored, that is, it changed:
  after a login or a rotation, never on a routine refresh). `previous` is the refresh
  token the caller read from the store under the lock (`StoredRefresh.held`), and the
  refresh token write is a compare-and-set against it: if the entry no longer holds
  `previous` (a holder whose lease ran out, while another one refreshed), the newer entry
  is kept and nothing older is put back, and neither is the ``_AT`` entry written (the
  newer session's, perhaps another account's, is the one to share). A refused write
  (`SecretsError`) makes the new refresh token a pending rotation. A failed ``_AT``
  write or persister is logged: the token is kept in memory either way. Returns whether
  the refresh token was stored.
- `delete_refresh_token_if(failed)`: after `invalid_grant`, delete the dead refresh
  token, only if the entry still holds `failed` (a sibling may have stored a newer one).
- `delete_access_token_if(rejected)`: delete ``<key>_AT``, only if it still holds
  `rejected` (None: whatever it holds), so a fresher token another process wrote survives.
- `delete()`: logout: forget the pending rotation and delete both entries (both are tried;
  the first failure is raised).

Atomicity and compare-and-set. Each single read, write and delete is as atomic as the
provider's own operation. Nothing spans both entries atomically: the write order is what
keeps readers safe (a reader that finds the new ``_AT`` entry can rely on the new refresh
token being stored already). The conditional operations (`save`'s refresh token write,
the repair of a pending rotation, both conditional deletes) are compare-and-set: with a
provider that has the capabilities below they are atomic in the provider; otherwise they
are a read, a comparison and a write, made safe by the lock, which the caller holds
(`OAuthTokenSource` holds it for every one of them). Without a ``compare_and_set``
capability the refresh token write in `save` is a plain write: under the file lock
nothing else can have written since the caller's read.

Capabilities a secrets provider may offer (looked up with `getattr`, so every existing
provider keeps working; `SecretsSessionStore` falls back to the file lock and to plain
operations without them). A provider shared by many hosts (Redis, PostgreSQL) should
offer all three, so that the guarantees of the file lock hold across hosts:

- ``lock(name, *, timeout, done=None) -> ContextManager``: the cross-process
  (cross-host) lock of a session, `name` being the refresh token entry's name
  (`LockingSecrets`). Raise `LockTimeoutError` after `timeout` seconds, `SecretsError`
  when the backend fails. A lock that can run out yields an object with ``renew() ->
  bool`` (`_lease.Lease`), which `confirm_lock()` calls. `done`, when given, is a
  ``() -> bool`` to ask while waiting (between tries, before each new try): once it
  returns True, stop waiting, do not take the lock, and run the block holding nothing
  (`_lease.hold_lease` yields None). A lock may ignore `done` (then it just waits).
- ``compare_and_set(name, expected, value) -> bool``: store `value` only if the entry
  holds `expected` (None: holds nothing); False when it did not (`CompareAndSetSecrets`).
- ``compare_and_delete(name, expected) -> bool``: delete only if the entry holds
  `expected`; False when it did not.

A pending rotation: when the provider issued a new refresh token but the store refused
it (keyring locked, server down), the provider has spent the stored token and only this
process knows the new one. The store keeps it and writes it at its next
`read_refresh_token()` (under the lock), or at the latest when the store is garbage
collected or the interpreter exits, each time only if the entry still holds the spent
token: another process may have logged in since.

`SecretsSessionStore` is the one implementation: any `SecretsProvider`, plus the file
lock or the provider's own capabilities. It is safe for concurrent use by threads only
under the lock (the token source's in-process lock serializes its callers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, runtime_checkable

from ._keys import AT_SUFFIX
from ._token import Token, decode_at_entry, encode_at_entry, fingerprint
from .errors import OAuthAuthError, short_error

if TYPE_CHECKING:
    from .secrets import SecretsProvider

__all__ = [
    "EXIT_FLUSH_LOCK_TIMEOUT",
    "CompareAndSetSecrets",
    "Locked",
    "LockingSecrets",
    "SecretsSessionStore",
    "SessionStore",
    "StoredRefresh",
]

log = logging.getLogger("oauth_auth")

#: How long the last try to store a refused rotation (at exit) waits for the lock.
EXIT_FLUSH_LOCK_TIMEOUT = 5.0

T = TypeVar("T")

#: `lock(name, timeout, done)`: the lock of one session key, as a context manager; `done`
#: (None: wait only) may end the wait without the lock (see `SessionStore.lock`).
LockFactory = Callable[[str, float, "Callable[[], bool] | None"], AbstractContextManager[object]]


@dataclass(frozen=True)
class Locked(Generic[T]):
    """What `SessionStore.lock()` yields: whether the block holds the lock.

    Attributes:
        found: what the caller's `done` check returned when it ended the wait without
            the lock (a sibling's access token); None when the block holds the lock.
    """

    found: T | None = None

    @property
    def held(self) -> bool:
        """Whether the block holds the lock: the only state in which it may refresh,
        log in or write. False exactly when `done` found what the caller waited for."""
        return self.found is None


@dataclass(frozen=True)
class StoredRefresh:
    """What `SessionStore.read_refresh_token()` found.

    Attributes:
        token: the refresh token to spend (None: nothing stored).
        held: what the entry holds now: the `previous` to pass to `save()`. It differs
            from `token` only when a pending rotation could not be repaired (the entry
            still holds the spent token, and `token` is the newer one).
    """

    token: str | None
    held: str | None

    def __repr__(self) -> str:
        def tag(value: str | None) -> str:
            return "None" if value is None else f"<{fingerprint(value)}>"

        return f"StoredRefresh(token={tag(self.token)}, held={tag(self.held)})"


class SessionStore(Protocol):
    """The storage of one session (one secrets key); see the module docstring."""

    @property
    def key(self) -> str:
        """The secrets key: the refresh token's entry name (the access token's is key_AT)."""
        ...

    def read_access_token(self) -> Token | None:
        """The shared access token entry, any expiry; None when missing or malformed."""
        ...

    def read_refresh_token(self) -> StoredRefresh:
        """The refresh token to spend and what the entry holds (failures raise)."""
        ...

    def lock(
        self, timeout: float, done: Callable[[], T | None] | None = None
    ) -> AbstractContextManager[Locked[T]]:
        """The session's exclusive lock, waiting at most `timeout` seconds, or until
        `done` finds something (then the block does not hold it: `Locked.held`)."""
        ...

    def confirm_lock(self) -> bool:
        """Before spending a refresh token: is the lock ours and still held (a lease:
        renewed)? False outside a held lock."""
        ...

    def save(self, token: Token, previous: str | None) -> bool:
        """Write refresh token (compare-and-set), then the access token, then persist."""
        ...

    def delete_refresh_token_if(self, failed: str) -> bool:
        """Delete the refresh token entry only if it holds `failed`."""
        ...

    def delete_access_token_if(self, rejected: str | None) -> bool:
        """Delete the access token entry only if it holds `rejected` (None: any)."""
        ...

    def delete(self) -> None:
        """Delete both entries and forget any pending rotation."""
        ...


@runtime_checkable
class LockingSecrets(Protocol):
    """A secrets provider with its own session lock (a lease shared by many hosts)."""

    def lock(
        self, name: str, *, timeout: float, done: Callable[[], bool] | None = None
    ) -> AbstractContextManager[object]:
        """Hold the lock of session `name` for the block; `LockTimeoutError` after
        `timeout` seconds. A lease may run out while held; writes are CAS for that.
        While waiting, ask `done` (if given) before each new try; once True, stop
        waiting and run the block without the lock."""
        ...


@runtime_checkable
class CompareAndSetSecrets(Protocol):
    """A secrets provider with atomic conditional writes and deletes."""

    def compare_and_set(self, name: str, expected: str | None, value: str) -> bool:
        """Store `value` if `name` holds `expected` (None: nothing); else False."""
        ...

    def compare_and_delete(self, name: str, expected: str) -> bool:
        """Delete `name` if it holds `expected`; else False."""
        ...


#: What `SecretsSessionStore._write_refresh` did with a new refresh token.
_STORED, _LOST, _PENDING, _UNCHANGED = object(), object(), object(), object()


def file_lock_factory(lock_dir: str | os.PathLike[str] | None) -> LockFactory:
    """The local lock: an OS file lock per key under `lock_dir` (see `_locking`).

    It ignores `done` and always waits for the lock itself, on purpose. On one host the
    file lock changes hands within its 20 ms poll, and each waiter then holds it only for
    a local re-read that finds the holder's token, so waiters queue for milliseconds, not
    for a network round trip and a backoff of up to half a second as on a server's lease.
    And asking `done` reads the secrets provider: for a keyring, a D-Bus or keychain call
    every poll from every waiter, which can even ask the user to unlock it.
    """

    def lock(
        name: str, timeout: float, done: Callable[[], bool] | None = None
    ) -> AbstractContextManager[object]:
        from ._locking import lock_path, process_lock

        return process_lock(lock_path(name, lock_dir), timeout)

    return lock


@contextlib.contextmanager
def _no_lock() -> Iterator[None]:
    yield


def _lock_of(
    secrets: SecretsProvider, lock_dir: str | os.PathLike[str] | None, enabled: bool
) -> LockFactory:
    """The provider's own lock when it has one, else the file lock (or none, in tests)."""
    if not enabled:
        return lambda name, timeout, done: _no_lock()
    own = getattr(secrets, "lock", None)
    if callable(own):
        return lambda name, timeout, done: own(name, timeout=timeout, done=done)
    return file_lock_factory(lock_dir)


def compare_and_set(
    secrets: SecretsProvider, name: str, expected: str | None, value: str
) -> bool:
    """Store `value` under `name` only if it holds `expected`: atomic with the provider's
    capability, else a read and a write (safe only under the session's lock)."""
    own = getattr(secrets, "compare_and_set", None)
    if callable(own):
        return bool(own(name, expected, value))
    if (secrets.get_secret(name) or None) != expected:
        return False
    secrets.set_secret(name, value)
    return True


def compare_and_delete(secrets: SecretsProvider, name: str, expected: str) -> bool:
    """Delete `name` only if it holds `expected` (atomic with the capability, else under
    the session's lock)."""
    own = getattr(secrets, "compare_and_delete", None)
    if callable(own):
        return bool(own(name, expected))
    if (secrets.get_secret(name) or None) != expected:
        return False
    secrets.delete_secret(name)
    return True


class _PendingRotation:
    """A rotated refresh token the store refused, and a last try to store it at exit.

    Holds no reference to its store, so that a `weakref.finalize` on the store can run
    `flush()` when the store is collected or the interpreter exits.
    """

    __slots__ = ("entry", "lock", "secrets")

    def __init__(self, secrets: SecretsProvider, lock: LockFactory) -> None:
        self.secrets = secrets
        self.lock = lock
        self.entry: tuple[str, str | None, str] | None = None  # (key, spent, newer)

    def flush(self) -> None:
        entry, self.entry = self.entry, None
        if entry is None:
            return
        key, spent, newer = entry
        try:
            with self.lock(key, EXIT_FLUSH_LOCK_TIMEOUT, None):
                if compare_and_set(self.secrets, key, spent, newer):
                    log.info("stored the refresh token that an earlier write failed to store")
        except Exception as exc:  # noqa: BLE001 - at exit: report, never raise
            log.warning(
                "could not store the new refresh token before exiting (%s); the session"
                " may need a new login", short_error(exc),
            )


class SecretsSessionStore:
    """A `SessionStore` over any `SecretsProvider`, with the file lock or the provider's.

    Args:
        secrets: where both entries live.
        key: the session's secrets key.
        lock_dir: directory of the file locks (None: `_locking.default_lock_dir()`).
        persister: the config persister, called as `(key, expiry)` after the refresh token
            changed and was stored.
        cross_process_lock: False turns the lock off (a test switch that shows the race
            the lock prevents).
    """

    def __init__(
        self,
        secrets: SecretsProvider,
        key: str,
        *,
        lock_dir: str | os.PathLike[str] | None = None,
        persister: Callable[[str, datetime], None] | None = None,
        cross_process_lock: bool = True,
    ) -> None:
        self.secrets = secrets
        self._key = key
        self._persister = persister
        self._lock = _lock_of(secrets, lock_dir, cross_process_lock)
        self._held: object = None  # what the lock yielded while it is held
        self._holding = False  # whether a block holds the lock now
        self._pending = _PendingRotation(secrets, self._lock)
        weakref.finalize(self, self._pending.flush)

    def __repr__(self) -> str:
        return f"SecretsSessionStore(key={self._key!r}, secrets={type(self.secrets).__name__})"

    @property
    def key(self) -> str:
        return self._key

    def read_access_token(self) -> Token | None:
        return decode_at_entry(self.secrets.get_secret(self._key + AT_SUFFIX))

    def read_refresh_token(self) -> StoredRefresh:
        stored = self.secrets.get_secret(self._key) or None
        entry, self._pending.entry = self._pending.entry, None
        if entry is None or entry[1] != stored:
            return StoredRefresh(stored, stored)
        newer = entry[2]  # our rotation never reached the store: repair it now
        written = self._write_refresh(newer, stored)
        return StoredRefresh(newer, newer if written is _STORED else stored)

    def lock(
        self, timeout: float, done: Callable[[], T | None] | None = None
    ) -> AbstractContextManager[Locked[T]]:
        return self._locked(timeout, done)

    @contextlib.contextmanager
    def _locked(
        self, timeout: float, done: Callable[[], T | None] | None
    ) -> Iterator[Locked[T]]:
        found: list[T] = []  # what `done` returned, if it ended the wait

        def finished() -> bool:
            if done is None:
                return False
            value = done()
            if value is None:
                return False
            found.append(value)
            return True

        with self._lock(self._key, timeout, None if done is None else finished) as held:
            if found:  # our own record, whatever the provider's lock yielded
                yield Locked(found[-1])
                return
            self._held = held  # a lease (renewable) or the file lock's token
            self._holding = True
            try:
                yield Locked()
            finally:
                self._held = None
                self._holding = False

    def confirm_lock(self) -> bool:
        if not self._holding:
            log.warning(
                "this process does not hold the refresh lock of %s, so the refresh token"
                " is not spent", self._key,
            )
            return False
        renew = getattr(self._held, "renew", None)
        if not callable(renew) or renew():
            return True
        log.warning(
            "the refresh lease of %s ran out before the refresh (lock_lease is shorter than"
            " the provider took, or this process was paused); another process may hold"
            " it, so the refresh token is not spent", self._key,
        )
        return False

    def save(self, token: Token, previous: str | None) -> bool:
        new = token.refresh_token
        written = _UNCHANGED
        if new and new != previous:
            written = self._write_refresh(new, previous)
        stored = written is _STORED
        entry = encode_at_entry(token)
        # A lost compare-and-set means a newer session is stored (a sibling's rotation, or
        # another login, maybe another account's): its `_AT` entry is the one to share.
        if entry is not None and written is not _LOST:
            try:
                self.secrets.set_secret(self._key + AT_SUFFIX, entry)
            except OAuthAuthError as exc:
                log.debug("could not share the access token: %s", exc)
        if stored and self._persister is not None:
            expiry = token.expiry_datetime or datetime.fromtimestamp(0, tz=timezone.utc)
            try:
                self._persister(self._key, expiry)
            except Exception as exc:  # noqa: BLE001 - a persister bug must not lose a token
                log.warning("config_persister failed: %s", short_error(exc))
        return stored

    def _write_refresh(self, new: str, previous: str | None) -> object:
        """Compare-and-set the refresh token: `_STORED`, `_LOST` (a newer one is stored and
        kept), or `_PENDING` (the write failed: it becomes a pending rotation)."""
        try:
            if callable(getattr(self.secrets, "compare_and_set", None)):
                if not compare_and_set(self.secrets, self._key, previous, new):
                    log.warning(
                        "the stored refresh token changed while this process refreshed (its"
                        " lock ran out); the newer one is kept"
                    )
                    return _LOST
            else:  # under the file lock nothing wrote since `previous` was read
                self.secrets.set_secret(self._key, new)
        except OAuthAuthError as exc:
            log.warning(
                "could not store the new refresh token (%s); this process keeps it and will"
                " store it at its next refresh or when it exits", short_error(exc),
            )
            self._pending.entry = (self._key, previous, new)
            return _PENDING
        return _STORED

    def delete_refresh_token_if(self, failed: str) -> bool:
        if not compare_and_delete(self.secrets, self._key, failed):
            return False
        log.info("deleted the dead refresh token %s", fingerprint(failed))
        return True

    def delete_access_token_if(self, rejected: str | None) -> bool:
        name = self._key + AT_SUFFIX
        if rejected is None:
            self.secrets.delete_secret(name)
            return True
        raw = self.secrets.get_secret(name)
        cached = decode_at_entry(raw)
        if raw is None or cached is None or cached.access_token != rejected:
            return False
        return compare_and_delete(self.secrets, name, raw)

    def delete(self) -> None:
        self._pending.entry = None
        errors: list[OAuthAuthError] = []
        for name in (self._key, self._key + AT_SUFFIX):
            try:
                self.secrets.delete_secret(name)
            except OAuthAuthError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
