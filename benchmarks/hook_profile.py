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
from collections.abc import Callable
from typing import Any

import requests

from benchmarks._common import Stat
from benchmarks.hook_cost import TOKEN, oauth_auth_source, time_requests


def _noop_hook(
    response: Any, timeout: Any = None, verify: Any = True, proxies: Any = None,
    stream: bool = False, cert: Any = None, **more: Any,
) -> Any:
    """Shaped like OIDCAuth's shared hook (named parameters), minus its status check."""
    return response


def steps() -> list[tuple[str, Callable[[requests.PreparedRequest], Any]]]:
    """(what this step adds, the auth callable up to and including it), cumulative; each
    step does what `OIDCAuth.__call__` does, the way it does it, through the source's
    public surface (`fast_path`, `clock`: see `OAuthTokenSource`)."""
    from oauth_auth import OIDCAuth

    source = oauth_auth_source()
    auth = OIDCAuth(source)
    value = f"Bearer {TOKEN}"

    def floor(r: requests.PreparedRequest) -> None:
        r.headers["Authorization"] = value

    def scheme(r: requests.PreparedRequest) -> None:
        url = r.url
        if url is not None and url[4] == ":" and url.startswith("http:"):
            raise AssertionError("the bench's URL is https")
        r.headers["Authorization"] = value

    def lookup(r: requests.PreparedRequest) -> None:
        url = r.url
        if url is not None and url[4] == ":" and url.startswith("http:"):
            raise AssertionError("the bench's URL is https")
        access, until = source.fast_path  # what OIDCAuth reads, inline as there
        r.headers["Authorization"] = value if source.clock() < until else access

    cached: list[tuple[str | None, str]] = [(None, "")]

    def header(r: requests.PreparedRequest) -> None:
        url = r.url
        if url is not None and url[4] == ":" and url.startswith("http:"):
            raise AssertionError("the bench's URL is https")
        access, until = source.fast_path
        if source.clock() >= until:
            access = ""
        held = cached[0]
        if held[0] is not access:  # built once per token, as OIDCAuth does
            held = cached[0] = (access, f"Bearer {access}")
        r.headers["Authorization"] = held[1]

    # Each step repeats the one above inline: a call into it would add a frame of its own.
    def registered(r: requests.PreparedRequest) -> None:
        url = r.url
        if url is not None and url[4] == ":" and url.startswith("http:"):
            raise AssertionError("the bench's URL is https")
        access, until = source.fast_path
        if source.clock() >= until:
            access = ""
        held = cached[0]
        if held[0] is not access:
            held = cached[0] = (access, f"Bearer {access}")
        r.headers["Authorization"] = held[1]
        r.hooks["response"].append(_noop_hook)
        r.hooks["response"].clear()  # registered, but dispatch finds nothing: isolates the append

    def dispatched(r: requests.PreparedRequest) -> None:
        url = r.url
        if url is not None and url[4] == ":" and url.startswith("http:"):
            raise AssertionError("the bench's URL is https")
        access, until = source.fast_path
        if source.clock() >= until:
            access = ""
        held = cached[0]
        if held[0] is not access:
            held = cached[0] = (access, f"Bearer {access}")
        r.headers["Authorization"] = held[1]
        r.hooks["response"].append(_noop_hook)

    return [
        ("floor: a precomputed header, no hook", floor),
        ("+ the plain-http check (the URL's scheme; https here)", scheme),
        ("+ the token lookup (memory tier: a tuple read and a clock call)", lookup),
        ("+ the header for that token (built once per token, then compared by identity)",
         header),
        ("+ one response hook appended to the request", registered),
        ("+ requests dispatching that hook (a no-op) with its keyword arguments", dispatched),
        ("= OIDCAuth as shipped (a method call; its hook checks the status)", auth),
    ]


def run(runs: int = 20, calls: int = 20_000, seed: int = 9,
        log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """[{"step", "stat" (seconds per call), "delta" (seconds over the previous step)}]."""
    rng = random.Random(seed)
    named = steps()
    for _, auth in named:
        time_requests(auth, 2000)  # warm-up
    samples: dict[str, list[float]] = {name: [] for name, _ in named}
    for _ in range(runs):
        order = list(named)
        rng.shuffle(order)
        for name, auth in order:
            samples[name].append(time_requests(auth, calls))
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
