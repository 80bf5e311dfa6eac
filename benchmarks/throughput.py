"""Item 2: end-to-end throughput of authenticated requests to a loopback API.

For requests, httpx and httpx async: a client without auth, one with a header-only auth
and one with `OIDCAuth(source)` (token in memory) send sequential GETs, interleaved one
by one, to the same loopback API running in its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import httpx
import requests

from benchmarks._common import ROOT, Stat
from benchmarks.hook_cost import TOKEN, FloorHttpxAuth, FloorRequestsAuth, oauth_auth_source


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


ARMS = ("plain", "floor", "auth")


def run(pairs: int = 2000, seed: int = 8,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """{client: {"plain", "floor", "auth": Stat (seconds per request), "ratio", ...}}.

    Three clients per library, used in turn one request at a time in a random order each
    time: without auth ("plain", the goal's baseline), with a bare auth that only sets
    the header ("floor": what sending a Bearer header costs at all, on both ends), and
    with `OIDCAuth` ("auth"). Each request is timed on its own; the throughput of a
    sequential client is 1 / median latency. Per-request medians shrug off the bursts of
    a noisy machine that batch timings absorb.
    """
    from oauth_auth import OIDCAuth

    rng = random.Random(seed)
    auth = OIDCAuth(oauth_auth_source())
    floor_r, floor_h = FloorRequestsAuth(TOKEN), FloorHttpxAuth(TOKEN)
    results: dict[str, Any] = {}
    perf = time.perf_counter
    with api_server() as url, contextlib.ExitStack() as stack:
        data = url + "/data"
        sessions = {arm: stack.enter_context(requests.Session()) for arm in ARMS}
        sessions["floor"].auth = floor_r
        sessions["auth"].auth = auth
        hclients = {arm: stack.enter_context(httpx.Client(
            timeout=10, auth={"plain": None, "floor": floor_h, "auth": auth}[arm]))
            for arm in ARMS}

        def sync_rounds(calls: dict[str, Callable[[], Any]]) -> dict[str, list[float]]:
            lat: dict[str, list[float]] = {arm: [] for arm in ARMS}
            for _ in range(20):  # warm-up: connections open, code paths hot
                for call in calls.values():
                    call()
            order = list(ARMS)
            for _ in range(pairs):
                rng.shuffle(order)
                for arm in order:
                    start = perf()
                    response = calls[arm]()
                    lat[arm].append(perf() - start)
                    if response.status_code != 200:
                        raise RuntimeError(f"API answered {response.status_code}")
            return lat

        async def async_rounds() -> dict[str, list[float]]:
            lat: dict[str, list[float]] = {arm: [] for arm in ARMS}
            async with contextlib.AsyncExitStack() as astack:
                clients = {arm: await astack.enter_async_context(httpx.AsyncClient(
                    timeout=10, auth={"plain": None, "floor": floor_h, "auth": auth}[arm]))
                    for arm in ARMS}
                for _ in range(20):
                    for client in clients.values():
                        await client.get(data)
                order = list(ARMS)
                for _ in range(pairs):
                    rng.shuffle(order)
                    for arm in order:
                        start = perf()
                        response = await clients[arm].get(data)
                        lat[arm].append(perf() - start)
                        if response.status_code != 200:
                            raise RuntimeError(f"API answered {response.status_code}")
            return lat

        before = counts(url)
        results["requests"] = _summary(sync_rounds(
            {arm: partial(sessions[arm].get, data, timeout=10) for arm in ARMS}))
        results["httpx"] = _summary(sync_rounds(
            {arm: partial(hclients[arm].get, data) for arm in ARMS}))
        results["httpx async"] = _summary(asyncio.run(async_rounds()))
        after = counts(url)
    sent = after["bearer"] - before["bearer"]
    expected = 3 * 2 * (pairs + 20)  # three libraries, two authenticated arms
    if sent != expected:
        raise RuntimeError(f"the API saw {sent} Bearer requests, expected {expected}")
    for name, r in results.items():
        log(f"  [2] {name:12s} plain {1 / r['plain'].median:7.0f} req/s  header-only"
            f" {1 / r['floor'].median:7.0f} req/s  OIDCAuth {1 / r['auth'].median:7.0f} req/s"
            f"  ratio {r['ratio']:.3f} (vs header-only {r['ratio_vs_floor']:.3f})")
    results["_check"] = {"bearer_requests": sent}
    return results


def _summary(lat: dict[str, list[float]]) -> dict[str, Any]:
    stats = {arm: Stat.of(values) for arm, values in lat.items()}
    for stat in stats.values():
        stat.samples = []  # thousands of values: keep the summary only
    plain, floor, authed = stats["plain"], stats["floor"], stats["auth"]
    return {**stats, "ratio": plain.median / authed.median,
            "ratio_vs_floor": floor.median / authed.median,
            "added_us": (authed.median - plain.median) * 1e6,
            "header_us": (floor.median - plain.median) * 1e6}


if __name__ == "__main__":
    run(pairs=500)
