"""A child process for the cross-process tests: wait for the start signal, call token().

Usage: python -m tests.support.child_token '<json>' with keys issuer, client_id, key,
store ("file:<dir>" or "keyring"), go (a file whose appearance starts everyone), lock
(bool: the private switch that turns the cross-process lock off).
Prints `TOKEN <token>` or `ERROR <type> <message>` and exits 0 or 3.
"""

from __future__ import annotations

import json
import os
import sys
import time

from oauth_auth import KeyringSecrets, OAuthAuthError, OAuthTokenSource, OIDCParams
from tests.support.filesecrets import FileSecrets


def main() -> int:
    cfg = json.loads(sys.argv[1])
    store = cfg["store"]
    secrets = FileSecrets(store[5:]) if store.startswith("file:") else KeyringSecrets()
    source = OAuthTokenSource(
        OIDCParams(cfg["issuer"], cfg["client_id"]),
        key_provider=lambda: cfg["key"],
        secrets_provider=secrets,
        lock_timeout=60,
    )
    source._cross_process_lock = cfg.get("lock", True)
    deadline = time.monotonic() + 30
    while not os.path.exists(cfg["go"]):
        if time.monotonic() > deadline:
            print("ERROR Timeout never started", flush=True)
            return 3
        time.sleep(0.002)
    try:
        token = source.token()
    except OAuthAuthError as exc:
        print(f"ERROR {type(exc).__name__} {exc}", flush=True)
        return 3
    print(f"TOKEN {token}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
