"""Run the benchmarks of issue 8 (items 1-6) and of issue 16 (item 7, the fleet stores).

    python -m benchmarks            # everything (~4-6 minutes on 2 cores)
    python -m benchmarks --quick    # fewer repetitions, to try the harness
    python -m benchmarks --only 1,3 # some of them (--only 7: the fleet stores alone)

A full run writes benchmarks/results/latest.{md,png,json} and rewrites the README section
between `<!-- bench:start -->` and `<!-- bench:end -->`; a --quick or --only run writes
results/partial.{md,png,json} and leaves the README alone. Everything it starts (the local OpenID
provider, the loopback API, a private Secret Service, child processes) is stopped at the
end; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks._common import RESULTS, ROOT, Stat, machine, versions

PEERS = ("authlib", "httpx-auth", "requests-oauth2client", "google-auth", "msal", "requests",
         "httpx", "keyring")


def log(message: str) -> None:
    print(message, flush=True)


def commit() -> str:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                             check=False)
        return out.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "oauth_auth")
    return head + (" + uncommitted changes in oauth_auth/" if dirty else "")


def jsonable(value: Any) -> Any:
    if isinstance(value, Stat):
        return value.as_dict()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


@contextlib.contextmanager
def secret_service() -> Iterator[Any]:
    """A private gnome-keyring Secret Service; this process's keyring points at it."""
    from tests.support.secret_service import using_secret_service

    root = Path(tempfile.mkdtemp(prefix="oauth-auth-bench-ss-"))
    try:
        with using_secret_service(root) as bench:
            yield bench
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--only", default="1,2,3,4,5,6,7", help="comma-separated items")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    args = parser.parse_args(argv)
    only = {int(x) for x in args.only.split(",") if x.strip()}
    quick = args.quick
    # Peers' deprecation notices (authlib's httpx module) are not results. authlib turns
    # its own category to "always" when imported, so import it first, then silence it.
    import authlib.deprecate

    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)

    started = time.perf_counter()
    res: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "versions": versions(PEERS), "commit": commit(),
    }
    m = res["machine"]
    log(f"oauth-auth benchmarks on {m['cpu']}, {m['cores']} cores, {m['python']}"
        f" (commit {res['commit']})")

    if 1 in only:
        from benchmarks import hook_cost

        runs, calls = (5, 5_000) if quick else (20, 20_000)
        log(f"[1] auth hook cost: {runs} runs x {calls:,} calls, interleaved")
        hook = hook_cost.run(runs=runs, calls=calls, log=log)
        res["hook"], res["hook_paired"] = hook["stats"], hook["paired"]
        res["hook_params"] = {"runs": runs, "calls": calls}
        from benchmarks import hook_profile

        log("[1] profile of the requests hook (ablation)")
        res["hook_profile"] = hook_profile.run(runs=runs, calls=calls, log=log)
    if 2 in only:
        from benchmarks import throughput

        pairs = 300 if quick else 2000
        log(f"[2] throughput: {pairs:,} requests per client and arm"
            " (no auth, header only, OIDCAuth)")
        res["throughput"] = throughput.run(pairs=pairs, log=log)
        res["throughput_params"] = {"pairs": pairs}
    if only & {3, 4, 5, 6, 7}:
        from benchmarks._common import start_provider

        with contextlib.ExitStack() as stack:
            idp = None
            if only & {3, 4, 6, 7}:
                idp = stack.enter_context(start_provider())
                log(f"local OpenID provider (oidc-provider {idp.oidc_provider_version}) at"
                    f" {idp.issuer}")
            if 3 in only:
                from benchmarks import herd

                log("[3] herd: 64 threads, 1,000 tasks at expiry")
                res["herd"] = herd.run(idp, reps=1 if quick else 3, log=log)
            if 6 in only:
                from benchmarks import memory

                log("[6] memory")
                res["memory"] = memory.run(idp, reps=1 if quick else 3, log=log)
            ss = None
            if only & {4, 5}:
                ss = stack.enter_context(secret_service())
            if 4 in only:
                from benchmarks import processes

                log("[4] 16 processes at expiry")
                res["processes"] = processes.run(idp, keyring_env=ss.env if ss else None,
                                                 reps=1 if quick else 2, log=log)
            if 5 in only:
                from benchmarks import startup

                log("[5] start-up of `oauth-auth token`")
                res["startup"] = startup.run(ss.env, rounds=3 if quick else 10, log=log)
            if 7 in only:
                from benchmarks import fleet

                res["fleet"] = fleet.run(idp, quick=quick, log=log)
    res["elapsed_s"] = time.perf_counter() - started

    from benchmarks import report

    full = not quick and only == {1, 2, 3, 4, 5, 6, 7}
    stem = "latest" if full else "partial"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(jsonable(res), indent=1) + "\n")
    (RESULTS / f"{stem}.md").write_text(report.markdown(res) + "\n")
    report.chart(res, RESULTS / f"{stem}.png")
    log(f"wrote {RESULTS.relative_to(ROOT)}/{stem}.md, {stem}.png, {stem}.json")
    if full and not args.no_readme:
        if report.update_readme(res):
            log("updated the Benchmarks section of README.md")
        else:
            log("no README.md: section not written")
    log("goals:")
    for g in report.goals(res):
        log(f"  {'met    ' if g['met'] else 'NOT MET'}  {g['goal']}: {g['measured']:.3f}"
            f" (target {g['target']})")
    log(f"done in {res['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
