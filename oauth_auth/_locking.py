"""The cross-process refresh lock: one refresh per session key, whatever the process count.

With a provider that rotates refresh tokens, two processes that refresh at once spend the
same refresh token; the second gets `invalid_grant` and the provider revokes the whole
family (RFC 9700), logging the user out. So refreshing and logging in happen under an OS
file lock specific to the secrets key (filelock: flock on POSIX, LockFileEx on Windows).
The OS releases it when its holder dies, even by kill -9, so a stale lock file is no
obstacle. The lock file holds nothing; it lives in the user's runtime (else cache)
directory with mode 0600, never in the working directory.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import ConfigError, LockTimeoutError

__all__ = ["default_lock_dir", "lock_path", "process_lock"]

#: Environment variable that overrides the lock directory (shared by every process).
LOCK_DIR_ENV = "OAUTH_AUTH_LOCK_DIR"


def default_lock_dir() -> Path:
    """The per-user directory for lock files: $OAUTH_AUTH_LOCK_DIR, runtime dir, cache dir."""
    override = os.environ.get(LOCK_DIR_ENV)
    if override:
        return Path(override)
    import platformdirs

    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(platformdirs.user_runtime_dir("oauth-auth"))
    return Path(platformdirs.user_cache_dir("oauth-auth")) / "locks"


def lock_path(key: str, lock_dir: str | os.PathLike[str] | None = None) -> Path:
    """The lock file for a secrets key (hashed, so any key is a safe file name)."""
    base = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return base / f"refresh-{digest}.lock"


@contextlib.contextmanager
def process_lock(path: Path, timeout: float) -> Iterator[None]:
    """Hold the OS lock on `path` for the block; wait at most `timeout` seconds.

    Raises:
        LockTimeoutError: another process held it longer; the message names the file.
        ConfigError: the lock file cannot be created (not a directory, read-only, full).
    """
    import filelock

    lock = filelock.FileLock(str(path), timeout=timeout, mode=0o600, thread_local=False)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock.acquire()
    except filelock.Timeout:
        raise LockTimeoutError(
            f"another process held the refresh lock {path} for more than {timeout:g} s",
            path=str(path),
            hint="another oauth-auth process may be waiting for a login; finish or stop it,"
            " or raise lock_timeout",
        ) from None
    except OSError as exc:  # not a directory, read-only, full disk, permission denied
        first = "free some disk space, or " if exc.errno == errno.ENOSPC else ""
        raise ConfigError(
            f"cannot create the refresh lock file {path}: {exc.strerror or exc}",
            hint=f"{first}point lock_dir (or ${LOCK_DIR_ENV}) at a writable directory",
        ) from None
    try:
        yield
    finally:
        lock.release()
