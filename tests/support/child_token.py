"""A child process for the cross-process tests: wait for the start signal, call token().

Usage: python -m tests.support.child_token '<json>' with keys issuer, client_id, key,
store ("file:<dir>" or "keyring"), go (a file whose appearance starts everyone), lock
(bool: the private switch that turns the cross-process lock off), and optionally mode
("sync": one token() call, the default; "threads": `callers` threads calling token();
"async": `callers` asyncio tasks calling atoken() on one loop), and "ready" (a file the
child creates once it waits for `go`: see `tests.support.children`).
Prints one `TOKEN <token>` or `ERROR <type> <message>` line per caller; exits 0, or 3 if
any caller failed. The library logs at DEBUG to stderr, which the parent checks for secrets
(the session's secret-hygiene ledger only sees its own process).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from collections.abc import Callable

from oauth_auth import KeyringSecrets, OAuthAuthError, OAuthTokenSource, OIDCParams
from tests.support.children import wait_for_start
from tests.support.filesecrets import FileSecrets


def main() -> int:
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(levelname)s %(name)s %(message)s")
    cfg = json.loads(sys.argv[1])
    store = cfg["store"]
    # 16 children queue for the Secret Service one call at a time; on a loaded machine the
    # default 10 s per call (lock wait included) is a latency bound this test is not about.
    secrets = (FileSecrets(store[5:]) if store.startswith("file:")
               else KeyringSecrets(timeout=60))
    source = OAuthTokenSource(
        OIDCParams(cfg["issuer"], cfg["client_id"]),
        key_provider=lambda: cfg["key"],
        secrets_provider=secrets,
        lock_timeout=180,  # the test bounds correctness, not the wait on a loaded machine
    )
    source._cross_process_lock = cfg.get("lock", True)
    if not wait_for_start(cfg):
        print("ERROR Timeout never started", flush=True)
        return 3
    mode, callers = cfg.get("mode", "sync"), int(cfg.get("callers", 1))
    results: list[str] = []

    def record(call: Callable[[], str]) -> None:
        try:
            results.append(f"TOKEN {call()}")
        except OAuthAuthError as exc:
            results.append(f"ERROR {type(exc).__name__} {exc}")

    if mode == "threads":
        threads = [threading.Thread(target=record, args=(source.token,)) for _ in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elif mode == "async":

        async def run() -> None:
            outcomes = await asyncio.gather(*(source.atoken() for _ in range(callers)),
                                            return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    results.append(f"ERROR {type(outcome).__name__} {outcome}")
                else:
                    results.append(f"TOKEN {outcome}")

        asyncio.run(run())
    else:
        record(source.token)
    print("\n".join(results), flush=True)
    return 0 if all(r.startswith("TOKEN ") for r in results) else 3


if __name__ == "__main__":
    sys.exit(main())
