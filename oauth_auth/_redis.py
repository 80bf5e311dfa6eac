"""`RedisSecrets`: a secrets provider on a Redis server, for sessions shared by a fleet.

Layout (every key under the namespace): ``<namespace>:secret:<name>`` holds the sealed
value (see `_sealing`), ``<namespace>:lease:<name>`` the refresh lease of that name
(holder id, with a server-side expiry: ``SET NX PX``). Each step that must be atomic is
one Lua script, so no connection has to stay pinned (as WATCH/MULTI would need):

- the compare-and-set of a value checks, on the server, that the entry still holds the
  exact stored bytes this process read and opened, then writes;
- releasing a lease deletes it only if it still holds this holder's id, and renewing it
  extends it only then.

redis-py is imported when the first `RedisSecrets` is made, never by ``import oauth_auth``.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from typing import TYPE_CHECKING, Any

from ._fleet import FleetSecrets
from ._lease import describe_holder, lease_seconds
from ._scrub import scrubs
from ._sealing import EncryptionKey, Sealer
from .errors import ConfigError, SecretsError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["RedisSecrets"]

log = logging.getLogger("oauth_auth")

#: Seconds allowed for connecting and for each command before it is a `SecretsError`.
DEFAULT_TIMEOUT = 5.0

# KEYS[1] the entry; ARGV[1] "1" when an entry is expected, ARGV[2] the stored bytes read,
# ARGV[3] the new stored bytes ("" deletes). A retried call that already wrote succeeds.
_CAS = """
local cur = redis.call('GET', KEYS[1])
if ARGV[3] ~= '' and cur == ARGV[3] then return 1 end
if ARGV[3] == '' and not cur then return 1 end
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return 0 end
elseif cur then
  return 0
end
if ARGV[3] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[3]) end
return 1
"""
# KEYS[1] the lease; ARGV[1] holder, ARGV[2] milliseconds. Nil when taken, else the holder.
_TAKE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1]) or ''
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS[1] the lease; ARGV[1] holder, ARGV[2] milliseconds. 1 when renewed, 0 when not ours.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class RedisSecrets(FleetSecrets):
    """Secrets on a Redis server, encrypted at rest, with a lease lock and compare-and-set.

    With it as the `secrets_provider` of every host's token source, the guarantees of the
    file lock hold across hosts: one refresh per expiry, no `invalid_grant` from a race,
    the newest refresh token stored. Safe for concurrent use by threads (redis-py's pool)
    and processes; a forked child opens its own connections.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) or
            ``unix://path``, as redis-py reads it.
        namespace: prefix of every key, so several applications can share one server.
        encryption_key: a Fernet key or a list of them (first encrypts, all decrypt).
        allow_plaintext: store values unencrypted when no key is given.
        lock_lease: seconds a refresh lease lasts if its holder never releases it
            (None: `DEFAULT_LOCK_LEASE`, longer than a whole refresh may take).
        timeout: seconds for connecting and for each command.

    Raises:
        ConfigError: no key and plaintext not allowed, a bad key, a bad URL, or redis-py
            missing (``pip install 'oauth-auth[redis]'``).
    """

    writable = True

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "oauth-auth",
        encryption_key: EncryptionKey | None = None,
        allow_plaintext: bool = False,
        lock_lease: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not isinstance(url, str) or not url.strip():
            raise ConfigError("RedisSecrets needs a URL such as redis://host:6379/0")
        if not namespace or not isinstance(namespace, str):
            raise ConfigError("namespace must be a non-empty string")
        self._sealer = Sealer(encryption_key, allow_plaintext=allow_plaintext,
                              store="RedisSecrets")
        self.lock_lease = lease_seconds(lock_lease)
        self.namespace = namespace
        self.where = _redacted(url)
        self._timeout = float(timeout)
        try:
            import redis
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry
        except ImportError:
            raise ConfigError(
                "RedisSecrets needs redis-py, which is not installed",
                hint="pip install 'oauth-auth[redis]'",
            ) from None
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError,)
        try:
            # One retry after a dropped connection (a server restart, an idle timeout).
            # Every command here is idempotent: the scripts accept their own earlier write.
            self._client: Any = redis.Redis.from_url(
                url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
                decode_responses=True, health_check_interval=30,
            )
        except ValueError:
            raise ConfigError(
                f"RedisSecrets: {self.where} is not a Redis URL",
                hint="use redis://host:port/db, rediss://... or unix:///path/to/socket",
            ) from None
        self._scripts_lock = threading.Lock()
        self._scripts: dict[str, Any] = {}

    # ------------------------------------------------------------------ SecretsProvider

    @scrubs
    def set_secret(self, name: str, value: str) -> None:
        sealed = self._sealer.seal(name, value)
        self._call("store", name, lambda: self._client.set(self._entry(name), sealed))

    @scrubs
    def delete_secret(self, name: str) -> None:
        self._call("delete", name, lambda: self._client.delete(self._entry(name)))

    # ------------------------------------------------------------------ fleet primitives

    def get_stored(self, name: str) -> str | None:
        """The stored (sealed) form of `name`, or None; for compare-and-set."""
        value = self._call("read", name, lambda: self._client.get(self._entry(name)))
        return None if value is None else str(value)

    def try_lease(self, name: str, holder: str, seconds: float) -> str | None:
        """Take the lease of `name` (see `_lease.LeaseBackend`)."""
        millis = max(1, int(seconds * 1000))
        result = self._call("take the lease of", name, lambda: self._script("take", _TAKE)(
            keys=[self._lease(name)], args=(holder, millis)))
        return None if result is None else str(result)

    def release_lease(self, name: str, holder: str) -> None:
        """Delete the lease of `name` only if `holder` holds it."""
        self._call("release the lease of", name, lambda: self._script("release", _RELEASE)(
            keys=[self._lease(name)], args=(holder,)))

    def renew_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Extend the lease of `name` to `seconds` from now only if `holder` holds it."""
        millis = max(1, int(seconds * 1000))
        result = self._call("renew the lease of", name, lambda: self._script("renew", _RENEW)(
            keys=[self._lease(name)], args=(holder, millis)))
        return bool(result)

    def lease_holder(self, name: str) -> str | None:
        """Who holds the lease of `name` now ('process P on host H'), or None."""
        holder = self._call("read the lease of", name,
                            lambda: self._client.get(self._lease(name)))
        return None if holder is None else describe_holder(str(holder))

    def close(self) -> None:
        """Close the connection pool (it reopens on the next call)."""
        self._client.close()

    # ------------------------------------------------------------------ plumbing

    def _conditional(self, name: str, expected: str | None, value: str | None) -> bool:
        stored = self.get_stored(name)
        current = None if stored is None else self._sealer.open(name, stored)
        if (current or None) == (value or None):
            return True
        if (current or None) != (expected or None):
            return False
        new = "" if value is None else self._sealer.seal(name, value)
        args = ("1" if stored is not None else "0", stored or "", new)
        result = self._call("compare-and-set", name, lambda: self._script("cas", _CAS)(
            keys=[self._entry(name)], args=args))
        return bool(result)

    def _entry(self, name: str) -> str:
        return f"{self.namespace}:secret:{name}"

    def _lease(self, name: str) -> str:
        return f"{self.namespace}:lease:{name}"

    def _script(self, label: str, source: str) -> Any:
        with self._scripts_lock:
            script = self._scripts.get(label)
            if script is None:
                script = self._scripts[label] = self._client.register_script(source)
            return script

    def _call(self, action: str, name: str, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except self._errors as exc:
            failure = self._failure(action, name, exc)
        raise failure  # outside the handler: no chained traceback with the command's args

    def _failure(self, action: str, name: str, exc: BaseException) -> SecretsError:
        import redis

        kind = type(exc).__name__
        detail = (str(exc).splitlines() or [""])[0][:200]
        if isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError):
            hint = "check the user name and password (or ACL rights) in the Redis URL"
        elif isinstance(exc, redis.TimeoutError):
            hint = (f"the server did not answer within {self._timeout:g} s; check that it is"
                    " up and not overloaded (the stored session is kept), then try again")
        elif isinstance(exc, redis.ConnectionError):
            hint = ("check that the Redis server is running and reachable from this host;"
                    " the stored session is kept, so the next call works once it is back")
        elif isinstance(exc, redis.exceptions.ReadOnlyError):
            hint = "the URL points at a read-only replica; use the primary's address"
        else:
            hint = "check the Redis server's log; the stored session is kept"
        log.debug("Redis %s %s failed: %s", action, name, kind)
        return SecretsError(
            f"RedisSecrets could not {action} {name!r} on {self.where}: {kind}: {detail}",
            hint=hint,
        )

    def __repr__(self) -> str:
        mode = "encrypted" if self._sealer.encrypted else "PLAINTEXT"
        return (f"RedisSecrets({self.where!r}, namespace={self.namespace!r}, {mode},"
                f" lock_lease={self.lock_lease:g})")


def _redacted(url: str) -> str:
    """The URL without its password (for messages and repr)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable Redis URL>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    if parts.username:
        host = f"{parts.username}@{host}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
