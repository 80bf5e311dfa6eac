"""A secrets provider shared between processes through files (tests only).

One file per name, written atomically with os.replace, so concurrent readers never see a
torn value. It has no lock of its own: the point of the tests that use it is that the
token source's cross-process lock is what prevents the refresh race.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path


class FileSecrets:
    """Secrets in a directory, one file per name; safe for concurrent processes."""

    writable = True

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        return self.dir / hashlib.sha256(name.encode()).hexdigest()

    def get_secret(self, name: str) -> str | None:
        try:
            return self._path(name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def set_secret(self, name: str, value: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.dir)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value)
        os.replace(tmp, self._path(name))

    def delete_secret(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(name).unlink()
