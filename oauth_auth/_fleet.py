"""What the stores shared by many hosts (Redis, PostgreSQL) have in common.

Both keep sealed values (`_sealing`), take the refresh lease through `_lease.hold_lease`,
and make their two conditional operations from one `_conditional(name, expected, value)`
of their own (a Lua script; a transaction). This base class writes those rules once: how a
value is opened on read, what compare-and-set and compare-and-delete mean, and how the
lease lock is held. A subclass supplies the server calls: `get_stored`, `set_secret`,
`delete_secret`, `_conditional` and the `LeaseBackend` methods.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from ._lease import Lease, hold_lease
from ._scrub import scrubs
from ._sealing import Sealer

__all__ = ["FleetSecrets"]


class FleetSecrets:
    """A secrets provider on a shared server: sealed values, CAS, a lease lock."""

    _sealer: Sealer
    #: Seconds a lease lasts if its holder never releases it.
    lock_lease: float
    #: The server, as errors and reprs name it (no password).
    where: str

    def get_stored(self, name: str) -> str | None:
        """The stored (sealed) form of `name`, or None."""
        raise NotImplementedError

    def _conditional(self, name: str, expected: str | None, value: str | None) -> bool:
        """Write `value` (None deletes) only if `name` still holds `expected`, atomically
        on the server; True when it already holds `value`."""
        raise NotImplementedError

    @scrubs
    def get_secret(self, name: str) -> str | None:
        stored = self.get_stored(name)
        return None if stored is None else self._sealer.open(name, stored)

    @scrubs
    def compare_and_set(self, name: str, expected: str | None, value: str) -> bool:
        """Store `value` only if `name` still holds `expected` (None: nothing); False
        when another holder wrote first (the storage seam's capability, see `_store`).

        The stored value is read and opened and compared in the clear (encryption is
        randomized); the write happens on the server only where the entry still holds
        the exact stored bytes that were read. True as well when the entry already holds
        `value` (say, a retried call whose first write was not acknowledged).
        """
        return self._conditional(name, expected, value)

    @scrubs
    def compare_and_delete(self, name: str, expected: str) -> bool:
        """Delete `name` only if it still holds `expected`; False when it holds another
        value (True when it is already gone)."""
        return self._conditional(name, expected, None)

    def lock(
        self, name: str, *, timeout: float, done: Callable[[], bool] | None = None
    ) -> contextlib.AbstractContextManager[Lease | None]:
        """The refresh lease of session `name`, held for the block (the storage seam's
        lock capability): waits at most `timeout` seconds (`LockTimeoutError`), lasts
        `lock_lease` seconds if never released, released only by its holder. While it
        waits it asks `done` after every pause; once True it yields None without taking
        the lease (see `_lease.hold_lease`)."""
        return hold_lease(self, name, timeout=timeout, lease=self.lock_lease,  # type: ignore[arg-type]
                          where=self.where, done=done)
