"""The OS keychain as a secrets provider: `KeyringSecrets`, through the `keyring` package.

Three jobs live here: adopting keyring's backend (refusing its placeholders and an
unchosen plaintext one), mapping every backend failure to a `SecretsError` that never
quotes a value, and splitting values too long for a backend into parts. Bounded calls run
on `_workers`; the locks come from `_locking`; keyring's stock Secret Service backend is
replaced by one kept connection (`_secret_service`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from . import _workers
from ._keyring_choice import BackendChoice, cached_choice, record_choice
from ._locking import keyring_lock_path, path_locks
from ._naming import SPLIT_PREFIX  # the value stored under a name whose value is split
from ._scrub import clear_frames
from ._secret_service import SCHEMES, SecretServiceConnection
from .errors import SecretsError

__all__ = ["SPLIT_PREFIX", "KeyringSecrets", "part_name", "split_value"]

logger = logging.getLogger("oauth_auth.secrets")

_T = TypeVar("_T")

# --------------------------------------------------------------------------------------
# Splitting values that are too long for a backend

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
        self._given: Any = backend
        self._backend: Any = None  # the keyring backend instance, once looked up
        self._choice: BackendChoice | None = None
        self._driver: Any = None
        self._lock_paths: list[Path] = []
        self._unusable: SecretsError | None = None
        if backend is not None:
            self._adopt(_choice_of(backend, explicit=True), backend)
            if self._unusable is not None:
                raise self._unusable_error()

    # -- backend ---------------------------------------------------------------------

    def _adopt(self, choice: BackendChoice, backend: Any) -> None:
        """Take `choice` as the backend (`backend`: its instance, None when only known by
        name): decide whether it is usable, warn about plaintext, set locks and driver."""
        unusable = None
        first = choice.members[0] if choice.members else None
        if first is None:
            unusable = SecretsError(
                f"no usable keyring backend: keyring chose {choice.backend}, a placeholder"
                " that stores nothing",
                hint=_NO_KEYRING_HINT,
            )
        elif _looks_plaintext(first) and not choice.explicit:
            # keyring's own pick (nothing configured it) would write secrets in clear: a
            # fallback to plaintext, which only the user may choose. (A chainer writes to
            # its first backend; a plaintext one further down is only a fallback for
            # backends that cannot store, so it is reported, not refused.)
            unusable = SecretsError(
                f"keyring chose {first} by itself, which stores secrets unencrypted on disk;"
                " oauth-auth does not fall back to plaintext",
                hint=_NO_KEYRING_HINT + "; to accept plaintext storage, name that backend"
                " in PYTHON_KEYRING_BACKEND or keyringrc.cfg",
            )
        elif any(_looks_plaintext(m) for m in choice.members) and choice.explicit:
            logger.warning(
                "the keyring backend %s keeps secrets unencrypted on disk (it was configured"
                " explicitly, so it is used)", choice.backend,
            )
        elif any(_looks_plaintext(m) for m in choice.members):
            plain = next(m for m in choice.members if _looks_plaintext(m))
            logger.warning(
                "the keyring backend %s chains %s, which keeps secrets unencrypted on disk;"
                " it is only used if %s cannot store them", choice.backend, plain, first,
            )
        lock_names = sorted(set(choice.members) or {choice.backend})
        self._lock_paths = [keyring_lock_path(n, self._lock_dir) for n in lock_names]
        self._unusable = unusable
        self._choice = choice
        self._backend = backend
        if choice.secret_service is not None:
            self._driver = SecretServiceConnection(*choice.secret_service)
            weakref.finalize(self, self._driver.close)
        else:
            self._driver = backend

    def _load(self) -> BackendChoice:
        """The backend's description, looked up on first use.

        A choice recorded by an earlier process (`_keyring_choice`) is taken as it is when
        it names keyring's Secret Service backend and keyring is not loaded in this
        process (where a program may have set its own backend): such a provider talks to
        the Secret Service without importing keyring at all. Anything else asks keyring.
        """
        with self._init_lock:
            if self._choice is None:
                cached = None if "keyring" in sys.modules else cached_choice()
                if cached is not None and cached.secret_service is not None:
                    self._adopt(cached, None)
                else:
                    self._adopt_keyrings_choice()
            if self._choice is None:  # pragma: no cover - _adopt always sets it
                raise RuntimeError("the keyring backend was not adopted")
            return self._choice

    def _adopt_keyrings_choice(self) -> None:
        try:
            import keyring

            backend = keyring.get_keyring()
            explicit = _keyring_configured()
        except Exception as exc:
            named = os.environ.get("PYTHON_KEYRING_BACKEND", "").strip()
            what = (f" {named!r} (PYTHON_KEYRING_BACKEND)" if named else "")
            raise SecretsError(
                f"could not load the keyring backend{what}: {type(exc).__name__}:"
                f" {str(exc)[:200]}",
                hint=(f"check the spelling of {named!r}; `python -m keyring --list-backends`"
                      " lists the installed ones") if named else _NO_KEYRING_HINT,
            ) from exc
        choice = _choice_of(backend, explicit=explicit)
        self._adopt(choice, backend)
        if self._unusable is None:
            record_choice(choice)

    def _unusable_error(self) -> SecretsError:
        """A new copy of the unusable-backend error: one object raised again and again
        would keep every raise's frames in its growing traceback."""
        error = self._unusable or SecretsError("no usable keyring backend")
        return SecretsError(str(error), hint=error.hint)

    def _usable_backend(self) -> Any:
        """What the operations call: the backend, or the kept Secret Service connection."""
        self._load()
        if self._unusable is not None:
            raise self._unusable_error()
        return self._driver

    @property
    def loaded(self) -> bool:
        """Whether the backend was looked up already (by an operation or a property).

        Lets a caller report on the backend only when it was used, without paying for (or
        failing on) the lookup otherwise.
        """
        return self._choice is not None

    @property
    def backend(self) -> Any:
        """The keyring backend instance in use (looked up on first access)."""
        self._load()
        with self._init_lock:
            if self._backend is None:
                import keyring

                self._backend = keyring.get_keyring()
            return self._backend

    @property
    def backend_name(self) -> str:
        """Dotted class name of the backend, e.g. ``keyring.backends.SecretService.Keyring``.

        A chainer lists the backends it chains, in brackets.
        """
        choice = self._load()
        name = choice.backend
        if choice.chained:
            name += "[" + ", ".join(choice.members) + "]"
        return name

    @property
    def is_plaintext(self) -> bool:
        """True when values may land unencrypted on disk (a keyrings.alt plaintext backend)."""
        return any(_looks_plaintext(m) for m in self._load().members)

    @property
    def max_value_length(self) -> int | None:
        """Longest value stored as one entry (UTF-16 code units); None means unlimited."""
        if self._max_value_length is not None:
            return self._max_value_length
        if any(m.rpartition(".")[2] == "WinVaultKeyring" for m in self._load().members):
            return WINDOWS_MAX_VALUE_LENGTH
        return None

    @property
    def lock_paths(self) -> list[Path]:
        """The lock files this provider takes, in the order it takes them."""
        self._load()
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
            try:
                result = _workers.run_bounded(
                    lambda job: self._run_locked(op, name, fn, job, value), self.timeout)
            except _workers.CallTimedOut as exc:
                raise self._timeout_error(op, name, began=exc.began) from None
        logger.debug("keyring %s of %r took %.1f ms", op, name,
                     (time.monotonic() - started) * 1000)
        return result

    def _run_locked(
        self, op: str, name: str, fn: Callable[[Any], _T], job: _workers.Job | None,
        value: str | None,
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
    def _locked(self, op: str, name: str, job: _workers.Job | None) -> Iterator[None]:
        with ExitStack() as stack:
            for path in self._lock_paths:
                try:
                    thread_lock, file_lock = path_locks(path)
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
                        -1 if job is None else job.remaining(), poll=0.002,
                        cancel=None if job is None else (lambda: job.abandoned),
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
        backend = self._choice.backend if self._choice is not None else "keyring"
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
        if isinstance(self._driver, SecretServiceConnection):
            with _locks_for_close(self._lock_paths):
                self._driver.close()

    def __repr__(self) -> str:
        backend = self._choice.backend if self._choice is not None else "<not loaded>"
        return f"KeyringSecrets(service={self.service!r}, backend={backend})"


@contextmanager
def _locks_for_close(paths: list[Path]) -> Iterator[None]:
    """The in-process locks of `paths` (so a connection is not closed under a running call)."""
    with ExitStack() as stack:
        for path in paths:
            thread_lock, _ = path_locks(path)
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


def _looks_plaintext(class_name: str) -> bool:
    """Whether the backend class (by dotted name) keeps values unencrypted on disk."""
    name = class_name.lower()
    if "plaintext" in name:
        return True
    return class_name.startswith("keyrings.alt.file.") and "encrypted" not in name


def _choice_of(backend: Any, *, explicit: bool) -> BackendChoice:
    """Describe a keyring backend instance by name, without keyring's placeholders."""
    from keyring.backends import SecretService, chainer, fail, null

    chained = isinstance(backend, chainer.ChainerBackend)
    members = list(backend.backends) if chained else [backend]
    real = [b for b in members if not isinstance(b, (fail.Keyring, null.Keyring))]
    secret_service = None
    if type(backend) is SecretService.Keyring and getattr(backend, "scheme", "") in SCHEMES:
        secret_service = (getattr(backend, "preferred_collection", None) or None,
                          str(backend.scheme))
    return BackendChoice(backend=_class_name(backend),
                         members=tuple(_class_name(b) for b in real), chained=chained,
                         explicit=explicit, secret_service=secret_service)


def _delete_missing_ok(backend: Any, service: str, name: str) -> None:
    """Delete an entry; one that is not there (any backend's way of saying so) is fine."""
    try:
        backend.delete_password(service, name)
    except Exception as exc:
        missing = {"PasswordDeleteError", "ItemNotFoundException", "ItemMissing"}
        if _exception_names(exc) & missing and backend.get_password(service, name) is None:
            return
        raise


def _scrub_traceback(exc: BaseException) -> None:
    """Release what a failed backend call left in its traceback, and drop frame locals.

    keyring's SecretService backend opens a D-Bus connection per call and leaks it when the
    call fails before its ``closing()`` block (a locked or missing collection, a daemon that
    is gone): close any such connection. Then clear the finished frames' locals, which also
    hold the value being stored, so no traceback printed with its locals shows it (the
    library's one frame-clearing rule, `_scrub.clear_frames`).
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
        current = current.__cause__ or current.__context__
    clear_frames(exc)


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
