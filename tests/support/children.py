"""Child processes released at once, for the cross-process tests and benchmarks.

`start_together(module, configs, directory, ...)` starts `python -m <module> '<json>'` once
per config, adding to each config a `go` file (shared) and a `ready` file (its own). The
child calls `wait_for_start(cfg)` once it is set up: that creates its ready file, then waits
for `go`. The parent creates `go` when every child is ready (or has already exited, which
its output then shows), so N interpreters start their work together however loaded the
machine is, and no sleep guesses how long they take to start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["START_TIMEOUT", "start_together", "wait_for_start"]

#: Seconds the parent waits for every child to be ready, and a child for the signal.
START_TIMEOUT = 180.0


def start_together(
    module: str,
    configs: Sequence[Mapping[str, Any]],
    directory: Path,
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float = START_TIMEOUT,
) -> list[subprocess.Popen[str]]:
    """Start one `module` child per config and release them at once (see the module).

    Raises:
        RuntimeError: not every child was ready within `timeout` (all are killed).
    """
    stamp = time.monotonic_ns()
    go = directory / f"go-{stamp}"
    readies = [directory / f"ready-{stamp}-{i}" for i in range(len(configs))]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", module,
             json.dumps({**cfg, "go": str(go), "ready": str(ready)})],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(env), cwd=cwd)
        for cfg, ready in zip(configs, readies, strict=True)
    ]
    deadline = time.monotonic() + timeout
    while not all(r.exists() or p.poll() is not None
                  for r, p in zip(readies, procs, strict=True)):
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


def wait_for_start(cfg: Mapping[str, Any], timeout: float = START_TIMEOUT) -> bool:
    """The child's side: say it is ready (its `ready` file), then wait for `go`; False
    when the signal never came."""
    if cfg.get("ready"):
        Path(cfg["ready"]).touch()
    deadline = time.monotonic() + timeout
    while not os.path.exists(cfg["go"]):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True
