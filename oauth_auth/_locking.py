"""Every lock file of oauth-auth: where it lives, and the one OS lock that holds it.

With a provider that rotates refresh tokens, two processes that refresh at once spend the
same refresh token; the second gets `invalid_grant` and the provider revokes the whole
family (RFC 9700), logging the user out. So refreshing and logging in happen under an OS
file lock specific to the secrets key. The same lock serializes keyring calls (gnome-keyring
crashes under concurrent clients, file backends corrupt their file under concurrent
writers) and config-file writers (two logins at once both keep their entry).

One rule decides where every lock file lives (`default_lock_dir`: ``$OAUTH_AUTH_LOCK_DIR``,
else the user's private runtime directory, else ``<user cache dir>/locks``), and one class
takes the lock (`FileLock`: flock(2) on POSIX, filelock elsewhere). The OS releases it when
its holder dies, even by kill -9, so a stale lock file is no obstacle. Lock files hold no
secret: while held, the holder's process id (so a process that waits can say for whom),
else nothing; they have mode 0600 (their directory 0700), and are never in the working
directory.

The directory must be this user's own, mode 0700 (`check_lock_dir`), and is refused
otherwise: in a directory another user can write, that user could hold every lock (each
refresh then waits out the lock timeout) or plant a symlink under a lock file's name, which
old filelock releases followed and truncated (CVE-2025-68146). Lock files are opened with
O_NOFOLLOW for the same reason.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import ConfigError, LockTimeoutError

__all__ = [
    "LOCK_DIR_ENV",
    "FileLock",
    "check_lock_dir",
    "config_lock_path",
    "default_lock_dir",
    "keyring_lock_path",
    "lock_path",
    "path_locks",
    "process_lock",
]

#: Environment variable that overrides the lock directory (shared by every process).
LOCK_DIR_ENV = "OAUTH_AUTH_LOCK_DIR"


def default_lock_dir() -> Path:
    """The per-user directory of every lock file.

    ``$OAUTH_AUTH_LOCK_DIR`` when set; else the user runtime directory
    (``$XDG_RUNTIME_DIR/oauth-auth`` on Linux, when that variable names a private directory
    of this user; platformdirs' runtime directory on macOS and Windows); else
    ``<user cache dir>/oauth-auth/locks``.
    """
    override = os.environ.get(LOCK_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs

    if sys.platform in ("win32", "darwin"):
        return Path(platformdirs.user_runtime_dir("oauth-auth"))
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and _is_private_dir(runtime):
        return Path(runtime) / "oauth-auth"
    return Path(platformdirs.user_cache_dir("oauth-auth")) / "locks"


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


def check_lock_dir(directory: Path) -> None:
    """Create the lock directory (mode 0700) if missing; refuse it unless it is private.

    Private means: a directory (a symlink to one only when the link is ours too), owned by
    this user, with no permission for group or others. Nothing is changed on a directory
    that fails: a directory of another user is theirs, and a shared one of ours may be
    shared on purpose, so the user decides.

    Raises:
        OSError: the directory cannot be created or examined (callers say which lock).
        ConfigError: the directory is not private to this user.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    link = os.lstat(directory)
    info = os.stat(directory)
    if not hasattr(os, "getuid"):  # pragma: no cover - Windows: ACLs, not modes
        return
    uid = os.getuid()
    elsewhere = f"point lock_dir (or ${LOCK_DIR_ENV}) at a directory only you can use"
    problem, hint = "", elsewhere
    if not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory"
    elif link.st_uid != uid or info.st_uid != uid:
        problem = "belongs to another user"
    elif info.st_mode & 0o077:
        problem = f"is open to other users (mode {stat.S_IMODE(info.st_mode):04o}, not 0700)"
        hint = f"run `chmod 700 {directory}`, or {elsewhere}"
    if problem:
        raise ConfigError(
            f"the lock directory {directory} {problem}: another user could hold or"
            " redirect its locks",
            hint=hint,
        )


def _base(lock_dir: str | os.PathLike[str] | None) -> Path:
    return Path(lock_dir) if lock_dir is not None else default_lock_dir()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def lock_path(key: str, lock_dir: str | os.PathLike[str] | None = None) -> Path:
    """The refresh lock of a secrets key (hashed, so any key is a safe file name)."""
    return _base(lock_dir) / f"refresh-{_digest(key)}.lock"


def keyring_lock_path(backend_class: str, lock_dir: str | os.PathLike[str] | None = None) -> Path:
    """The lock serializing every call to one keyring backend class (by dotted name)."""
    return _base(lock_dir) / ("keyring-" + re.sub(r"[^A-Za-z0-9._-]", "_", backend_class)
                              + ".lock")


def config_lock_path(config_file: str | os.PathLike[str],
                     lock_dir: str | os.PathLike[str] | None = None) -> Path:
    """The lock serializing writers of one config file (by its absolute path)."""
    return _base(lock_dir) / f"config-{_digest(os.path.abspath(config_file))}.lock"


class FileLock:
    """An exclusive lock on a file, shared by every process of the user.

    On POSIX it is flock(2) on a descriptor opened for each hold, which imports nothing:
    filelock's import alone costs more than a cached `oauth-auth token` may spend on
    locking. Elsewhere it is filelock. Both lock the same way on POSIX (flock on the
    file), so they exclude each other; the file (mode 0600, empty) is left in place.

    Not thread-safe: one holder at a time per instance (`path_locks` pairs it with a
    `threading.Lock`). Two instances on one path exclude each other, in one process too.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._fallback: Any = None

    def acquire(self, timeout: float, *, poll: float = 0.01,
                cancel: Callable[[], bool] | None = None) -> bool:
        """Wait up to `timeout` seconds (< 0: forever); False on timeout or `cancel()`.

        Raises:
            OSError: the lock file cannot be created or locked (not its timeout).
        """
        if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
            return self._acquire_filelock(timeout, poll, cancel)
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
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
                _write_holder(fd)
                return True
            if (cancel is not None and cancel()) or (
                deadline is not None and time.monotonic() >= deadline
            ):
                os.close(fd)
                return False
            time.sleep(poll)

    def release(self) -> None:
        """Release the lock (closing the only descriptor releases the flock)."""
        if self._fallback is not None:  # pragma: no cover - Windows
            self._fallback.release()
            return
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # empty again while nobody holds it
            os.close(fd)

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


def _write_holder(fd: int) -> None:
    """Put this process's id into a lock file it now holds (best effort)."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, b"%d\n" % os.getpid(), 0)


def holder_pid(path: str | os.PathLike[str]) -> int | None:
    """The process id a held lock file names (None: unknown, or not held)."""
    try:
        with open(path, "rb") as file:
            text = file.read(32).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _say_waiting(path: Path, what: str, timeout: float) -> None:
    """Tell, once, that this process waits for another one, naming it when known."""
    import logging

    pid = holder_pid(path)
    who = f"process {pid}" if pid is not None else "another process"
    logging.getLogger("oauth_auth").info(
        "waiting for %s, which holds the %s of this session (a refresh, or a login"
        " waiting for its user); up to %g s", who, what, timeout,
        extra={"progress": True},
    )


@contextlib.contextmanager
def process_lock(path: Path, timeout: float, *, what: str = "refresh lock",
                 hint: str = "") -> Iterator[None]:
    """Hold the OS lock on `path` for the block; wait at most `timeout` seconds.

    Args:
        path: the lock file (its directory is created, mode 0700, and must be private).
        timeout: seconds to wait for another holder.
        what: how messages name this lock ("refresh lock", "config lock").
        hint: what a timeout's hint tells the user (default: about a waiting login).

    Raises:
        LockTimeoutError: another process held it longer; the message names the file.
        ConfigError: the lock file cannot be created (not a directory, read-only, full),
            or its directory is not private to this user (`check_lock_dir`).
    """
    lock = FileLock(path)
    try:
        check_lock_dir(path.parent)
        held = lock.acquire(0, poll=0.02)
        if not held and timeout > 0:
            _say_waiting(path, what, timeout)
            held = lock.acquire(timeout, poll=0.02)
    except OSError as exc:  # not a directory, read-only, full disk, permission denied
        first = "free some disk space, or " if exc.errno == errno.ENOSPC else ""
        raise ConfigError(
            f"cannot create the {what} file {path}: {exc.strerror or exc}",
            hint=f"{first}point lock_dir (or ${LOCK_DIR_ENV}) at a writable directory",
        ) from None
    if not held:
        raise LockTimeoutError(
            f"another process held the {what} {path} for more than {timeout:g} s",
            path=str(path),
            hint=hint or "another oauth-auth process may be waiting for a login; finish or"
            " stop it, or raise lock_timeout",
        )
    try:
        yield
    finally:
        lock.release()


# One in-process lock and one file lock per lock path, shared by every user of that path
# in this process (every KeyringSecrets of one backend).
_LOCKS_GUARD = threading.Lock()
_LOCKS: dict[str, tuple[threading.Lock, FileLock]] = {}


def path_locks(path: Path) -> tuple[threading.Lock, FileLock]:
    """This process's pair for `path`: a `threading.Lock` for its threads, then the
    `FileLock` for other processes. Creates the directory (mode 0700) and checks it once.

    Raises:
        OSError: the directory cannot be created.
        ConfigError: the directory is not private to this user (`check_lock_dir`).
    """
    key = str(path)
    with _LOCKS_GUARD:
        pair = _LOCKS.get(key)
        if pair is None:
            check_lock_dir(path.parent)
            pair = (threading.Lock(), FileLock(path))
            _LOCKS[key] = pair
        return pair


def _after_fork_in_child() -> None:
    # A lock held by a thread of the parent would stay held forever in the child.
    global _LOCKS_GUARD, _LOCKS
    _LOCKS_GUARD = threading.Lock()
    _LOCKS = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
