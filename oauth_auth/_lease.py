"""The lease lock of the server-backed stores: one refresh per expiry across hosts.

An OS file lock stops at the machine. A fleet (workers, replicas, jobs) sharing one
rotating refresh token needs the lock where the token is: on the Redis or PostgreSQL
server. It is a lease, not a session lock: taken with a random holder id and an expiry
that the server keeps, so a holder that dies or is paused loses it when it runs out
(nothing depends on a connection staying open, which a pool or a proxy can silently
swap), and released only by its holder (the release checks the id).

The waiting loop is shared by both stores: poll with exponential backoff and jitter, say
once that we wait and for whom, give up with `LockTimeoutError`. The backends supply
three atomic server-side steps (see `LeaseBackend`).

A waiter usually waits for nothing but the holder's result: the holder refreshes and
writes the shared access token, and every waiter would then take the lease in turn only
to find that token. So the wait takes a `done` check (the session store supplies it; it
reads the shared access token): after every pause it is asked first, and once it says
the work is done the wait ends *without* the lease, and the block is told so (it gets
None instead of a `Lease`). The herd then costs one refresh plus one pause per waiter,
not one lease after another. Asking `done` before the next try, not after, matters: the
holder writes its token before it releases the lease, so a waiter that wakes after the
write finds the token rather than a free lease.

A lease can run out while its holder still works (a provider slower than `lock_lease`, a
paused or swapped-out process). Compare-and-set keeps such a holder from writing an older
token back, but it could still *spend* the refresh token it read, which another holder may
have spent already: many providers answer a reused refresh token by revoking the whole
grant. So the holder renews its lease (`Lease.renew`) right before it spends the token,
and does not spend it when the lease is no longer its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from .errors import ConfigError, LockTimeoutError, OAuthAuthError

__all__ = ["DEFAULT_LOCK_LEASE", "Lease", "LeaseBackend", "hold_lease", "lease_seconds",
           "new_holder"]

log = logging.getLogger("oauth_auth")

#: Default lease length (seconds). It must outlast a whole refresh under the lease:
#: discovery and the token request, each bounded by the token source's default
#: http_timeout (10 s) for each of its 1 + max_retries (2) attempts, plus backoff and
#: margin: 2 x 10 s x 3 + 15 s.
DEFAULT_LOCK_LEASE = 75.0
#: First and longest pause between two tries to take a held lease.
POLL_MIN = 0.01
POLL_MAX = 0.5


class LeaseBackend(Protocol):
    """The server-side steps of a lease; each is one atomic operation on the server."""

    def try_lease(self, name: str, holder: str, seconds: float) -> str | None:
        """Take the lease of `name` for `holder` if it is free or expired.

        Returns None when taken, else the current holder's id (for the wait message).
        """
        ...

    def release_lease(self, name: str, holder: str) -> None:
        """Delete the lease of `name` only if `holder` still holds it."""
        ...

    def renew_lease(self, name: str, holder: str, seconds: float) -> bool:
        """Make the lease of `name` last `seconds` from now, only if `holder` still holds
        it (nobody took it since); False when it is gone or another's."""
        ...


@dataclass(frozen=True)
class Lease:
    """A held lease, as `hold_lease` yields it: `renew()` before spending a refresh token."""

    backend: LeaseBackend = field(repr=False)
    name: str
    holder: str = field(repr=False)
    seconds: float

    def renew(self) -> bool:
        """Whether the lease is still ours, renewed for another `seconds` if so.

        Raises:
            SecretsError: the server failed (then nothing may be spent either).
        """
        return bool(self.backend.renew_lease(self.name, self.holder, self.seconds))


def new_holder() -> str:
    """A holder id: host and process (for the wait message) and 64 random bits."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"


def lease_seconds(value: float | None) -> float:
    """Validate a `lock_lease` argument (None: the default)."""
    if value is None:
        return DEFAULT_LOCK_LEASE
    seconds = float(value)
    if not seconds > 0:
        raise ConfigError(f"lock_lease must be a positive number of seconds (got {value!r})")
    return seconds


def describe_holder(holder: str) -> str:
    """'process 123 on host h' from a holder id (the random part stays out of logs)."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    return f"process {pid} on {host}" if pid else "another process"


@contextlib.contextmanager
def hold_lease(
    backend: LeaseBackend,
    name: str,
    *,
    timeout: float,
    lease: float,
    where: str,
    done: Callable[[], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Lease | None]:
    """Hold the lease of `name` for the block; yields it (`Lease`, renewable), or None
    when `done` ended the wait first (the block then holds nothing and must not refresh).

    Args:
        backend: the store.
        name: what the lease guards (a secrets key).
        timeout: seconds to wait for another holder before `LockTimeoutError`.
        lease: seconds the lease lasts if never released.
        where: the store, for messages (no credentials).
        done: asked after every pause, before the next try: True when what the lease
            guards is done already (a sibling's token is there), so waiting is over.

    Raises:
        LockTimeoutError: another holder kept it longer than `timeout` (and `done` never
            said True).
        SecretsError: the server failed (the caller gets the real cause, with a hint).
    """
    holder = new_holder()
    deadline = clock() + timeout
    delay = POLL_MIN
    said = False
    current = backend.try_lease(name, holder, lease)
    while current is not None:
        if not said and timeout > 0:
            said = True
            log.info("waiting for %s, which holds the refresh lease of %s on %s",
                     describe_holder(current), name, where)
        remaining = deadline - clock()
        if remaining <= 0:
            raise LockTimeoutError(
                f"{describe_holder(current)} held the refresh lease of {name} on {where} for"
                f" more than {timeout:g} s",
                path=where,
                hint="another host may be refreshing or logging in; wait, or raise"
                " lock_timeout (a dead holder's lease runs out after lock_lease seconds)",
            )
        sleep(min(delay * (0.5 + random.random()), remaining))
        delay = min(delay * 2, POLL_MAX)
        if done is not None and done():
            yield None  # never taken, so nothing to release
            return
        current = backend.try_lease(name, holder, lease)
    try:
        yield Lease(backend, name, holder, lease)
    finally:
        try:
            backend.release_lease(name, holder)
        except OAuthAuthError as exc:
            # Not fatal: the lease runs out by itself after `lease` seconds.
            log.warning("could not release the refresh lease of %s on %s (%s); it ends by"
                        " itself within %g s", name, where, exc, lease)
