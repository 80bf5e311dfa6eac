"""One process of a simulated host for the fleet proofs (tests/e2e/test_fleet_proof.py).

Usage: ``python -m tests.support.fleet_child '<json>'`` with keys issuer, client_id, key,
store (a store URL for `store_from_url`, whose encryption key comes from the environment,
``OAUTH_AUTH_STORE_KEY``, never from argv; or ``file:<dir>``, the tests' `FileSecrets`, the
one-host baseline of the benchmarks), go (a file whose appearance starts every
process at once), and optionally:

- lock (bool, default true): false turns the session lock off (the token source's private
  test switch), to show the race the lease prevents;
- pause_before_write (bool): the process stops itself (SIGSTOP) right before its
  compare-and-set of the refresh token, that is, after the provider answered: the
  paused-holder proof resumes it with SIGCONT;
- lock_timeout (seconds, default 60).

Prints ``READY`` once started, then, after the go file appears, one ``TOKEN <token>`` or
``ERROR <type> <message>`` line; exits 0, or 3 when the call failed. The library logs at
DEBUG to stderr, which the parent checks for secrets (its hygiene ledger sees only its own
process).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from typing import Any

from oauth_auth import OAuthAuthError, OAuthTokenSource, OIDCParams
from oauth_auth._store_url import store_from_url
from tests.support.children import wait_for_start
from tests.support.filesecrets import FileSecrets


class PauseBeforeWrite:
    """A store that stops its process right before the refresh token's compare-and-set.

    Delegates everything else (the lease lock included: the token source finds the
    capabilities with getattr), so the process behaves as it would, only frozen at the
    worst moment: the provider has rotated the token and the store does not know yet.
    """

    def __init__(self, inner: Any, key: str) -> None:
        self._inner = inner
        self._key = key

    def compare_and_set(self, name: str, expected: str | None, value: str) -> bool:
        if name == self._key:
            print("PAUSING", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)
        return bool(self._inner.compare_and_set(name, expected, value))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def main() -> int:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(levelname)s %(name)s %(message)s")
    cfg = json.loads(sys.argv[1])
    store = str(cfg["store"])
    secrets: Any = (FileSecrets(store[5:]) if store.startswith("file:")
                    else store_from_url(store))
    if cfg.get("pause_before_write"):
        secrets = PauseBeforeWrite(secrets, cfg["key"])
    source = OAuthTokenSource(
        OIDCParams(cfg["issuer"], cfg["client_id"]),
        key_provider=lambda: cfg["key"],
        secrets_provider=secrets,
        lock_timeout=float(cfg.get("lock_timeout", 60)),
    )
    source._cross_process_lock = cfg.get("lock", True)
    print("READY", flush=True)
    if not wait_for_start(cfg):  # its ready file, then the go file (tests.support.children)
        print("ERROR Timeout never started", flush=True)
        return 3
    try:
        print(f"TOKEN {source.token()}", flush=True)
    except OAuthAuthError as exc:
        print(f"ERROR {type(exc).__name__} {exc}", flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
