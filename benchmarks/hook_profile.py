"""Item 1, the requests goal: where the time of `OIDCAuth` on a requests request goes.

A call costs well under a microsecond, below what a sampling or tracing profiler can
resolve (cProfile's own overhead per call is larger than the whole hook), so this profile
is an ablation: the same loop as `hook_cost` (the auth applied to a prepared request, then
its response hooks dispatched with a 200 response and the keyword arguments
`Session.send` passes), built up one step at a time from the floor to `OIDCAuth` as
shipped. Each step's cost is its median minus the previous step's, over interleaved runs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import requests
from requests.hooks import dispatch_hook

from benchmarks._common import Stat
from benchmarks.hook_cost import SEND_KWARGS, TOKEN, URL, oauth_auth_source


def _noop_hook(response: Any, **kwargs: Any) -> Any:
    return response


def steps() -> list[tuple[str, Callable[[requests.PreparedRequest], Any]]]:
    """(what this step adds, the auth callable up to and including it), cumulative."""
    from oauth_auth import OIDCAuth

    source = oauth_auth_source()
    token = source.token
    auth = OIDCAuth(source)
    value = f"Bearer {TOKEN}"

    def floor(r: requests.PreparedRequest) -> None:
        r.headers["Authorization"] = value

    def lookup(r: requests.PreparedRequest) -> None:
        token()
        r.headers["Authorization"] = value

    def header(r: requests.PreparedRequest) -> None:
        r.headers["Authorization"] = f"Bearer {token()}"

    def registered(r: requests.PreparedRequest) -> None:
        r.headers["Authorization"] = f"Bearer {token()}"
        r.hooks["response"].append(_noop_hook)
        r.hooks["response"].clear()  # registered, but dispatch finds nothing: isolates the append

    def dispatched(r: requests.PreparedRequest) -> None:
        r.headers["Authorization"] = f"Bearer {token()}"
        r.hooks["response"].append(_noop_hook)

    return [
        ("floor: a precomputed header, no hook", floor),
        ("+ the token lookup (memory tier: a tuple read and a clock call)", lookup),
        ("+ the header string built from that token", header),
        ("+ one response hook appended to the request", registered),
        ("+ requests dispatching that hook (a no-op) with its keyword arguments", dispatched),
        ("= OIDCAuth as shipped (its hook: one status check)", auth),
    ]


def _time(auth: Callable[[requests.PreparedRequest], Any], calls: int) -> float:
    req = requests.Request("GET", URL).prepare()
    resp = requests.Response()
    resp.status_code = 200
    resp.request = req
    hooks = req.hooks
    clear = hooks["response"].clear
    kwargs = SEND_KWARGS
    perf = time.perf_counter
    start = perf()
    for _ in range(calls):
        auth(req)
        dispatch_hook("response", hooks, resp, **kwargs)
        clear()
    return (perf() - start) / calls


def run(runs: int = 20, calls: int = 20_000, seed: int = 9,
        log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """[{"step", "stat" (seconds per call), "delta" (seconds over the previous step)}]."""
    rng = random.Random(seed)
    named = steps()
    for _, auth in named:
        _time(auth, 2000)  # warm-up
    samples: dict[str, list[float]] = {name: [] for name, _ in named}
    for _ in range(runs):
        order = list(named)
        rng.shuffle(order)
        for name, auth in order:
            samples[name].append(_time(auth, calls))
    out: list[dict[str, Any]] = []
    previous = 0.0
    for name, _ in named:
        stat = Stat.of(samples[name])
        out.append({"step": name, "stat": stat, "delta": stat.median - previous})
        log(f"  [1] profile {name:75s} {stat.median * 1e6:6.3f} µs"
            f" ({(stat.median - previous) * 1e6:+.3f})")
        previous = stat.median
    return out


if __name__ == "__main__":
    run(runs=5, calls=5000)
