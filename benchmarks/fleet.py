"""Item 7 (issue 16): the fleet stores, `RedisSecrets` and `PostgresSecrets`, measured.

    python -m benchmarks --only 7     # with the other items' report files
    python -m benchmarks.fleet        # this item alone (add --quick for fewer repetitions)

Three measurements, each against its baseline in the same run, interleaved, so that the
figures that matter are paired ratios (the machine is shared; absolute times drift):

- **the herd**: a rotating refresh token and an expired access token; processes released
  together at expiry. The file store (the tests' `FileSecrets` plus the OS file lock) can
  only serve one host: 1 host x 16 processes. Redis and PostgreSQL: 4 hosts x 4 processes,
  each host a process group with its own HOME, runtime and lock directories
  (tests/support/fleet.py). Refreshes, invalid_grant, tokens, and the wall time from the
  start signal to the last exit; ratio = fleet store / file store, per repetition.
- **a tier-2 hit per process start**: a new interpreter whose first `token()` finds a
  valid shared access token in the store. Timed inside the child (making the store:
  importing its driver and cryptography; then `token()`: connect, read, decrypt) and as the
  whole process (start to exit). Ratio to the file store, per round.
- **the memory hit per request**: `token()` on a source whose token is in memory; the
  store is never touched, so a source on Redis or PostgreSQL costs what one on
  `MemorySecrets` does. Ratio per run (1.00 = unchanged).

Everything runs on 127.0.0.1: the bench's oidc-provider, a redis-server and a PostgreSQL
of its own in temporary directories (tests/support/redis_server.py, postgres_server.py),
stopped at the end.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

KINDS = ("file", "redis", "postgres")
KEY = "OAUTH_AUTH_BENCH_FLEET"
HOSTS, PER_HOST = 4, 4


# --------------------------------------------------------------------- set-up


@contextlib.contextmanager
def servers() -> Iterator[dict[str, str]]:
    """A redis-server and a PostgreSQL of this run's own: {"redis": url, "postgres": dsn}."""
    from tests.support.postgres_server import start_postgres
    from tests.support.redis_server import start_redis

    with start_redis() as redis, start_postgres() as pg:
        yield {"redis": redis.url, "postgres": pg.dsn}


class Stores:
    """The three stores of one measurement, each in a namespace or table of its own."""

    def __init__(self, tmp: Path, urls: dict[str, str], lock_lease: float = 30) -> None:
        from oauth_auth._sealing import generate_key

        name = f"bench_{uuid.uuid4().hex[:10]}"
        self.key = generate_key()
        self.urls = {
            "file": f"file:{tmp / name}",
            "redis": f"{urls['redis']}?namespace={name}&lock_lease={lock_lease:g}",
            "postgres": f"{urls['postgres']}?table={name}&lock_lease={lock_lease:g}",
        }
        self._made: dict[str, Any] = {}

    def env(self) -> dict[str, str]:
        """The environment a process needs to open them (the key never goes in argv)."""
        from oauth_auth._store_url import KEY_ENV

        return {KEY_ENV: self.key}

    def store(self, kind: str) -> Any:
        if kind not in self._made:
            if kind == "file":
                from tests.support.filesecrets import FileSecrets

                self._made[kind] = FileSecrets(self.urls[kind][5:])
            else:
                from oauth_auth._store_url import store_from_url

                self._made[kind] = store_from_url(self.urls[kind], self.env())
        return self._made[kind]

    def seed(self, kind: str, refresh_token: str, access_token: str, expiry: float) -> None:
        from oauth_auth._token import Token, encode_at_entry

        store = self.store(kind)
        store.set_secret(KEY, refresh_token)
        store.set_secret(KEY + "_AT", encode_at_entry(Token(access_token, expiry)) or "")

    def close(self) -> None:
        for store in self._made.values():
            close = getattr(store, "close", None)
            if callable(close):
                close()


def _stat(samples: list[float]) -> Any:
    from benchmarks._common import Stat

    return Stat.of(samples)


def _child_env(tmp: Path, extra: dict[str, str]) -> dict[str, str]:
    from benchmarks._common import ROOT, child_env

    return child_env(tmp / "pycache", {**extra, "PYTHONPATH": str(ROOT)})


# --------------------------------------------------------------------- the herd


def herd_once(idp: Any, kind: str, urls: dict[str, str], tmp: Path) -> dict[str, Any]:
    """One herd at expiry on `kind`; the provider's counts and the wall time."""
    from benchmarks._common import introspect_active, login
    from tests.support.fleet import Fleet
    from tests.support.idp import refresh_count

    stores = Stores(tmp, urls)
    try:
        tokens = login(idp)
        stores.seed(kind, tokens["refresh_token"], tokens["access_token"], 1.0)  # expired
        idp.reset_counts()
        hosts, per_host = (1, HOSTS * PER_HOST) if kind == "file" else (HOSTS, PER_HOST)
        base = {"issuer": idp.issuer, "client_id": idp.client_id, "key": KEY,
                "store": stores.urls[kind], "lock_timeout": 90}
        # Only what differs from the parent's environment: each host sets its own HOME.
        env = {**stores.env(), "PYTHONPYCACHEPREFIX": str(tmp / "pycache"),
               "PYTHONDONTWRITEBYTECODE": ""}
        with Fleet(tmp / f"herd-{uuid.uuid4().hex[:8]}", base, env) as fleet:
            procs = fleet.start(hosts, per_host)
            go = fleet.go()
            results = fleet.finish()
            wall = max(p.done_at for p in procs) - go
        counts = idp.counts()
        stored = stores.store(kind).get_secret(KEY)
        served = [r.split()[1] for r in results if r.startswith("TOKEN ")]
        return {
            "store": kind, "hosts": hosts, "processes": hosts * per_host,
            "refresh_ok": refresh_count(counts, "ok"),
            "invalid_grant": refresh_count(counts, "invalid_grant"),
            "callers_ok": len(served), "distinct_tokens": len(set(served)),
            "session_alive": bool(stored) and introspect_active(idp, stored),
            "wall_s": wall,
        }
    finally:
        stores.close()


def herd(idp: Any, urls: dict[str, str], tmp: Path, reps: int,
         log: Callable[[str], None]) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    ratios: dict[str, list[float]] = {"redis": [], "postgres": []}
    for rep in range(reps):
        walls = {}
        for kind in KINDS:  # interleaved: each repetition compares like with like
            r = herd_once(idp, kind, urls, tmp)
            runs.append(r)
            walls[kind] = r["wall_s"]
            log(f"  [7] herd {rep + 1}/{reps} {kind:8s} {r['hosts']}x"
                f"{r['processes'] // r['hosts']}  refresh ok {r['refresh_ok']}  invalid_grant"
                f" {r['invalid_grant']}  served {r['callers_ok']}/{r['processes']}  tokens"
                f" {r['distinct_tokens']}  alive {r['session_alive']}  {r['wall_s'] * 1e3:.0f} ms")
        for kind, paired in ratios.items():
            paired.append(walls[kind] / walls["file"])
    return {"runs": runs, "ratio_to_file": {k: _stat(v) for k, v in ratios.items()},
            "wall_s": {k: _stat([r["wall_s"] for r in runs if r["store"] == k])
                       for k in KINDS}}


# --------------------------------------------------------------------- tier 2 per start


def child(cfg: dict[str, Any]) -> None:
    """In a new interpreter: open the store, one `token()` (a tier-2 hit); print timings."""
    started = time.perf_counter()
    from oauth_auth import OAuthTokenSource, OIDCParams

    imported = time.perf_counter()
    store = str(cfg["store"])
    if store.startswith("file:"):
        from tests.support.filesecrets import FileSecrets

        secrets: Any = FileSecrets(store[5:])
    else:
        from oauth_auth._store_url import store_from_url

        secrets = store_from_url(store)
    opened = time.perf_counter()
    source = OAuthTokenSource(OIDCParams(cfg["issuer"], cfg["client_id"]),
                              key_provider=lambda: KEY, secrets_provider=secrets,
                              interactive=False)
    source.token()  # never printed
    done = time.perf_counter()
    print(json.dumps({"import_s": imported - started, "open_s": opened - imported,
                      "token_s": done - opened, "store_and_token_s": done - imported}))


def tier2(idp: Any, urls: dict[str, str], tmp: Path, rounds: int,
          log: Callable[[str], None]) -> dict[str, Any]:
    from benchmarks._common import ROOT, login

    stores = Stores(tmp, urls)
    try:
        tokens = login(idp)
        for kind in KINDS:
            stores.seed(kind, tokens["refresh_token"], tokens["access_token"],
                        time.time() + 3000)
        env = _child_env(tmp, stores.env())

        def once(kind: str) -> dict[str, float]:
            cfg = {"issuer": idp.issuer, "client_id": idp.client_id, "store": stores.urls[kind]}
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "benchmarks.fleet", "--child",
                                   json.dumps(cfg)], capture_output=True, text=True, env=env,
                                  cwd=ROOT, timeout=60, check=False)
            wall = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError(f"tier-2 child on {kind} failed: {done.stderr[-400:]}")
            timing: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
            timing["process_s"] = wall
            return timing

        for kind in KINDS:  # warm-up: bytecode cache, server caches
            once(kind)
        idp.reset_counts()
        samples: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}
        for _ in range(rounds):
            for kind in KINDS:
                samples[kind].append(once(kind))
        refreshes = int(sum(idp.counts().get("token", {}).get("refresh_token", {}).values()))
    finally:
        stores.close()
    out: dict[str, Any] = {"rounds": rounds, "refresh_requests": refreshes, "stats": {},
                           "ratio_to_file": {}}
    for kind in KINDS:
        out["stats"][kind] = {field: _stat([s[field] for s in samples[kind]])
                              for field in ("store_and_token_s", "process_s", "open_s",
                                            "token_s")}
    for kind in ("redis", "postgres"):
        pairs = list(zip(samples[kind], samples["file"], strict=True))
        out["ratio_to_file"][kind] = {
            field: _stat([a[field] / b[field] for a, b in pairs])
            for field in ("store_and_token_s", "process_s")}
        s = out["stats"][kind]
        log(f"  [7] tier-2 hit per start {kind:8s} store+token"
            f" {s['store_and_token_s'].median * 1e3:.1f} ms, process"
            f" {s['process_s'].median * 1e3:.0f} ms; x file: process"
            f" {out['ratio_to_file'][kind]['process_s'].median:.2f}")
    return out


# --------------------------------------------------------------------- memory hit


def memory_hit(idp: Any, urls: dict[str, str], tmp: Path, runs: int, calls: int,
               log: Callable[[str], None]) -> dict[str, Any]:
    from benchmarks._common import login
    from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCParams

    stores = Stores(tmp, urls)
    sources: dict[str, Any] = {}
    try:
        tokens = login(idp)
        baseline = MemorySecrets()
        for kind in ("memory", "redis", "postgres"):
            secrets = baseline if kind == "memory" else stores.store(kind)
            secrets.set_secret(KEY, tokens["refresh_token"])
            from oauth_auth._token import Token, encode_at_entry

            secrets.set_secret(KEY + "_AT", encode_at_entry(
                Token(tokens["access_token"], time.time() + 3000)) or "")
            sources[kind] = OAuthTokenSource(OIDCParams(idp.issuer, idp.client_id),
                                             key_provider=lambda: KEY, secrets_provider=secrets,
                                             interactive=False)
            sources[kind].token()  # tier 2 once; memory from now on
        per_call: dict[str, list[float]] = {k: [] for k in sources}
        for _ in range(runs):
            for kind, source in sources.items():
                call = source.token
                started = time.perf_counter()
                for _ in range(calls):
                    call()
                per_call[kind].append((time.perf_counter() - started) / calls)
    finally:
        for source in sources.values():
            source.close()
        stores.close()
    ratios = {k: _stat([a / b for a, b in zip(per_call[k], per_call["memory"], strict=True)])
              for k in ("redis", "postgres")}
    for kind in ("redis", "postgres"):
        log(f"  [7] memory hit {kind:8s} {statistics.median(per_call[kind]) * 1e9:.0f} ns/call"
            f" vs MemorySecrets {statistics.median(per_call['memory']) * 1e9:.0f} ns/call:"
            f" ratio {ratios[kind].median:.3f}")
    return {"runs": runs, "calls": calls,
            "per_call_s": {k: _stat(v) for k, v in per_call.items()},
            "ratio_to_memory": ratios}


# --------------------------------------------------------------------- entry points


def run(idp: Any, *, quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """All three measurements, with servers of this run's own."""
    with servers() as urls, tempfile.TemporaryDirectory(prefix="oauth-auth-fleet-") as t:
        tmp = Path(t)
        log(f"[7] fleet stores: herd {HOSTS}x{PER_HOST} (file store 1x{HOSTS * PER_HOST}),"
            " tier-2 hit per process start, memory hit per request")
        return {
            "herd": herd(idp, urls, tmp, reps=1 if quick else 3, log=log),
            "tier2": tier2(idp, urls, tmp, rounds=3 if quick else 10, log=log),
            "memory_hit": memory_hit(idp, urls, tmp, runs=5 if quick else 15,
                                     calls=5_000 if quick else 50_000, log=log),
        }


def markdown(fleet: dict[str, Any], heading: str = "#") -> list[str]:
    """The report's section for item 7."""
    h, t2, mh = fleet["herd"], fleet["tier2"], fleet["memory_hit"]
    lines = [f"{heading}# 7. Fleet stores: Redis and PostgreSQL", "",
             f"The herd at expiry, rotation on (file store: 1 host x {HOSTS * PER_HOST}"
             f" processes; fleet stores: {HOSTS} hosts x {PER_HOST}, each a process group with"
             " its own HOME, runtime and lock directories). Wall time from the start signal"
             " to the last exit.", "",
             "| store | hosts x processes | refresh ok | invalid_grant | served |"
             " distinct tokens | session alive | wall ms |", "|---|---|---|---|---|---|---|---|"]
    for r in h["runs"]:
        lines.append(f"| {r['store']} | {r['hosts']}x{r['processes'] // r['hosts']} |"
                     f" {r['refresh_ok']} | {r['invalid_grant']} |"
                     f" {r['callers_ok']}/{r['processes']} | {r['distinct_tokens']} |"
                     f" {'yes' if r['session_alive'] else '**no**'} | {r['wall_s'] * 1e3:.0f} |")
    lines += ["", "Herd wall time over the file store's, paired per repetition: "
              + "; ".join(f"{k} **{s.median:.2f}** (IQR {s.p25:.2f}-{s.p75:.2f})"
                          for k, s in h["ratio_to_file"].items()) + ".", "",
              f"A tier-2 hit per process start ({t2['rounds']} rounds, interleaved; a new"
              " interpreter whose first `token()` finds a valid shared access token;"
              f" refresh requests meanwhile: {t2['refresh_requests']}). Opening a fleet store"
              " imports its driver and cryptography; the first `token()` connects, reads and"
              " decrypts:", "",
              "| store | open the store ms | first token() ms | both ms (IQR) |"
              " whole process ms (IQR) | x file, process |", "|---|---|---|---|---|---|"]
    for kind, s in t2["stats"].items():
        ratio = t2["ratio_to_file"].get(kind, {}).get("process_s")
        lines.append(f"| {kind} | {s['open_s'].median * 1e3:.1f} |"
                     f" {s['token_s'].median * 1e3:.1f} |"
                     f" {s['store_and_token_s'].median * 1e3:.1f}"
                     f" ({s['store_and_token_s'].p25 * 1e3:.1f}-"
                     f"{s['store_and_token_s'].p75 * 1e3:.1f}) | {s['process_s'].median * 1e3:.0f}"
                     f" ({s['process_s'].p25 * 1e3:.0f}-{s['process_s'].p75 * 1e3:.0f}) |"
                     f" {f'{ratio.median:.2f}' if ratio else '1.00'} |")
    lines += ["", f"The memory hit per request ({mh['runs']} runs x {mh['calls']:,} `token()`"
              " calls, interleaved), over a source on `MemorySecrets`, paired per run: "
              + "; ".join(f"{k} **{s.median:.3f}** (IQR {s.p25:.3f}-{s.p75:.3f})"
                          for k, s in mh["ratio_to_memory"].items())
              + f" (MemorySecrets: {mh['per_call_s']['memory'].median * 1e9:.0f} ns per call).",
              ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--child"]:
        child(json.loads(args[1]))
        return 0
    from benchmarks import __main__ as bench

    return bench.main(["--only", "7", *args])


if __name__ == "__main__":
    sys.exit(main())
