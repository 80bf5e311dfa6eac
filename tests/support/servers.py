"""Start and stop a local server process that never outlives the test run.

`ServerProcess` runs a command under a tiny shell guard that reads its own stdin: when the
test process closes the pipe (or dies, by any signal), the guard stops the server with
the signal it was given and waits for it. So a crashed or killed test run leaves no
server behind, as the provider of tests/support/idp.py does with its own stdin.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["ServerProcess", "free_port", "stop_child", "wait_until"]

# "$1" is the stop signal; the rest is the server's command line.
_GUARD = r"""
sig="$1"; shift
"$@" </dev/null &
pid=$!
trap 'kill -s "$sig" "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT HUP
read -r _ignored || true
kill -s "$sig" "$pid" 2>/dev/null
wait "$pid"
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_child(process: subprocess.Popen[str], readers: Sequence[threading.Thread] = (),
               timeout: float = 5.0) -> None:
    """Stop a bench server that exits when its stdin closes: close stdin, wait, then
    terminate, then kill; join the threads reading its output, close its pipes.
    Idempotent."""
    if process.stdin is not None and not process.stdin.closed:
        with contextlib.suppress(OSError):
            process.stdin.close()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for reader in readers:  # they end at EOF, now that the process is gone
        reader.join(2)
    for stream in (process.stdout, process.stderr):
        if stream is not None and not stream.closed:
            stream.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` until it is true; RuntimeError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready within {timeout:g} s")


class ServerProcess:
    """One server process under the guard; `stop()` is idempotent.

    Args:
        argv: the server's command line.
        log: file that gets the server's stdout and stderr.
        stop_signal: how the guard stops it ("TERM", "INT"...).
        env: its environment (default: ours).
    """

    def __init__(self, argv: Sequence[str], *, log: Path, stop_signal: str = "TERM",
                 env: dict[str, str] | None = None) -> None:
        self.log = log
        self._out = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            ["sh", "-c", _GUARD, "guard", stop_signal, *argv],
            stdin=subprocess.PIPE, stdout=self._out, stderr=subprocess.STDOUT,
            env=env if env is not None else dict(os.environ), start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        """The end of the server's log (for failure messages)."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        process = self.process
        if process.stdin is not None and not process.stdin.closed:
            with contextlib.suppress(OSError):
                process.stdin.close()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self._out.close()
