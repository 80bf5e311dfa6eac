"""Which backend keyring uses, remembered so that a cached `oauth-auth token` need not ask.

Asking keyring costs every process its import (~40 modules) and, when nothing configures
it, a scan of every installed package's entry points plus a probe of each backend. The
answer changes only when its inputs do, so `KeyringSecrets` records it (class names, never
a secret) in ``keyring-backend.json`` in the lock directory (`_locking.default_lock_dir`),
keyed by a fingerprint of those inputs:

- ``PYTHON_KEYRING_BACKEND`` and every ``KEYRING_PROPERTY_*`` variable;
- ``keyringrc.cfg`` (its path, size and modification time, or its absence);
- the interpreter and the directories on ``sys.path`` (installing or removing a package,
  such as a keyring backend, changes its directory's modification time);
- the variables keyring's backends probe for a session (D-Bus address, display, desktop).

Any change of these makes the record stale, and the next process asks keyring again. Only
Linux records a choice (keyring's configuration lives elsewhere on other systems, where
nothing changes), and only a usable one: a placeholder is asked about every time, so that
a Secret Service that starts later is found.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["BackendChoice", "cached_choice", "choice_file", "keyring_config_file",
           "record_choice"]

_FORMAT = 1
_SESSION_VARIABLES = ("DBUS_SESSION_BUS_ADDRESS", "DISPLAY", "WAYLAND_DISPLAY",
                      "XDG_CURRENT_DESKTOP", "XDG_SESSION_TYPE", "KDE_FULL_SESSION",
                      "XDG_RUNTIME_DIR")


class BackendChoice(NamedTuple):
    """What keyring's backend is, by name (a named tuple, not a dataclass: the cached
    `oauth-auth token` reads it, and `dataclasses` costs that path a tenth of its time).

    Attributes:
        backend: dotted class name of the backend keyring returns.
        members: the real backends behind it (a chainer's, in its order; else the backend
            itself), without keyring's placeholders.
        chained: whether `backend` is keyring's chainer.
        explicit: whether the user chose it (``PYTHON_KEYRING_BACKEND``, ``keyringrc.cfg``).
        secret_service: for keyring's own Secret Service backend, alone: its
            ``preferred_collection`` (None: the default) and attribute scheme.
    """

    backend: str
    members: tuple[str, ...]
    chained: bool
    explicit: bool
    secret_service: tuple[str | None, str] | None = None


def keyring_config_file() -> Path:
    """keyring's ``keyringrc.cfg`` on Linux (``$XDG_CONFIG_HOME/python_keyring``)."""
    root = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(root, "python_keyring", "keyringrc.cfg")


def choice_file() -> Path:
    """Where the choice is recorded."""
    from ._locking import default_lock_dir

    return default_lock_dir() / "keyring-backend.json"


def _stat(path: str | os.PathLike[str]) -> list[int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_mtime_ns, info.st_size, info.st_ino]


def _fingerprint() -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items()
           if k == "PYTHON_KEYRING_BACKEND" or k.startswith("KEYRING_PROPERTY_")
           or k in _SESSION_VARIABLES}
    config = keyring_config_file()
    return {
        "format": _FORMAT,
        "env": dict(sorted(env.items())),
        "keyringrc": [str(config), _stat(config)],
        "python": sys.executable,
        "path": [[entry, _stat(entry)] for entry in sys.path if entry],
    }


def cached_choice() -> BackendChoice | None:
    """The recorded choice when it still holds, else None (also on any read problem)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open(choice_file(), encoding="utf-8") as file:
            doc = json.load(file)
        if doc.get("fingerprint") != _fingerprint():
            return None
        ss = doc["secret_service"]
        return BackendChoice(
            backend=str(doc["backend"]), members=tuple(map(str, doc["members"])),
            chained=bool(doc["chained"]), explicit=bool(doc["explicit"]),
            secret_service=(None if ss is None else
                            (None if ss[0] is None else str(ss[0]), str(ss[1]))),
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def record_choice(choice: BackendChoice) -> None:
    """Record `choice` for the current configuration (best effort: errors are ignored)."""
    if not sys.platform.startswith("linux"):
        return
    doc = {"fingerprint": _fingerprint(), "backend": choice.backend,
           "members": list(choice.members), "chained": choice.chained,
           "explicit": choice.explicit,
           "secret_service": (None if choice.secret_service is None
                              else list(choice.secret_service))}
    path = choice_file()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(doc, out)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
