"""Fake keyring backends for unit tests of `KeyringSecrets` (the real one is secret_service)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from keyring.errors import PasswordDeleteError


class DictBackend:
    """A keyring backend in a dictionary; deleting a missing entry raises like keyring's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.data: dict[tuple[str, str], str] = {}
        self.calls: list[tuple[str, str]] = []

    def get_password(self, service: str, username: str) -> str | None:
        with self._lock:
            self.calls.append(("get", username))
            return self.data.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        with self._lock:
            self.calls.append(("set", username))
            self.data[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        with self._lock:
            self.calls.append(("delete", username))
            if self.data.pop((service, username), None) is None:
                raise PasswordDeleteError("No such password!")

    def usernames(self, service: str) -> set[str]:
        with self._lock:
            return {user for (svc, user) in self.data if svc == service}


class RaisingBackend(DictBackend):
    """Raises `make_error()` from every operation named in `ops` (get, set, delete)."""

    def __init__(self, make_error: Callable[[], BaseException],
                 ops: tuple[str, ...] = ("get", "set", "delete")) -> None:
        super().__init__()
        self.make_error = make_error
        self.ops = ops

    def get_password(self, service: str, username: str) -> str | None:
        if "get" in self.ops:
            raise self.make_error()
        return super().get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        if "set" in self.ops:
            raise self.make_error()
        super().set_password(service, username, password)

    def delete_password(self, service: str, username: str) -> None:
        if "delete" in self.ops:
            raise self.make_error()
        super().delete_password(service, username)


class BlockingBackend(DictBackend):
    """Every call blocks until `release` is set (a keyring waiting for an unlock prompt)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def _block(self) -> None:
        self.entered.set()
        self.release.wait(30)

    def get_password(self, service: str, username: str) -> str | None:
        self._block()
        return super().get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        self._block()
        super().set_password(service, username, password)


class OverlapDetectingBackend(DictBackend):
    """Counts calls that overlap a call of another process, through a shared marker file.

    Each call creates `marker` exclusively, holds it for `hold` seconds and removes it; a
    call that finds the marker already there overlaps another one.
    """

    def __init__(self, marker: str, hold: float = 0.002) -> None:
        super().__init__()
        self.marker = marker
        self.hold = hold
        self.overlaps = 0

    def _visit(self) -> None:
        import os
        import time

        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            self.overlaps += 1
            time.sleep(self.hold)
            return
        os.close(fd)
        time.sleep(self.hold)
        os.unlink(self.marker)

    def get_password(self, service: str, username: str) -> str | None:
        self._visit()
        return super().get_password(service, username)

    def set_password(self, service: str, username: str, password: str) -> None:
        self._visit()
        super().set_password(service, username, password)
