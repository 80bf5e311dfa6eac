"""Item 2: end-to-end throughput of authenticated requests to a loopback API.

For requests, httpx and httpx async, one client without auth and one with
`OIDCAuth(source)` (token in memory) send batches of sequential GETs to the same
loopback API (a separate process). Batches alternate in a random order every round; the
ratio is the median over rounds of (authenticated / unauthenticated) requests per second,
so slow drifts of the machine cancel out.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import requests

from benchmarks._common import ROOT, Stat
from benchmarks.hook_cost import oauth_auth_source


@contextlib.contextmanager
def api_server() -> Iterator[str]:
    """Start benchmarks._api_server in its own process; yields its URL; stops it after."""
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks._api_server"], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError("the benchmark API did not start")
        yield url
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def counts(url: str) -> dict[str, int]:
    result: dict[str, int] = httpx.get(url + "/__counts", timeout=5).json()
    return result


def run(pairs: int = 2000, seed: int = 8,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """{client: {"plain": Stat, "auth": Stat (seconds per request), "ratio": float}}.

    Requests alternate one by one (plain, auth or auth, plain, at random), each timed on
    its own; the throughput of a sequential client is 1 / median latency, and the ratio
    is authenticated / unauthenticated throughput. Per-request medians shrug off the
    bursts of a noisy machine that batch timings absorb.
    """
    from oauth_auth import OIDCAuth

    rng = random.Random(seed)
    auth = OIDCAuth(oauth_auth_source())
    results: dict[str, Any] = {}
    perf = time.perf_counter
    with api_server() as url:
        data = url + "/data"
        plain_s, auth_s = requests.Session(), requests.Session()
        auth_s.auth = auth
        plain_h, auth_h = httpx.Client(timeout=10), httpx.Client(timeout=10, auth=auth)

        def sync_pairs(plain_call: Callable[[], Any], auth_call: Callable[[], Any]) -> Any:
            lat: dict[str, list[float]] = {"plain": [], "auth": []}
            calls = {"plain": plain_call, "auth": auth_call}
            for _ in range(20):  # warm-up: connections open, code paths hot
                plain_call()
                auth_call()
            for _ in range(pairs):
                order = ("plain", "auth") if rng.random() < 0.5 else ("auth", "plain")
                for kind in order:
                    start = perf()
                    response = calls[kind]()
                    lat[kind].append(perf() - start)
                    if response.status_code != 200:
                        raise RuntimeError(f"API answered {response.status_code}")
            return lat

        async def async_pairs() -> Any:
            lat: dict[str, list[float]] = {"plain": [], "auth": []}
            async with httpx.AsyncClient(timeout=10) as plain_a, \
                    httpx.AsyncClient(timeout=10, auth=auth) as auth_a:
                clients = {"plain": plain_a, "auth": auth_a}
                for _ in range(20):
                    await plain_a.get(data)
                    await auth_a.get(data)
                for _ in range(pairs):
                    order = ("plain", "auth") if rng.random() < 0.5 else ("auth", "plain")
                    for kind in order:
                        start = perf()
                        response = await clients[kind].get(data)
                        lat[kind].append(perf() - start)
                        if response.status_code != 200:
                            raise RuntimeError(f"API answered {response.status_code}")
            return lat

        before = counts(url)
        try:
            results["requests"] = _summary(sync_pairs(
                lambda: plain_s.get(data, timeout=10), lambda: auth_s.get(data, timeout=10)))
            results["httpx"] = _summary(sync_pairs(lambda: plain_h.get(data),
                                                   lambda: auth_h.get(data)))
            results["httpx async"] = _summary(asyncio.run(async_pairs()))
        finally:
            plain_s.close()
            auth_s.close()
            plain_h.close()
            auth_h.close()
        after = counts(url)
    sent = after["bearer"] - before["bearer"]
    expected = 3 * (pairs + 20)
    if sent != expected:
        raise RuntimeError(f"the API saw {sent} Bearer requests, expected {expected}")
    for name, r in results.items():
        log(f"  [2] {name:12s} plain {1 / r['plain'].median:7.0f} req/s  auth"
            f" {1 / r['auth'].median:7.0f} req/s  ratio {r['ratio']:.3f}")
    results["_check"] = {"bearer_requests": sent}
    return results


def _summary(lat: dict[str, list[float]]) -> dict[str, Any]:
    plain, authed = Stat.of(lat["plain"]), Stat.of(lat["auth"])
    plain.samples, authed.samples = [], []  # thousands of values: keep the summary only
    return {"plain": plain, "auth": authed, "ratio": plain.median / authed.median,
            "added_us": (authed.median - plain.median) * 1e6}


if __name__ == "__main__":
    run(pairs=500)
