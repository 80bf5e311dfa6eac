"""A child process for the cross-process tests: wait for the start signal, call token().

Usage: python -m tests.support.child_token '<json>' with keys issuer, client_id, key,
store ("file:<dir>" or "keyring"), go (a file whose appearance starts everyone), lock
(bool: the private switch that turns the cross-process lock off), and optionally mode
("sync": one token() call, the default; "threads": `callers` threads calling token();
"async": `callers` asyncio tasks calling atoken() on one loop), and "ready" (a file the
child creates once it waits for `go`: see `start_together`, the parent's side).
Prints one `TOKEN <token>` or `ERROR <type> <message>` line per caller; exits 0, or 3 if
any caller failed. The library logs at DEBUG to stderr, which the parent checks for secrets
(the session's secret-hygiene ledger only sees its own process).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from oauth_auth import KeyringSecrets, OAuthAuthError, OAuthTokenSource, OIDCParams
from tests.support.filesecrets import FileSecrets

#: Seconds a child waits for the start signal, and the parent for every child to be ready.
START_TIMEOUT = 180.0


def start_together(
    configs: Sequence[Mapping[str, Any]],
    directory: Path,
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float = START_TIMEOUT,
) -> list[subprocess.Popen[str]]:
    """Start one child per config and release them at once: each child creates its ready
    file when it waits for the start signal, and the signal is given when every one has
    (or has already exited, which the caller then sees in its output). No sleep that
    guesses how long 16 interpreters take to start on a loaded machine.

    Raises:
        RuntimeError: not every child was ready within `timeout` (the children are killed).
    """
    stamp = time.monotonic_ns()
    go = directory / f"go-{stamp}"
    readies = [directory / f"ready-{stamp}-{i}" for i in range(len(configs))]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.child_token",
             json.dumps({**cfg, "go": str(go), "ready": str(ready)})],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(env), cwd=cwd)
        for cfg, ready in zip(configs, readies, strict=True)
    ]
    deadline = time.monotonic() + timeout
    while not all(r.exists() or p.poll() is not None for r, p in zip(readies, procs, strict=True)):
        if time.monotonic() > deadline:
            for p in procs:
                p.kill()
                p.communicate()
            started = sum(r.exists() for r in readies)
            raise RuntimeError(f"only {started} of {len(procs)} children were ready after"
                               f" {timeout:.0f} s")
        time.sleep(0.01)
    go.touch()
    return procs


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
    if cfg.get("ready"):
        Path(cfg["ready"]).touch()  # imported, set up, waiting: the parent counts these
    deadline = time.monotonic() + START_TIMEOUT
    while not os.path.exists(cfg["go"]):
        if time.monotonic() > deadline:
            print("ERROR Timeout never started", flush=True)
            return 3
        time.sleep(0.002)
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
