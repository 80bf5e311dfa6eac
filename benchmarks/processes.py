"""Item 4: 16 processes at expiry with rotation on, with the cross-process lock and without.

The pattern of tests/e2e/test_source.py `run_children`: a refresh token is seeded in a store the
processes share, 16 interpreters start (`tests.support.child_token`) and wait for a start
signal, then all call `token()` at once. No access token is cached, so every process
needs a refresh. The provider counts refreshes and `invalid_grant` answers; with the
lock off, the losers spend an already rotated token and reuse detection revokes the whole
session. Stores: `FileSecrets` (files, no lock of its own) and, when a private Secret
Service is running, the real keyring through `KeyringSecrets`.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT, child_env, introspect_active, login
from tests.support.children import start_together
from tests.support.filesecrets import FileSecrets
from tests.support.idp import refresh_count

PROCESSES = 16
CHILD_TIMEOUT = 90.0


def run_children(idp: Any, store: str, key: str, tmp: Path, lock: bool,
                 env: dict[str, str] | None = None, n: int = PROCESSES
                 ) -> tuple[list[str], float]:
    """Start n children, release them together; their outputs and the wall time from the
    start signal until the last one exited."""
    cfg = {"issuer": idp.issuer, "client_id": idp.client_id, "key": key, "store": store,
           "lock": lock}
    environ = child_env(tmp / "pycache", {**(env or {}),
                                          "OAUTH_AUTH_LOCK_DIR": str(tmp / "locks"),
                                          "PYTHONPATH": str(ROOT)})
    # Released when every interpreter has said it waits for the signal (ready files).
    procs = start_together("tests.support.child_token", [cfg] * n, tmp, env=environ, cwd=ROOT)
    start = time.perf_counter()
    outputs: list[str] = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=CHILD_TIMEOUT)
            outputs.append(out.strip() or f"ERROR NoOutput {err.strip()[-200:]}")
        wall = time.perf_counter() - start
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return outputs, wall


def one_run(idp: Any, store_kind: str, lock: bool, tmp: Path,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    key = f"PROC_{time.monotonic_ns()}"
    tokens = login(idp)
    if store_kind == "file":
        directory = tmp / f"store-{key}"
        provider: Any = FileSecrets(directory)
        store = f"file:{directory}"
    else:
        from oauth_auth import KeyringSecrets

        provider = KeyringSecrets()
        store = "keyring"
    provider.set_secret(key, tokens["refresh_token"])
    idp.reset_counts()
    outputs, wall = run_children(idp, store, key, tmp, lock, env)
    counts = idp.counts()
    errors = Counter(o.split()[1] for o in outputs if o.startswith("ERROR"))
    tokens_seen = {o.split()[1] for o in outputs if o.startswith("TOKEN ")}
    stored = provider.get_secret(key)
    alive = bool(stored) and introspect_active(idp, stored)
    if store_kind == "keyring":
        provider.delete_secret(key)
        provider.delete_secret(key + "_AT")
    return {
        "store": store_kind, "lock": lock, "processes": PROCESSES,
        "refresh_ok": refresh_count(counts, "ok"),
        "invalid_grant": refresh_count(counts, "invalid_grant"),
        "callers_ok": sum(1 for o in outputs if o.startswith("TOKEN ")),
        "errors": dict(errors), "distinct_tokens": len(tokens_seen),
        "session_alive": alive, "wall_s": wall,
    }


def run(idp: Any, keyring_env: dict[str, str] | None = None, reps: int = 2,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Lock on and off on the file store (`reps` times each), and lock on with the keyring
    when `keyring_env` (a private Secret Service) is given."""
    plan = [("file", True)] * reps + [("file", False)] * reps
    if keyring_env is not None:
        plan.append(("keyring", True))
    runs = []
    with tempfile.TemporaryDirectory(prefix="oauth-auth-procs-") as tmp:
        for store_kind, lock in plan:
            env = keyring_env if store_kind == "keyring" else None
            r = one_run(idp, store_kind, lock, Path(tmp), env)
            runs.append(r)
            log(f"  [4] {store_kind:7s} lock {'on ' if lock else 'off'}  refresh ok"
                f" {r['refresh_ok']:2d}  invalid_grant {r['invalid_grant']:2d}  processes ok"
                f" {r['callers_ok']:2d}/{PROCESSES}  session alive {r['session_alive']}"
                f"  {r['wall_s'] * 1e3:.0f} ms  {r['errors'] or ''}")
    return {"runs": runs}
