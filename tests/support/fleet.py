"""Simulated hosts for the fleet proofs: process groups that share nothing but the server.

A `Fleet` starts `hosts x per_host` processes of tests/support/fleet_child.py. Each host is
a process group of its own with its own HOME, XDG_RUNTIME_DIR and lock directory (so the
OS file lock of one host is invisible to the others, as on separate machines); all of them
use the same store URL. Every process says READY before the go file appears, so they all
start their `token()` call at once, whatever the machine's load.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.hygiene import LEDGER

__all__ = ["Fleet", "HostProcess", "is_stopped"]

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class HostProcess:
    """One process of a simulated host; `lines` fills from its stdout as it runs."""

    host: int
    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    paused: threading.Event = field(default_factory=threading.Event)
    done_at: float = 0.0
    stderr: str = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def result(self) -> str:
        """The TOKEN/ERROR line (or what went wrong)."""
        found = [line for line in self.lines if line.startswith(("TOKEN ", "ERROR "))]
        return found[-1] if found else f"ERROR no result: {self.stderr[-800:]}"


def _read(proc: HostProcess) -> None:
    assert proc.popen.stdout is not None
    for raw in proc.popen.stdout:
        line = raw.rstrip("\n")
        proc.lines.append(line)
        if line == "READY":
            proc.ready.set()
        elif line == "PAUSING":
            proc.paused.set()
    proc.done_at = time.monotonic()
    proc.popen.stdout.close()


def _drain_stderr(proc: HostProcess) -> None:
    assert proc.popen.stderr is not None
    proc.stderr = proc.popen.stderr.read()
    proc.popen.stderr.close()


def is_stopped(pid: int) -> bool:
    """Whether process `pid` is stopped (SIGSTOP): state T in /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] in ("T", "t")


class Fleet:
    """Hosts on one store; `start`, then `go`, then `finish`.

    Args:
        tmp_path: where each host's HOME, runtime and lock directories are made.
        base: the child config every process gets (issuer, client_id, key, store).
        env: extra environment of every process (the store's encryption key).
    """

    def __init__(self, tmp_path: Path, base: dict[str, Any], env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.base = base
        self.env = env
        self.go_file = tmp_path / f"go-{time.monotonic_ns()}"
        self.procs: list[HostProcess] = []
        self._threads: list[threading.Thread] = []

    def _host_env(self, host: int) -> dict[str, str]:
        root = self.tmp_path / f"host-{host}"
        dirs = {name: root / name for name in ("home", "run", "locks")}
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("OAUTH_AUTH_") and k != "PYTHONDONTWRITEBYTECODE"}
        # 16 interpreters start at once on two cores: let them share compiled bytecode
        # (where the environment forbids writing it next to the sources).
        env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir())
                                                  / "oauth-auth-fleet-pycache"))
        env.update({
            "HOME": str(dirs["home"]), "XDG_RUNTIME_DIR": str(dirs["run"]),
            "OAUTH_AUTH_LOCK_DIR": str(dirs["locks"]),
            "OAUTH_AUTH_CONFIG": str(root / "config.json"),
            "PYTHONPATH": str(ROOT), "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            **self.env,
        })
        return env

    def start(self, hosts: int, per_host: int, ready_timeout: float = 60,
              **options: Any) -> list[HostProcess]:
        """Start the processes (each host a process group) and wait until all are READY."""
        started: list[HostProcess] = []
        for host in range(hosts):
            env = self._host_env(host)
            group = 0
            for _ in range(per_host):
                cfg = {**self.base, **options, "go": str(self.go_file)}
                popen = subprocess.Popen(
                    [sys.executable, "-m", "tests.support.fleet_child", json.dumps(cfg)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                    cwd=ROOT, **_group(group))
                if group == 0:
                    group = popen.pid
                proc = HostProcess(host, popen)
                for target in (_read, _drain_stderr):
                    thread = threading.Thread(target=target, args=(proc,), daemon=True)
                    thread.start()
                    self._threads.append(thread)
                started.append(proc)
        self.procs.extend(started)
        deadline = time.monotonic() + ready_timeout
        for proc in started:
            if not proc.ready.wait(max(0.0, deadline - time.monotonic())):
                self.kill()
                raise AssertionError(f"a host process never started: {proc.stderr[-800:]}")
        return started

    def go(self) -> float:
        """Start every process's token() call; returns the time (monotonic)."""
        self.go_file.touch()
        return time.monotonic()

    def finish(self, procs: list[HostProcess] | None = None, timeout: float = 120) -> list[str]:
        """Wait for `procs` (default: all) and return their results, one per process."""
        procs = self.procs if procs is None else procs
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"host {proc.host} process {proc.pid} hung") from None
        for thread in self._threads:
            thread.join(5)
        results = [proc.result for proc in procs]
        for proc in procs:
            # The children's DEBUG logs join the run's secret-hygiene check, against every
            # token they printed.
            LEDGER.text("fleet-child-log", proc.stderr)
            for line in proc.lines:
                if line.startswith("TOKEN "):
                    LEDGER.secret(line[6:], "fleet child token")
        return results

    def kill(self) -> None:
        """SIGKILL every process still running (after a failure)."""
        for proc in self.procs:
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.popen.kill()
                proc.popen.wait(10)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _group(group: int) -> dict[str, Any]:
    """Popen options that put the child in process group `group` (0: a new one)."""
    if sys.version_info >= (3, 11):
        return {"process_group": group}
    return {"preexec_fn": lambda: os.setpgid(0, group)}  # pragma: no cover - 3.10
