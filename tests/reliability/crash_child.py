"""A child for the kill -9 trials: one process of many sharing a session, instrumented.

Usage: python -m tests.reliability.crash_child '<json>' with keys issuer, client_id, key,
store (a FileSecrets directory), lock_dir, slow_io (seconds each secrets call takes, like
a Secret Service under load). It starts when a byte arrives on its stdin (no polling, so
waiting children cost no CPU while another trial runs).

It prints, unbuffered, one line per step of its refresh, so the parent knows exactly
where a kill -9 landed:

    READY                 imported, waiting for the start signal
    START                 token() called
    LOCKED                holds the cross-process lock
    READ AT / READ RT     read the shared access token / the refresh token
    SENT                  the refresh request is about to leave
    ANSWERED              the provider's answer is in
    WROTE RT / WROTE AT   the new refresh token / access token is stored
    TOKEN <token>         done;  or  ERROR <type> <message>

Exit code 0 with a token, 3 with an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from oauth_auth import OAuthAuthError, OAuthTokenSource, OIDCParams, _locking
from oauth_auth._http import IdPHttp
from tests.support.filesecrets import FileSecrets


def mark(text: str) -> None:
    os.write(1, (text + "\n").encode())


class SlowFileSecrets(FileSecrets):
    """FileSecrets whose every call takes `delay` seconds, and says what it did."""

    def __init__(self, directory: str, key: str, delay: float) -> None:
        super().__init__(directory)
        self.key, self.delay = key, delay

    def _kind(self, name: str) -> str:
        return "RT" if name == self.key else "AT"

    def get_secret(self, name: str) -> str | None:
        time.sleep(self.delay)
        value = super().get_secret(name)
        mark(f"READ {self._kind(name)}")
        return value

    def set_secret(self, name: str, value: str) -> None:
        time.sleep(self.delay)
        super().set_secret(name, value)
        mark(f"WROTE {self._kind(name)}")


def instrument() -> None:
    original_lock = _locking.process_lock

    @contextlib.contextmanager
    def marked_lock(path: Path, timeout: float) -> Iterator[None]:
        with original_lock(path, timeout):
            mark("LOCKED")
            yield

    _locking.process_lock = marked_lock  # type: ignore[assignment]

    post_form = IdPHttp.post_form

    def marked_post(self: IdPHttp, url: str, data: Any, **kw: Any) -> Any:
        mark("SENT")
        result = post_form(self, url, data, **kw)
        mark("ANSWERED")
        return result

    IdPHttp.post_form = marked_post  # type: ignore[method-assign]


def main() -> int:
    cfg = json.loads(sys.argv[1])
    instrument()
    store = SlowFileSecrets(cfg["store"], cfg["key"], float(cfg.get("slow_io", 0)))
    source = OAuthTokenSource(
        OIDCParams(cfg["issuer"], cfg["client_id"]),
        key_provider=lambda: cfg["key"],
        secrets_provider=store,
        lock_dir=cfg["lock_dir"],
        lock_timeout=30,
        http_timeout=10,
    )
    mark("READY")
    if not sys.stdin.buffer.read(1):
        mark("ERROR Aborted never started")
        return 3
    mark("START")
    try:
        token = source.token()
    except OAuthAuthError as exc:
        mark(f"ERROR {type(exc).__name__} {exc}")
        return 3
    mark(f"TOKEN {token}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
