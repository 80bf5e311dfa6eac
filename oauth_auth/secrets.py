"""Where tokens are kept: the `SecretsProvider` protocol and the providers behind it.

A provider maps a name (a key such as ``REGISTRY_OAUTH_48230903`` or its ``_AT`` companion)
to a string value. Every provider follows the same contract, proved by one shared test
suite:

- ``get_secret(name)`` returns the value, or ``None`` when nothing is stored under that
  name; a backend that fails (locked, unreachable, timed out) raises `SecretsError`;
- ``set_secret(name, value)`` stores or replaces the value;
- ``delete_secret(name)`` removes it, and deleting a missing name is not an error.

Providers also say whether they can be written (the ``writable`` attribute; see
`is_writable`), so a token source can skip a read-only provider such as
`EnvironmentSecrets` instead of failing on it.

Providers:

- `KeyringSecrets`: the operating system's keychain through `keyring` (Secret Service on
  Linux, Keychain on macOS, Credential Manager on Windows), serialized across threads and
  processes, bounded by a timeout, with long values split into parts.
- `EnvironmentSecrets`: read-only, from environment variables (ToolHive's
  ``TOOLHIVE_SECRET_<name>`` convention), for CI and end-to-end tests.
- `MemorySecrets`: a dictionary, for tests and short-lived programs.
- `ScopedSecrets`: prefixes names with ``__thv_<scope>_`` (ToolHive's system-key scoping).
- `ChainSecrets`: reads from the first provider that has the name, writes to all the
  writable ones.

No provider ever logs, formats or raises a secret value. `KeyringSecrets` lives in
`oauth_auth._keyring` (with the worker pool in `_workers` and the Secret Service
connection in `_secret_service`) and is importable from here.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

# Also importable from here: the value-splitting rule and the lock directory.
from ._keyring import SPLIT_PREFIX, KeyringSecrets, part_name, split_value  # noqa: F401
from ._keys import ENV_SECRET_PREFIX, scoped_name
from ._locking import default_lock_dir  # noqa: F401
from .errors import SecretsError

__all__ = [
    "ChainSecrets",
    "EnvironmentSecrets",
    "KeyringSecrets",
    "MemorySecrets",
    "ScopedSecrets",
    "SecretsProvider",
    "is_writable",
]

logger = logging.getLogger(__name__)


@runtime_checkable
class SecretsProvider(Protocol):
    """A store of named secret strings.

    Implementations may add a boolean ``writable`` attribute; one without it is taken to be
    writable (see `is_writable`).
    """

    def get_secret(self, name: str) -> str | None:
        """Return the value stored under `name`, or None if there is none.

        Raises:
            SecretsError: the backend failed (locked, unreachable, timed out, corrupt).
        """
        ...

    def set_secret(self, name: str, value: str) -> None:
        """Store `value` under `name`, replacing any previous value.

        Raises:
            SecretsError: the backend failed or is read-only.
        """
        ...

    def delete_secret(self, name: str) -> None:
        """Remove `name`; removing a name that is not there is not an error.

        Raises:
            SecretsError: the backend failed or is read-only.
        """
        ...


def is_writable(provider: object) -> bool:
    """Whether `provider` accepts writes: its ``writable`` attribute, True if it has none."""
    return bool(getattr(provider, "writable", True))


# --------------------------------------------------------------------------------------
# Simple providers


class MemorySecrets:
    """Secrets in a dictionary in this process: for tests and short-lived programs.

    Safe for concurrent use by multiple threads.
    """

    writable = True

    def __init__(self, initial: dict[str, str] | None = None) -> None:
        self._lock = threading.Lock()
        self._data: dict[str, str] = dict(initial or {})

    def get_secret(self, name: str) -> str | None:
        with self._lock:
            return self._data.get(name)

    def set_secret(self, name: str, value: str) -> None:
        with self._lock:
            self._data[name] = value

    def delete_secret(self, name: str) -> None:
        with self._lock:
            self._data.pop(name, None)

    def names(self) -> list[str]:
        """The names stored, sorted (never the values)."""
        with self._lock:
            return sorted(self._data)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __repr__(self) -> str:
        return f"MemorySecrets(<{len(self)} entries>)"


class EnvironmentSecrets:
    """Read-only secrets from environment variables: `name` is read from ``prefix + name``.

    ToolHive's convention (``TOOLHIVE_SECRET_<name>``), so a CI job can inject an access
    token (see `oauth_auth.llm_access_token_env_var`). An empty variable counts as unset.
    Writing or deleting raises `SecretsError`; `ChainSecrets` skips this provider on writes.

    Safe for concurrent use (it only reads ``os.environ``).
    """

    writable = False

    def __init__(self, prefix: str = ENV_SECRET_PREFIX) -> None:
        self.prefix = prefix

    def variable(self, name: str) -> str:
        """The environment variable that holds `name`."""
        return self.prefix + name

    def get_secret(self, name: str) -> str | None:
        return os.environ.get(self.variable(name)) or None

    def set_secret(self, name: str, value: str) -> None:
        raise self._read_only(name)

    def delete_secret(self, name: str) -> None:
        raise self._read_only(name)

    def _read_only(self, name: str) -> SecretsError:
        return SecretsError(
            f"the environment secrets provider is read-only: cannot write {self.variable(name)}",
            hint="use a writable provider such as KeyringSecrets, or set the variable yourself",
        )

    def __repr__(self) -> str:
        return f"EnvironmentSecrets(prefix={self.prefix!r})"


class ScopedSecrets:
    """Namespaces another provider: `name` is stored as ``__thv_<scope>_<name>``.

    ToolHive's scoping of system keys, so ``ScopedSecrets(inner, "llm")`` reads and writes
    the same entries as ToolHive's LLM gateway client. Writable when `inner` is.

    Safe for concurrent use when `inner` is.
    """

    def __init__(self, inner: SecretsProvider, scope: str) -> None:
        if not scope:
            raise ValueError("ScopedSecrets needs a non-empty scope")
        self.inner = inner
        self.scope = scope
        self._prefix = scoped_name(scope, "")

    @property
    def writable(self) -> bool:
        """Whether the wrapped provider accepts writes."""
        return is_writable(self.inner)

    def scoped_name(self, name: str) -> str:
        """The name under which `name` is stored in the wrapped provider."""
        return self._prefix + name

    def get_secret(self, name: str) -> str | None:
        return self.inner.get_secret(self.scoped_name(name))

    def set_secret(self, name: str, value: str) -> None:
        self.inner.set_secret(self.scoped_name(name), value)

    def delete_secret(self, name: str) -> None:
        self.inner.delete_secret(self.scoped_name(name))

    # The session store's optional capabilities (see `_store`), passed through on the
    # scoped name when the wrapped provider has them (a fleet store), else None: then the
    # session store uses the file lock and plain writes, as for any provider.

    @property
    def lock(self) -> Callable[..., AbstractContextManager[object]] | None:
        """The wrapped provider's session lock, on the scoped name (None: it has none)."""
        own = getattr(self.inner, "lock", None)
        if not callable(own):
            return None
        return lambda name, *, timeout, done=None: own(self.scoped_name(name),
                                                       timeout=timeout, done=done)

    @property
    def compare_and_set(self) -> Callable[[str, str | None, str], bool] | None:
        """The wrapped provider's compare-and-set, on the scoped name (None: it has none)."""
        own = getattr(self.inner, "compare_and_set", None)
        if not callable(own):
            return None
        return lambda name, expected, value: bool(own(self.scoped_name(name), expected, value))

    @property
    def compare_and_delete(self) -> Callable[[str, str], bool] | None:
        """The wrapped provider's compare-and-delete, on the scoped name (None: none)."""
        own = getattr(self.inner, "compare_and_delete", None)
        if not callable(own):
            return None
        return lambda name, expected: bool(own(self.scoped_name(name), expected))

    def __repr__(self) -> str:
        return f"ScopedSecrets({self.inner!r}, scope={self.scope!r})"


class ChainSecrets:
    """Several providers as one: reads take the first hit, writes go to every writable one.

    Reading asks each provider in order and returns the first value found. A provider that
    fails with `SecretsError` does not hide a value that a later provider has: its error is
    remembered, the next provider is asked, and the first such error is raised only when no
    provider had the value (so the caller sees the real reason rather than "not found").

    ``set_secret`` and ``delete_secret`` go to every writable provider, in order, skipping
    read-only ones (`EnvironmentSecrets`). Every writable provider is tried even when one
    fails, then the first failure is raised. A chain without a writable provider raises
    `SecretsError` on writes.

    Safe for concurrent use when every provider in it is (the chain itself keeps no state).
    """

    def __init__(self, *providers: SecretsProvider) -> None:
        self.providers: tuple[SecretsProvider, ...] = providers

    @property
    def writable(self) -> bool:
        """Whether at least one provider in the chain accepts writes."""
        return any(is_writable(p) for p in self.providers)

    def get_secret(self, name: str) -> str | None:
        first_error: SecretsError | None = None
        for provider in self.providers:
            try:
                value = provider.get_secret(name)
            except SecretsError as exc:
                logger.debug("secrets provider %r failed reading %r: %s", provider, name, exc)
                if first_error is None:
                    first_error = exc
                continue
            if value is not None:
                return value
        if first_error is not None:
            raise first_error
        return None

    def set_secret(self, name: str, value: str) -> None:
        self._write(name, lambda p: p.set_secret(name, value), "write")

    def delete_secret(self, name: str) -> None:
        self._write(name, lambda p: p.delete_secret(name), "delete")

    # The session store's optional capabilities (see `_store`): those of the chain's one
    # writable provider (say, EnvironmentSecrets then RedisSecrets), else None. Several
    # writable providers cannot be locked or compared-and-set as one.

    def _sole_writer(self, capability: str) -> Any:
        targets = [p for p in self.providers if is_writable(p)]
        own = getattr(targets[0], capability, None) if len(targets) == 1 else None
        return own if callable(own) else None

    @property
    def lock(self) -> Callable[..., AbstractContextManager[object]] | None:
        """The session lock of the chain's only writable provider (None: it has none)."""
        own: Callable[..., AbstractContextManager[object]] | None = self._sole_writer("lock")
        return own

    @property
    def compare_and_set(self) -> Callable[[str, str | None, str], bool] | None:
        """The compare-and-set of the chain's only writable provider (None: none)."""
        own: Callable[[str, str | None, str], bool] | None = self._sole_writer(
            "compare_and_set")
        return own

    @property
    def compare_and_delete(self) -> Callable[[str, str], bool] | None:
        """The compare-and-delete of the chain's only writable provider (None: none)."""
        own: Callable[[str, str], bool] | None = self._sole_writer("compare_and_delete")
        return own

    def _write(self, name: str, action: Callable[[SecretsProvider], None], verb: str) -> None:
        targets = [p for p in self.providers if is_writable(p)]
        if not targets:
            raise SecretsError(
                f"cannot {verb} {name!r}: no provider in the chain is writable",
                hint="add a writable provider such as KeyringSecrets to the chain",
            )
        first_error: SecretsError | None = None
        for provider in targets:
            try:
                action(provider)
            except SecretsError as exc:
                logger.debug("secrets provider %r failed to %s %r: %s", provider, verb, name, exc)
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error

    def __repr__(self) -> str:
        return f"ChainSecrets({', '.join(repr(p) for p in self.providers)})"
