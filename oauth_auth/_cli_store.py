"""Small pieces the command line needs around the secrets store (standard library only).

- `HideSharedToken`: a store that reads no shared access token, so that a token source
  over it refreshes at the provider (`token --force-refresh`, `status --check`), and
  writes through, so the refreshed tokens are shared as usual;
- `who`: an identity (`SourceStatus.identity`) as a line of text;
- `backend_chosen_by`: why keyring uses the backend it uses, in words that are true.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ._keys import AT_SUFFIX

if TYPE_CHECKING:
    from .secrets import SecretsProvider

__all__ = ["HideSharedToken", "backend_chosen_by", "warn_once_a_day", "who"]

#: How often `token` repeats a warning about the same thing.
WARN_EVERY = 24 * 3600.0


class HideSharedToken:
    """`inner`, except that every shared access-token entry (``..._AT``) reads as absent.

    Everything else (writes, deletes, and the capabilities `_store` looks up: ``lock``,
    ``compare_and_set``, ``compare_and_delete``, ``writable``) is `inner`'s, so the lock
    and the compare-and-set rules are those of the real store. Safe for concurrent use
    when `inner` is.
    """

    def __init__(self, inner: SecretsProvider) -> None:
        self.inner = inner

    def get_secret(self, name: str) -> str | None:
        if name.endswith(AT_SUFFIX):
            return None
        return self.inner.get_secret(name)

    def set_secret(self, name: str, value: str) -> None:
        self.inner.set_secret(name, value)

    def delete_secret(self, name: str) -> None:
        self.inner.delete_secret(name)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"HideSharedToken({self.inner!r})"


def backend_chosen_by() -> str:
    """How keyring came to use its backend: the variable, the file, or neither."""
    env = os.environ.get("PYTHON_KEYRING_BACKEND", "").strip()
    if env:
        return f"chosen by PYTHON_KEYRING_BACKEND={env}"
    from ._keyring_choice import keyring_config_file

    path = keyring_config_file()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError):
        text = ""
    if "default-keyring" in text:
        return f"chosen in {path}"
    return ("neither PYTHON_KEYRING_BACKEND nor keyringrc.cfg names it: keyring or the"
            " program chose it")


def who(ident: dict[str, str]) -> str:
    """``sub (email, name)`` for a line of text."""
    sub = ident.get("sub", "")
    extra = ", ".join(ident[k] for k in ("email", "name") if k in ident)
    return f"{sub} ({extra})" if extra and sub else sub or extra


def warn_once_a_day(topic: str) -> bool:
    """Whether a warning about `topic` is due: not shown in the last `WARN_EVERY`
    seconds by any process of this user (a marker file in the lock directory, holding
    nothing). True when that cannot be told."""
    import hashlib
    import time

    from ._locking import default_lock_dir

    marker = default_lock_dir() / f"warned-{hashlib.sha256(topic.encode()).hexdigest()[:16]}"
    try:
        if time.time() - marker.stat().st_mtime < WARN_EVERY:
            return False
    except OSError:
        pass
    try:
        marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        marker.touch(mode=0o600)
        os.utime(marker)
    except OSError:
        pass
    return True
