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

No provider ever logs, formats or raises a secret value.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import stat
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

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

_T = TypeVar("_T")

#: ToolHive's prefix for keys that belong to the system, not the user (`ScopedSecrets`).
SYSTEM_KEY_PREFIX = "__thv_"


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

    def __init__(self, prefix: str = "TOOLHIVE_SECRET_") -> None:
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
        self._prefix = f"{SYSTEM_KEY_PREFIX}{scope}_"

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
        return lambda name, *, timeout: own(self.scoped_name(name), timeout=timeout)

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


# --------------------------------------------------------------------------------------
# Splitting values that are too long for a backend

#: The value stored under `name` when the real value is split into parts.
SPLIT_PREFIX = "oauth-auth-split:"
_MAX_PARTS = 10_000
#: Windows Credential Manager holds 2,560 bytes of UTF-16: 1,280 code units.
WINDOWS_MAX_VALUE_LENGTH = 1280
_MIN_MAX_VALUE_LENGTH = 32


def _units(char: str) -> int:
    """UTF-16 code units of one character (two outside the Basic Multilingual Plane)."""
    return 2 if ord(char) > 0xFFFF else 1


def _utf16_length(value: str) -> int:
    if value.isascii():
        return len(value)
    return sum(_units(c) for c in value)


def split_value(value: str, max_length: int) -> list[str]:
    """Cut `value` into parts of at most `max_length` UTF-16 code units each.

    A character is never cut in half, so each part is a valid string on its own and
    ``"".join(parts) == value``. An empty value gives one empty part.
    """
    if max_length < 2:
        raise ValueError("max_length must be at least 2")
    if value.isascii():
        return [value[i : i + max_length] for i in range(0, len(value), max_length)] or [""]
    parts: list[str] = []
    start = 0
    used = 0
    for i, char in enumerate(value):
        units = _units(char)
        if used + units > max_length:
            parts.append(value[start:i])
            start, used = i, 0
        used += units
    parts.append(value[start:])
    return parts


def part_name(name: str, index: int) -> str:
    """The name of part `index` (1-based) of a split value stored under `name`."""
    return f"{name}.part{index}"


def _split_header(count: int) -> str:
    return f"{SPLIT_PREFIX}{count}"


def _parse_split_header(stored: str) -> int | None:
    """The part count if `stored` is a split header, None if it is a plain value.

    Raises:
        ValueError: it starts like a header but is not a valid one.
    """
    if not stored.startswith(SPLIT_PREFIX):
        return None
    count_text = stored[len(SPLIT_PREFIX) :]
    if not count_text.isdigit() or not 1 <= int(count_text) <= _MAX_PARTS:
        raise ValueError("malformed split header")
    return int(count_text)


# --------------------------------------------------------------------------------------
# Worker threads with a timeout: a keyring call can block forever (an unlock prompt that
# nobody answers), so each call runs in a daemon thread and the caller waits with a
# timeout. Daemon threads, unlike concurrent.futures', never keep the interpreter alive.


class _Job:
    """One call handed to a worker thread."""

    __slots__ = (
        "_state", "abandoned", "deadline", "done", "entered", "error", "fn", "result", "started",
    )

    def __init__(self, fn: Callable[[_Job], Any], deadline: float) -> None:
        self.fn = fn
        self.deadline = deadline
        self.done = threading.Event()
        self._state = threading.Lock()
        self.started = False  # a worker picked it up
        self.entered = False  # it holds the locks and is calling the backend
        self.abandoned = False
        self.result: Any = None
        self.error: BaseException | None = None

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def run(self) -> None:
        with self._state:
            if self.abandoned:
                return
            self.started = True
        try:
            self.result = self.fn(self)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            self.error = exc
        finally:
            self.done.set()

    def enter(self) -> bool:
        """Mark the backend call as begun; False if the caller gave up (then it must not)."""
        with self._state:
            if self.abandoned:
                return False
            self.entered = True
            return True

    def abandon(self) -> bool:
        """Give up on the job; True if its backend call had begun (it may still complete)."""
        with self._state:
            self.abandoned = True
            return self.entered


class _DaemonPool:
    """A small pool of daemon worker threads that grows on demand and shrinks when idle."""

    def __init__(self, idle_timeout: float = 30.0) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # workers waiting for a job that no submitted job has claimed yet
        self._idle_timeout = idle_timeout

    def submit(self, job: _Job) -> None:
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        self._jobs.put(job)
        if spawn:
            threading.Thread(target=self._work, name="oauth-auth-keyring", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self._idle_timeout)
            except queue.Empty:
                with self._lock:
                    # Leave only if an unclaimed idle worker remains (it may be us); when
                    # the count is zero a submitter has claimed us and its job is coming.
                    if self._idle > 0:
                        self._idle -= 1
                        return
                continue
            job.run()
            del job
            with self._lock:
                self._idle += 1


_POOL = _DaemonPool()

# One in-process lock and one file lock per lock path, shared by every KeyringSecrets.
_LOCKS_GUARD = threading.Lock()
_LOCKS: dict[str, tuple[threading.Lock, _ProcessLock]] = {}


def _after_fork_in_child() -> None:
    # Worker threads do not survive fork, and a lock held by one would stay held forever.
    global _POOL, _LOCKS_GUARD, _LOCKS
    _POOL = _DaemonPool()
    _LOCKS_GUARD = threading.Lock()
    _LOCKS = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _ProcessLock:
    """An exclusive lock on a file, shared by every process of the user.

    Every keyring call takes it, so its cost is paid by each cached `oauth-auth token`: on
    POSIX it is flock(2) on a descriptor opened for each hold, which imports nothing
    (filelock's import alone cost 6-7 ms, a quarter of that command's margin over a bare
    keyring read); elsewhere it is filelock. Either way the OS drops the lock when its holder
    dies, even by kill -9, and the file (mode 0600, empty) is left in place. filelock and
    this class lock the same way on POSIX, so they exclude each other.

    Not thread-safe: callers hold the per-path `threading.Lock` around it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._fallback: Any = None

    def acquire(self, timeout: float, poll: float, cancel: Callable[[], bool] | None) -> bool:
        """Wait up to `timeout` seconds (< 0: forever); False on timeout or `cancel()`."""
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            return self._acquire_filelock(timeout, poll, cancel)
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = None if timeout < 0 else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            except BaseException:
                os.close(fd)
                raise
            else:
                self._fd = fd
                return True
            if (cancel is not None and cancel()) or (
                deadline is not None and time.monotonic() >= deadline
            ):
                os.close(fd)
                return False
            time.sleep(poll)

    def release(self) -> None:
        if self._fallback is not None:  # pragma: no cover - Windows
            self._fallback.release()
            return
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock

    def _acquire_filelock(  # pragma: no cover - Windows
        self, timeout: float, poll: float, cancel: Callable[[], bool] | None
    ) -> bool:
        import filelock

        if self._fallback is None:
            self._fallback = filelock.FileLock(self.path, mode=0o600, thread_local=False,
                                               preserve_lock_file=True)
        try:
            self._fallback.acquire(timeout=timeout, poll_interval=poll, cancel_check=cancel)
        except filelock.Timeout:
            return False
        return True


def _locks_for(path: Path) -> tuple[threading.Lock, _ProcessLock]:
    key = str(path)
    with _LOCKS_GUARD:
        pair = _LOCKS.get(key)
        if pair is None:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            pair = (threading.Lock(), _ProcessLock(path))
            _LOCKS[key] = pair
        return pair


def default_lock_dir() -> Path:
    """Where `KeyringSecrets` keeps its lock files.

    The user runtime directory (``$XDG_RUNTIME_DIR/oauth-auth`` on Linux, when that
    variable names a private directory of this user), else the user cache directory.
    """
    import platformdirs

    if sys.platform in ("win32", "darwin"):
        return Path(platformdirs.user_runtime_dir("oauth-auth"))
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and _is_private_dir(runtime):
        return Path(runtime) / "oauth-auth"
    return Path(platformdirs.user_cache_dir("oauth-auth"))


def _is_private_dir(path: str) -> bool:
    try:
        info = os.stat(path)
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and not info.st_mode & 0o077
        and os.access(path, os.W_OK)
    )


def _lock_file_name(backend_class_name: str) -> str:
    return "keyring-" + re.sub(r"[^A-Za-z0-9._-]", "_", backend_class_name) + ".lock"


# --------------------------------------------------------------------------------------
# KeyringSecrets

_NO_KEYRING_HINT = (
    "configure a real keyring backend: on Linux run a Secret Service (install gnome-keyring, "
    "or KeePassXC with its Secret Service integration) in a desktop or D-Bus session; or "
    "choose a backend explicitly with PYTHON_KEYRING_BACKEND "
    "(e.g. keyring.backends.SecretService.Keyring) or in keyringrc.cfg "
    "(see `python -m keyring diagnose`)"
)


def _class_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _exception_names(exc: BaseException) -> set[str]:
    """Class names (with bases) of `exc` and the exceptions it was raised from."""
    names: set[str] = set()
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        names.update(cls.__name__ for cls in type(current).__mro__)
        current = current.__cause__ or current.__context__
    return names


class KeyringSecrets:
    """Secrets in the operating system's keychain, through the `keyring` package.

    Each name is stored as keyring's (service, username, password) triple
    ``(service, name, value)``. The backend is the one keyring is configured to use
    (``PYTHON_KEYRING_BACKEND``, ``keyringrc.cfg``, else its automatic choice), looked up on
    first use, or the one passed as `backend`. keyring's placeholders (the ``fail`` and
    ``null`` backends, or a chainer with no real backend behind it) are refused with a
    `SecretsError` that says how to configure a real one: nothing falls back to plaintext
    files by itself. A plaintext backend chosen explicitly is used, and `is_plaintext` says
    so, for the caller to warn.

    Every call:

    - is serialized across threads and processes by a lock per backend: a
      `threading.Lock` and a file lock ``keyring-<backend class>.lock`` (mode 0600) in the
      user runtime directory (falling back to the user cache directory), because
      gnome-keyring crashes under concurrent clients and file-based backends corrupt their
      file under concurrent writers. A multi-entry operation (a split value) holds the lock
      throughout, so readers never see half of a write;
    - runs in a daemon worker thread and is bounded by `timeout` seconds, lock wait
      included (a locked keyring can wait forever for an unlock prompt). A call that times
      out raises `SecretsError`; a write that timed out may still complete later;
    - turns every failure into `SecretsError`, with the original exception as its cause,
      and never puts a value into a message or a log line.

    With keyring's stock Secret Service backend (Linux), calls go through one D-Bus
    connection and one session kept for the process, with the items, attributes and labels
    keyring itself writes, instead of keyring's connection per call: a read takes ~1.5 ms
    instead of ~9.5 ms, and fewer connections mean fewer chances to hit a gnome-keyring bug
    that aborts the daemon when a new client's first request races its registration.
    Measured with 8 processes, runs of 800 operations each: with a connection per call, the
    daemon aborted in 5 of 8 runs without the lock and still in 2 of 28 with it; with the
    kept connection, in 0 of 30 runs with the lock (and 0 of 12 without). `close` drops the
    connection early; it is also closed when the provider is garbage-collected.

    Long values: a value longer than `max_value_length` (in UTF-16 code units; by default
    1,280 for Windows Credential Manager, unlimited elsewhere) is split. Its parts are
    stored as ``<name>.part1`` ... ``<name>.part<n>`` and `name` itself holds the header
    ``oauth-auth-split:<n>``; `get_secret` reassembles them. A value that happens to start
    with ``oauth-auth-split:`` is always stored split, so it is never mistaken for a
    header. `set_secret` removes the parts a previous, longer value left behind, and
    `delete_secret` removes all parts. A header whose parts are missing is reported as a
    corrupt entry (`SecretsError`); delete it to recover.

    Safe for concurrent use by multiple threads and processes.
    """

    writable = True

    def __init__(
        self,
        service: str = "oauth-auth",
        *,
        backend: Any = None,
        timeout: float | None = 10.0,
        max_value_length: int | None = None,
        lock: bool = True,
        lock_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        """Create a provider; the backend is only looked up (and keyring imported) on use.

        Args:
            service: keyring's service name for every entry.
            backend: a keyring backend instance to use instead of keyring's configured one.
            timeout: seconds each call may take, lock wait included; None waits forever
                and calls the backend on the caller's thread.
            max_value_length: longest value stored as one entry, in UTF-16 code units;
                None picks it from the backend (1,280 on Windows, else unlimited).
            lock: serialize calls across processes with a file lock (threads are always
                serialized).
            lock_dir: where the lock files go (default: `default_lock_dir()`).

        Raises:
            ValueError: a bad timeout or max_value_length.
            SecretsError: `backend` is one of keyring's placeholder backends.
        """
        if not service:
            raise ValueError("KeyringSecrets needs a non-empty service name")
        if timeout is not None and not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds, or None")
        if max_value_length is not None and max_value_length < _MIN_MAX_VALUE_LENGTH:
            raise ValueError(f"max_value_length must be at least {_MIN_MAX_VALUE_LENGTH}")
        self.service = service
        self.timeout = timeout
        self._max_value_length = max_value_length
        self._use_file_lock = lock
        self._lock_dir = Path(lock_dir) if lock_dir is not None else None
        self._init_lock = threading.Lock()
        self._backend: Any = None
        self._driver: Any = None
        self._plaintext = False
        self._lock_paths: list[Path] = []
        self._members: list[Any] = []
        self._chained = False
        self._unusable: SecretsError | None = None
        if backend is not None:
            self._adopt(backend, explicit=True)
            if self._unusable is not None:
                raise self._unusable

    # -- backend ---------------------------------------------------------------------

    def _adopt(self, backend: Any, *, explicit: bool) -> None:
        from keyring.backends import chainer, fail, null

        placeholders = (fail.Keyring, null.Keyring)
        chained = isinstance(backend, chainer.ChainerBackend)
        members = list(backend.backends) if chained else [backend]
        real = [b for b in members if not isinstance(b, placeholders)]
        name = _class_name(backend)
        unusable = None
        if not real:
            unusable = SecretsError(
                f"no usable keyring backend: keyring chose {name}, a placeholder that "
                "stores nothing",
                hint=_NO_KEYRING_HINT,
            )
        self._members = real
        self._chained = chained
        self._plaintext = any(_looks_plaintext(b) for b in real)
        if real and _looks_plaintext(real[0]) and not explicit:
            # keyring's own pick (nothing configured it) would write secrets in clear: a
            # fallback to plaintext, which only the user may choose. (A chainer writes to
            # its first backend; a plaintext one further down is only a fallback for
            # backends that cannot store, so it is reported, not refused.)
            unusable = SecretsError(
                f"keyring chose {_class_name(real[0])} by itself, which stores secrets"
                " unencrypted on disk; oauth-auth does not fall back to plaintext",
                hint=_NO_KEYRING_HINT + "; to accept plaintext storage, name that backend"
                " in PYTHON_KEYRING_BACKEND or keyringrc.cfg",
            )
        elif self._plaintext and unusable is None and explicit:
            logger.warning(
                "the keyring backend %s keeps secrets unencrypted on disk (it was configured"
                " explicitly, so it is used)", name,
            )
        elif self._plaintext and unusable is None:
            plain = next(_class_name(b) for b in real if _looks_plaintext(b))
            logger.warning(
                "the keyring backend %s chains %s, which keeps secrets unencrypted on disk;"
                " it is only used if %s cannot store them", name, plain,
                _class_name(real[0]),
            )
        lock_names = sorted({_class_name(b) for b in real} or {name})
        directory = self._lock_dir or default_lock_dir()
        self._lock_paths = [directory / _lock_file_name(n) for n in lock_names]
        self._unusable = unusable
        self._backend = backend
        self._driver = _SecretServiceDriver.wrap(backend)
        if self._driver is not backend:
            weakref.finalize(self, self._driver.close)

    def _resolve(self) -> Any:
        with self._init_lock:
            if self._backend is None:
                try:
                    import keyring

                    backend = keyring.get_keyring()
                    explicit = _keyring_configured()
                except Exception as exc:
                    raise SecretsError(
                        f"could not load the keyring backend: {type(exc).__name__}",
                        hint=_NO_KEYRING_HINT,
                    ) from exc
                self._adopt(backend, explicit=explicit)
            return self._backend

    def _usable_backend(self) -> Any:
        """What the operations call: the backend, or its persistent-connection driver."""
        self._resolve()
        if self._unusable is not None:
            raise self._unusable
        return self._driver

    @property
    def loaded(self) -> bool:
        """Whether the backend was looked up already (by an operation or a property).

        Lets a caller report on the backend only when it was used, without paying for (or
        failing on) the lookup otherwise.
        """
        return self._backend is not None

    @property
    def backend(self) -> Any:
        """The keyring backend instance in use (looked up on first access)."""
        return self._resolve()

    @property
    def backend_name(self) -> str:
        """Dotted class name of the backend, e.g. ``keyring.backends.SecretService.Keyring``.

        A chainer lists the backends it chains, in brackets.
        """
        backend = self._resolve()
        name = _class_name(backend)
        if self._chained:
            name += "[" + ", ".join(_class_name(b) for b in self._members) + "]"
        return name

    @property
    def is_plaintext(self) -> bool:
        """True when values may land unencrypted on disk (a keyrings.alt plaintext backend)."""
        self._resolve()
        return self._plaintext

    @property
    def max_value_length(self) -> int | None:
        """Longest value stored as one entry (UTF-16 code units); None means unlimited."""
        if self._max_value_length is not None:
            return self._max_value_length
        self._resolve()
        if any(type(b).__name__ == "WinVaultKeyring" for b in self._members):
            return WINDOWS_MAX_VALUE_LENGTH
        return None

    @property
    def lock_paths(self) -> list[Path]:
        """The lock files this provider takes, in the order it takes them."""
        self._resolve()
        return list(self._lock_paths)

    def check(self) -> None:
        """Raise `SecretsError` if the backend is a placeholder, without storing anything."""
        self._call("check", "", lambda backend: None)

    # -- the contract ----------------------------------------------------------------

    def get_secret(self, name: str) -> str | None:
        return self._call("read", name, lambda backend: self._get(backend, name))

    def set_secret(self, name: str, value: str) -> None:
        self._call("write", name, lambda backend: self._set(backend, name, value), value)

    def delete_secret(self, name: str) -> None:
        self._call("delete", name, lambda backend: self._delete(backend, name))

    # -- operations, run on a worker thread under the lock -------------------------------

    def _get(self, backend: Any, name: str) -> str | None:
        stored = backend.get_password(self.service, name)
        if stored is None:
            return None
        count = self._part_count(name, stored)
        if count is None:
            return str(stored)
        parts = []
        for index in range(1, count + 1):
            part = backend.get_password(self.service, part_name(name, index))
            if part is None:
                raise self._corrupt(name, f"part {index} of {count} is missing")
            parts.append(part)
        return "".join(parts)

    def _set(self, backend: Any, name: str, value: str) -> None:
        old_count = self._stored_part_count(backend, name)
        limit = self.max_value_length
        if value.startswith(SPLIT_PREFIX) or (limit is not None and _utf16_length(value) > limit):
            parts = split_value(value, limit or max(2, _utf16_length(value)))
            # Parts first, header last: the header never points at parts not yet written.
            for index, part in enumerate(parts, start=1):
                backend.set_password(self.service, part_name(name, index), part)
            backend.set_password(self.service, name, _split_header(len(parts)))
            new_count = len(parts)
        else:
            backend.set_password(self.service, name, value)
            new_count = 0
        for index in range(new_count + 1, old_count + 1):
            _delete_missing_ok(backend, self.service, part_name(name, index))

    def _delete(self, backend: Any, name: str) -> None:
        count = self._stored_part_count(backend, name)
        _delete_missing_ok(backend, self.service, name)
        for index in range(1, count + 1):
            _delete_missing_ok(backend, self.service, part_name(name, index))

    def _stored_part_count(self, backend: Any, name: str) -> int:
        """How many parts the value now stored under `name` has (0: not split, or absent).

        Looks for part 1 first: a search that finds nothing is much cheaper than reading the
        header (on the Secret Service, ~1 ms against ~9 ms), and usually nothing is split.
        """
        if backend.get_password(self.service, part_name(name, 1)) is None:
            return 0
        stored = backend.get_password(self.service, name)
        try:
            return self._part_count(name, stored) or 0 if stored is not None else 0
        except SecretsError:
            return 0  # a corrupt header: overwriting or deleting it repairs the entry

    def _part_count(self, name: str, stored: str) -> int | None:
        try:
            return _parse_split_header(stored)
        except ValueError:
            raise self._corrupt(name, "its split header is malformed") from None

    def _corrupt(self, name: str, why: str) -> SecretsError:
        return SecretsError(
            f"keyring entry {name!r} of service {self.service!r} is corrupt: {why}",
            hint="delete it (for example `oauth-auth logout`) and log in again",
        )

    # -- locking, timeout, error mapping ------------------------------------------------

    def _call(
        self, op: str, name: str, fn: Callable[[Any], _T], value: str | None = None
    ) -> _T:
        started = time.monotonic()
        if self.timeout is None:
            result = self._run_locked(op, name, fn, None, value)
        else:
            job = _Job(lambda job: self._run_locked(op, name, fn, job, value),
                       started + self.timeout)
            _POOL.submit(job)
            if not job.done.wait(self.timeout):
                began = job.abandon()
                if not job.done.is_set():
                    raise self._timeout_error(op, name, began=began)
            if job.error is not None:
                error = job.error
                job.error = None  # no cycle through the traceback
                # The worker's frames are finished: drop their locals (the value, the backend).
                traceback.clear_frames(error.__traceback__)
                raise error
            result = job.result
        logger.debug("keyring %s of %r took %.1f ms", op, name,
                     (time.monotonic() - started) * 1000)
        return result

    def _run_locked(
        self, op: str, name: str, fn: Callable[[Any], _T], job: _Job | None, value: str | None
    ) -> _T:
        try:
            backend = self._usable_backend()
            with self._locked(op, name, job):
                return fn(backend)
        except SecretsError:
            raise
        except Exception as exc:  # noqa: BLE001 - every backend failure becomes SecretsError
            _scrub_traceback(exc)
            raise self._map_error(op, name, exc, value) from _redacted_cause(exc, value)

    @contextmanager
    def _locked(self, op: str, name: str, job: _Job | None) -> Iterator[None]:
        with ExitStack() as stack:
            for path in self._lock_paths:
                try:
                    thread_lock, file_lock = _locks_for(path)
                except OSError as exc:
                    raise self._lock_unusable(op, name, path, exc) from exc
                timeout = -1.0 if job is None else job.remaining()
                if not thread_lock.acquire(timeout=timeout):
                    raise self._lock_timeout(op, name, path, "another thread of this process")
                stack.callback(thread_lock.release)
                if not self._use_file_lock:
                    continue
                try:
                    held = file_lock.acquire(
                        -1 if job is None else job.remaining(),
                        0.002,
                        None if job is None else (lambda: job.abandoned),
                    )
                except OSError as exc:
                    raise self._lock_unusable(op, name, path, exc) from exc
                if not held:
                    raise self._lock_timeout(op, name, path, "another process")
                stack.callback(file_lock.release)
            if job is not None and not job.enter():
                raise self._timeout_error(op, name, began=False)
            yield

    def _lock_unusable(self, op: str, name: str, path: Path, exc: OSError) -> SecretsError:
        return SecretsError(
            f"keyring {op} of {name!r} failed: cannot use the keyring lock file {path}: "
            f"{type(exc).__name__}: {exc.strerror or exc}",
            hint="make its directory writable, or pass lock_dir= to KeyringSecrets",
        )

    def _lock_timeout(self, op: str, name: str, path: Path, holder: str) -> SecretsError:
        return SecretsError(
            f"keyring {op} of {name!r} timed out after {self.timeout} s waiting for the "
            f"keyring lock {path}, held by {holder}, so this one was not made",
            hint="another keyring call may be stuck at an unlock prompt: unlock the keyring, "
            "or raise the timeout",
        )

    def _timeout_error(self, op: str, name: str, *, began: bool) -> SecretsError:
        detail = (
            "the keyring did not answer" if began else
            "another keyring call still holds the keyring lock, so this one was not made"
        )
        maybe = " (the write may still complete)" if began and op != "read" else ""
        return SecretsError(
            f"keyring {op} of {name!r} in service {self.service!r} timed out after "
            f"{self.timeout} s: {detail}{maybe}",
            hint="the keyring may be locked and waiting for an unlock prompt: unlock it "
            "(or start its daemon), or raise the timeout",
        )

    def _map_error(
        self, op: str, name: str, exc: BaseException, value: str | None
    ) -> SecretsError:
        names = _exception_names(exc)
        backend = _class_name(self._backend) if self._backend is not None else "keyring"
        if names & {"KeyringLocked", "LockedException", "PromptDismissedException"}:
            what, hint = "the keyring is locked", (
                "unlock your keyring (log in to your desktop session, or unlock it in its "
                "manager) and try again"
            )
        elif names & {"SecretServiceNotAvailableException", "OSError", "EOFError"}:
            what, hint = "the keyring service is not reachable", (
                "make sure the Secret Service (gnome-keyring, KeePassXC...) is running and "
                "DBUS_SESSION_BUS_ADDRESS points at your session bus"
            )
        elif names & {"NoKeyringError", "InitError"}:
            what, hint = "the keyring backend is not available", _NO_KEYRING_HINT
        elif names & {"ItemNotFoundException"}:
            what, hint = "the keyring collection or item is missing", (
                "create or unlock the default keyring collection (e.g. with seahorse)"
            )
        elif names & {"DBusErrorResponse"}:
            what, hint = "the keyring service answered with a D-Bus error", ""
        else:
            what, hint = "the keyring backend failed", ""
        detail = _redact(f"{type(exc).__name__}: {exc}", value)
        if len(detail) > 300:
            detail = detail[:300] + "..."
        return SecretsError(
            f"keyring {op} of {name!r} in service {self.service!r} failed ({backend}): "
            f"{what}: {detail}",
            hint=hint or SecretsError.hint,
        )

    def close(self) -> None:
        """Close the D-Bus connection kept for the Secret Service, if any (it reopens on use)."""
        if self._driver is not None and self._driver is not self._backend:
            with _locks_for_close(self._lock_paths):
                self._driver.close()

    def __repr__(self) -> str:
        backend = _class_name(self._backend) if self._backend is not None else "<not loaded>"
        return f"KeyringSecrets(service={self.service!r}, backend={backend})"


class _SecretServiceDriver:
    """keyring's SecretService backend on one D-Bus connection and session, reused.

    keyring's own backend opens a D-Bus connection, and a Diffie-Hellman session with the
    daemon, for every call: ~9 ms per read, and every new connection is a chance to hit a
    race in gnome-keyring that aborts the daemon (a client's first request can be served
    before the daemon has registered the client). This driver does what keyring's
    ``get_password``/``set_password``/``delete_password`` do, with the same item
    attributes, labels and collection, but keeps the connection and session for the
    process (~1.5 ms per read). A new connection first pings the daemon and pauses
    briefly, so that the daemon registers the client before the first real request.

    Not thread-safe: `KeyringSecrets` calls it under its per-backend lock. A failure on a
    reused connection drops it and retries once on a new one (the daemon may have been
    restarted); every call is idempotent.
    """

    SETTLE_SECONDS = 0.005

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self._conn: Any = None
        self._session: Any = None
        self._collection: Any = None
        self._owner: tuple[int, str | None] = (0, None)

    @classmethod
    def wrap(cls, backend: Any) -> Any:
        """A driver for keyring's stock SecretService backend; any other backend as is."""
        try:
            from keyring.backends import SecretService
        except ImportError:  # pragma: no cover - keyring always ships it
            return backend
        if type(backend) is SecretService.Keyring and hasattr(backend, "_query"):
            return cls(backend)
        return backend

    def close(self) -> None:
        conn, self._conn, self._session, self._collection = self._conn, None, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _connect(self) -> Any:
        import secretstorage
        from secretstorage.defines import SS_PATH
        from secretstorage.util import DBusAddressWrapper, open_session

        owner = (os.getpid(), os.environ.get("DBUS_SESSION_BUS_ADDRESS"))
        if self._conn is not None and self._owner == owner:
            return self._conn
        self.close()  # after fork, or the session bus changed
        conn = secretstorage.dbus_init()
        try:
            DBusAddressWrapper(SS_PATH, "org.freedesktop.DBus.Peer", conn).call("Ping", "")
            time.sleep(self.SETTLE_SECONDS)
            self._session = open_session(conn)
        except BaseException:
            conn.close()
            raise
        self._conn, self._owner = conn, owner
        return conn

    def _get_collection(self) -> Any:
        import secretstorage
        from keyring.errors import InitError, KeyringLocked
        from secretstorage.exceptions import ItemNotFoundException, SecretStorageException

        conn = self._connect()
        if self._collection is None:
            path = getattr(self._backend, "preferred_collection", None)
            try:
                if path:
                    collection = secretstorage.Collection(conn, path, self._session)
                else:
                    try:
                        collection = secretstorage.Collection(conn, session=self._session)
                    except ItemNotFoundException:
                        created = secretstorage.get_default_collection(conn, self._session)
                        collection = secretstorage.Collection(
                            conn, created.collection_path, self._session
                        )
            except SecretStorageException as exc:
                raise InitError(f"Failed to create the collection: {exc}.") from exc
            self._collection = collection
        if self._collection.is_locked():
            self._collection.unlock()
            if self._collection.is_locked():  # the prompt was dismissed
                raise KeyringLocked("Failed to unlock the collection!")
        return self._collection

    def _run(self, action: Callable[[Any], _T]) -> _T:
        reused = self._conn is not None
        try:
            return action(self._get_collection())
        except Exception as exc:
            if _exception_names(exc) & {"PasswordDeleteError", "KeyringLocked"}:
                raise  # answers, not a broken connection
            self.close()
            if not reused:
                raise
        return action(self._get_collection())

    def get_password(self, service: str, username: str) -> str | None:
        def action(collection: Any) -> str | None:
            for item in collection.search_items(self._backend._query(service, username)):
                self._backend.unlock(item)
                return str(item.get_secret().decode("utf-8"))
            return None

        return self._run(action)

    def set_password(self, service: str, username: str, password: str) -> None:
        attributes = self._backend._query(service, username, application=self._backend.appid)
        label = f"Password for '{username}' on '{service}'"
        self._run(lambda c: c.create_item(label, attributes, password, replace=True))

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        def action(collection: Any) -> None:
            for item in collection.search_items(self._backend._query(service, username)):
                item.delete()
                return
            raise PasswordDeleteError("No such password!")

        self._run(action)


@contextmanager
def _locks_for_close(paths: list[Path]) -> Iterator[None]:
    """The in-process locks of `paths` (so a connection is not closed under a running call)."""
    with ExitStack() as stack:
        for path in paths:
            thread_lock, _ = _locks_for(path)
            if thread_lock.acquire(timeout=1.0):
                stack.callback(thread_lock.release)
        yield


def _keyring_configured() -> bool:
    """Whether the user chose keyring's backend (PYTHON_KEYRING_BACKEND, or keyringrc.cfg
    with a default-keyring), as opposed to keyring picking one by priority.

    A program that installs a backend with `keyring.set_keyring()` is not seen here; it
    passes the backend as `KeyringSecrets(backend=...)` to have a plaintext one accepted.
    """
    if os.environ.get("PYTHON_KEYRING_BACKEND", "").strip():
        return True
    import configparser

    from keyring.util import platform_

    config = configparser.RawConfigParser()
    try:
        config.read(Path(platform_.config_root()) / "keyringrc.cfg", encoding="utf-8")
        return bool(config.get("backend", "default-keyring", fallback="").strip())
    except (configparser.Error, OSError, UnicodeDecodeError):
        return False


def _looks_plaintext(backend: object) -> bool:
    cls = type(backend)
    name = f"{cls.__module__}.{cls.__qualname__}".lower()
    if "plaintext" in name:
        return True
    return cls.__module__.startswith("keyrings.alt.file") and "encrypted" not in name


def _delete_missing_ok(backend: Any, service: str, name: str) -> None:
    """Delete an entry; one that is not there (any backend's way of saying so) is fine."""
    try:
        backend.delete_password(service, name)
    except Exception as exc:
        missing = {"PasswordDeleteError", "ItemNotFoundException"}
        if _exception_names(exc) & missing and backend.get_password(service, name) is None:
            return
        raise


def _scrub_traceback(exc: BaseException) -> None:
    """Release what a failed backend call left in its traceback, and drop frame locals.

    keyring's SecretService backend opens a D-Bus connection per call and leaks it when the
    call fails before its ``closing()`` block (a locked or missing collection, a daemon that
    is gone): close any such connection. Then clear the finished frames' locals, which also
    hold the value being stored, so no traceback printed with its locals shows it.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            for local in list(tb.tb_frame.f_locals.values()):
                cls = type(local)
                if cls.__name__ == "DBusConnection" and cls.__module__.startswith("jeepney"):
                    with contextlib.suppress(Exception):
                        local.close()
            tb = tb.tb_next
        if current.__traceback__ is not None:
            traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__


def _sensitive_fragments(value: str | None) -> list[str]:
    # Very short values would match innocent text; tokens are never that short.
    return [value] if value and len(value) >= 8 else []


def _redact(text: str, value: str | None) -> str:
    for fragment in _sensitive_fragments(value):
        text = text.replace(fragment, "<redacted>")
    if value and len(value) >= 8:
        # A backend may quote a slice (one part of a split value): drop long shared runs.
        for start in range(0, len(value) - 16, 16):
            chunk = value[start : start + 16]
            if chunk in text:
                return "<details withheld: they quoted the secret>"
    return text


def _redacted_cause(exc: BaseException, value: str | None) -> BaseException | None:
    """`exc` to chain as the cause, or None when its text quotes the value being stored."""
    text = _redact(str(exc), value)
    if text != str(exc):
        return None
    return exc
