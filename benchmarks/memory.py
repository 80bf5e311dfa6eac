"""Item 6: resident memory of a process holding a token source and authenticated clients.

Each configuration runs in a fresh interpreter (`benchmarks._memory_child`) that reports
VmRSS after building its objects and sending one request with each client to a loopback
API: `python -c pass`; a bare process with requests and httpx imported and a
`requests.Session` and `httpx.Client` used once; the same with an `OAuthTokenSource`
(after a real refresh at the local provider) and `OIDCAuth` on both; and, for reference,
authlib's `OAuth2Session` and `OAuth2Client` holding a refreshed token.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT, Stat, child_env, login
from benchmarks.throughput import api_server

MODES = ("pass", "bare", "oauth-auth", "authlib")
LABELS = {
    "pass": "python -c pass",
    "bare": "requests + httpx, one session + one client (floor)",
    "oauth-auth": "floor + OAuthTokenSource + OIDCAuth on both",
    "authlib": "floor + authlib OAuth2Session + OAuth2Client",
}


def run(idp: Any, reps: int = 3, log: Callable[[str], None] = print) -> dict[str, Any]:
    samples: dict[str, list[float]] = {m: [] for m in MODES}
    with api_server() as api, tempfile.TemporaryDirectory(prefix="oauth-auth-mem-") as tmp:
        for rep in range(reps + 1):  # the first round fills the bytecode cache: not counted
            for mode in MODES:
                cfg = {"mode": mode, "api": api, "issuer": idp.issuer,
                       "client_id": idp.client_id, "lock_dir": tmp, "refresh_token": ""}
                if mode in ("oauth-auth", "authlib"):
                    cfg["refresh_token"] = login(idp)["refresh_token"]
                proc = subprocess.run(
                    [sys.executable, "-m", "benchmarks._memory_child", json.dumps(cfg)],
                    cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
                    env=child_env(Path(tmp) / "pycache"))
                if proc.returncode != 0:
                    raise RuntimeError(f"memory child {mode} failed: {proc.stdout[-300:]}"
                                       f" {proc.stderr[-500:]}")
                if rep == 0:
                    continue
                samples[mode].append(json.loads(proc.stdout.strip().splitlines()[-1])
                                     ["rss_kib"] / 1024)
    out = {m: Stat.of(v) for m, v in samples.items()}
    for mode in MODES:
        log(f"  [6] {LABELS[mode]:55s} {out[mode].median:6.1f} MiB"
            f"  (+{out[mode].median - out['bare'].median:5.1f} over the floor)")
    return {"rss_mib": out, "labels": LABELS}
