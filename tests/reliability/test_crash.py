"""Crash safety (issues 6 and 9): kill -9 the process holding the refresh lock, at a random
point of a refresh with rotation on, over and over, and count how often the session lives.

Each trial: three processes share one stored session (FileSecrets, the cross-process
lock, the real provider rotating refresh tokens); its access token has expired, so the
first process to take the lock refreshes while the other two wait. That holder is killed
with SIGKILL at a uniformly random moment of its refresh. Then:

- the two waiters must finish (the OS released the lock; a stale lock file is no
  obstacle), with a token or, when the session died, a typed error;
- a fresh token source (a new process would do the same) must still get a token from the
  stored session, refreshing it, unless the kill fell in the unavoidable window: after
  the refresh request left and before the new refresh token was stored. There the
  provider may already have rotated the token and nobody else will ever see the new one.

A loss outside that window is a bug and fails the test. Each secrets call of the children
takes `SLOW_IO` seconds (a Secret Service under load does) and the provider holds the
refresh for `PROVIDER_DELAY_MS` before acting on it, which spreads the kill points over
every step. OAUTH_AUTH_KILL_TRIALS sets the number of trials (default 30), within a time
budget of `BUDGET` seconds.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from oauth_auth import OAuthAuthError, OAuthTokenSource, OIDCParams
from tests.reliability.conftest import Figures
from tests.support.filesecrets import FileSecrets
from tests.support.idp import IdP, obtain_tokens

pytestmark = pytest.mark.idp

ROOT = Path(__file__).resolve().parents[2]
TRIALS = int(os.environ.get("OAUTH_AUTH_KILL_TRIALS", "30"))
BUDGET = float(os.environ.get("OAUTH_AUTH_KILL_BUDGET", "60"))
WAITERS = 2
SLOW_IO = 0.05
PROVIDER_DELAY_MS = 150
#: The kill lands uniformly in [0, KILL_WINDOW] s after the holder took the lock; the
#: holder's whole refresh takes about 2*SLOW_IO + discovery + delay + 2*SLOW_IO.
KILL_WINDOW = 0.47
KEY = "CRASH_SESSION"

PHASES = {
    "START": "before the request",
    "LOCKED": "before the request",
    "READ AT": "before the request",
    "READ RT": "before the request",
    "SENT": "request sent, no answer yet",
    "ANSWERED": "answered, new refresh token not yet stored",
    "WROTE RT": "after the new refresh token was stored",
    "WROTE AT": "after the new refresh token was stored",
    "TOKEN": "finished before the kill",
}
UNAVOIDABLE = {"request sent, no answer yet", "answered, new refresh token not yet stored"}


class Child:
    """One child process and the lines it printed, with the time each one arrived."""

    def __init__(self, cfg: dict[str, Any], stderr_path: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self._stderr = open(stderr_path, "wb")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.crash_child", json.dumps(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, cwd=ROOT,
            env=env,
        )
        self.lines: list[tuple[float, str]] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            with self.changed:
                self.lines.append((time.monotonic(), raw.decode("utf-8", "replace").rstrip()))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def first(self, prefix: str) -> float | None:
        return next((t for t, line in self.lines if line.startswith(prefix)), None)

    def wait_for(self, prefix: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.first(prefix) is None:
                left = deadline - time.monotonic()
                if left <= 0 or (not self.reader.is_alive() and self.first(prefix) is None):
                    return self.first(prefix) is not None
                self.changed.wait(min(left, 0.05))
        return True

    def markers(self) -> list[str]:
        return [line for _, line in self.lines]

    def result(self) -> str:
        return next((line for line in reversed(self.markers())
                     if line.startswith(("TOKEN", "ERROR"))), "")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"g")
        self.proc.stdin.flush()

    def finish(self, timeout: float) -> int:
        """Wait for the exit; returns the exit code (-9 when killed)."""
        try:
            if self.proc.stdin is not None and not self.proc.stdin.closed:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()
            code = self.proc.wait(timeout)
        finally:
            self.reader.join(5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self._stderr.close()
        return code


@dataclass
class Trial:
    phase: str
    last_marker: str
    offset_ms: float
    survived: bool
    waiters: list[str]
    waiter_latency_ms: float


@dataclass
class Bench:
    idp: IdP
    tmp: Path
    store: FileSecrets = field(init=False)
    seeds: int = 0

    def __post_init__(self) -> None:
        self.store = FileSecrets(self.tmp / "store")

    def ensure_session(self) -> None:
        if not self.store.get_secret(KEY):
            tokens = obtain_tokens(self.idp)
            self.store.set_secret(KEY, tokens["refresh_token"])
            self.seeds += 1
        self.store.delete_secret(KEY + "_AT")  # expired: the next caller must refresh

    def fresh_source_gets_a_token(self) -> bool:
        """What a new process would do: no shared access token, refresh from the store."""
        self.store.delete_secret(KEY + "_AT")
        source = OAuthTokenSource(OIDCParams(self.idp.issuer, self.idp.client_id),
                                  key_provider=lambda: KEY, secrets_provider=self.store,
                                  lock_dir=self.tmp / "locks")
        try:
            token = source.token()
        except OAuthAuthError:
            return False
        finally:
            source.close()
        response = httpx.post(self.idp.introspection_endpoint, data={"token": token},
                              auth=(self.idp.api_client_id, self.idp.api_client_secret),
                              timeout=10)
        return bool(response.json().get("active"))


@dataclass
class Batch:
    """The children of one trial, started ahead of time (they wait for a byte on stdin)."""

    children: list[Child]

    def abort(self) -> None:
        for child in self.children:
            if child.proc.poll() is None:
                child.proc.kill()
            child.finish(10)


def spawn(bench: Bench, index: int) -> Batch:
    cfg = {"issuer": bench.idp.issuer, "client_id": bench.idp.client_id, "key": KEY,
           "store": str(bench.tmp / "store"), "lock_dir": str(bench.tmp / "locks"),
           "slow_io": SLOW_IO}
    return Batch([Child(cfg, bench.tmp / f"child-{index}-{i}.err")
                  for i in range(1 + WAITERS)])


def run_trial(bench: Bench, batch: Batch, rng: random.Random,
              spawn_next: Callable[[], Batch | None]) -> tuple[Trial, Batch | None]:
    """One trial; the next trial's children are started once the kill is done."""
    bench.ensure_session()
    bench.idp.clear_faults()
    bench.idp.inject_fault("/token", delay_ms=PROVIDER_DELAY_MS, count=1)
    children = batch.children
    following: Batch | None = None
    try:
        for child in children:
            assert child.wait_for("READY", 20), child.markers()
        for child in children:
            child.go()
        deadline = time.monotonic() + 10
        holder = None
        while holder is None and time.monotonic() < deadline:
            holder = next((c for c in children if c.first("LOCKED") is not None), None)
            time.sleep(0.001)
        assert holder is not None, [c.markers() for c in children]
        locked_at = holder.first("LOCKED")
        assert locked_at is not None
        offset = rng.uniform(0, KILL_WINDOW)
        time.sleep(max(0.0, locked_at + offset - time.monotonic()))
        killed_at = time.monotonic()
        holder.proc.send_signal(signal.SIGKILL)
        following = spawn_next()
        holder.finish(10)
        last = [m for m in holder.markers() if not m.startswith("READY")]
        last_marker = last[-1].split(" ", 1)[0] if last else "START"
        if last and last[-1].startswith(("READ", "WROTE")):
            last_marker = last[-1]
        waiters = [c for c in children if c is not holder]
        finished_at = []
        for child in waiters:
            child.finish(40)
            finished_at.append(child.lines[-1][0] if child.lines else time.monotonic())
        outcomes = [c.result() for c in waiters]
    except BaseException:
        if following is not None:
            following.abort()
        raise
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.proc.kill()
                child.finish(10)
    survived = bench.fresh_source_gets_a_token()
    if not survived:
        bench.store.delete_secret(KEY)
    trial = Trial(
        phase=PHASES.get(last_marker, last_marker),
        last_marker=last_marker,
        offset_ms=(killed_at - locked_at) * 1000,
        survived=survived,
        waiters=[o.split(" ", 2)[0] + (" " + o.split(" ", 2)[1] if o.startswith("ERROR")
                                       else "") for o in outcomes],
        waiter_latency_ms=max(finished_at) * 1000 - killed_at * 1000,
    )
    return trial, following


def test_kill_9_of_the_lock_holder_mid_refresh(real_idp: IdP, tmp_path: Path,
                                               figures: Figures) -> None:
    bench = Bench(real_idp, tmp_path)
    rng = random.Random(int(os.environ.get("OAUTH_AUTH_KILL_SEED", "6")))
    started = time.monotonic()
    trials: list[Trial] = []
    batch: Batch | None = spawn(bench, 0)
    try:
        while batch is not None:
            index = len(trials)

            def spawn_next(index: int = index) -> Batch | None:
                over = time.monotonic() - started > BUDGET
                return None if index + 1 >= TRIALS or over else spawn(bench, index + 1)

            trial, batch = run_trial(bench, batch, rng, spawn_next)
            trials.append(trial)
    finally:
        if batch is not None:
            batch.abort()

    by_phase: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for t in trials:
        by_phase[t.phase]["survived" if t.survived else "lost"] += 1
    report = "\n".join(
        f"  {phase}: {c['survived']} survived, {c['lost']} lost (kills at"
        f" {', '.join(f'{t.offset_ms:.0f}' for t in trials if t.phase == phase)} ms)"
        for phase, c in by_phase.items()
    )
    print(f"\nkill -9 trials: {len(trials)} in {time.monotonic() - started:.1f} s,"
          f" {bench.seeds} fresh logins needed\n{report}")

    # 1. the waiters always finished, with a token or (session lost) a typed error
    for t in trials:
        assert len(t.waiters) == WAITERS
        for outcome in t.waiters:
            assert outcome == "TOKEN" or (
                not t.survived and outcome in ("ERROR InvalidGrantError",
                                               "ERROR LoginRequiredError")
            ), (t, outcome)
    # 2. no loss outside the unavoidable window
    bad = [t for t in trials if not t.survived and t.phase not in UNAVOIDABLE]
    assert not bad, f"session lost outside the unavoidable window: {bad}"
    # 3. the trials really covered the refresh: kills before and inside the window (after
    # it is usual too, but its ~60 ms slice may be missed under load: reported, not required)
    phases = {t.phase for t in trials}
    assert "before the request" in phases
    assert phases & UNAVOIDABLE

    survived = sum(t.survived for t in trials)
    latency = max(t.waiter_latency_ms for t in trials)
    figures.add(
        "kill -9 of the lock holder mid-refresh (rotation on)",
        f"{survived}/{len(trials)} sessions survived; every loss inside the unavoidable"
        " window; waiters always finished",
        cases=len(trials),
        by_phase={p: dict(c) for p, c in by_phase.items()},
        max_waiter_finish_after_kill_ms=round(latency),
    )
