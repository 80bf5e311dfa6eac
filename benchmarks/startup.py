"""Item 5: start-up of `oauth-auth token` on a cache hit, next to its floors.

A private gnome-keyring Secret Service (tests/support/secret_service.py) holds the
`<key>_AT` entry that `oauth-auth token --issuer URL --client-id ID` reads (key
`derive_secret_key("OAUTH_AUTH_", client_id, issuer)`), so the command prints the cached
access token without any network call. Next to it: the floor for the same backend, a
`python -c` that imports keyring and reads (and prints) that one entry, and
`python -c pass`. Timed with hyperfine when it is installed (10 rounds of 3 runs, the
commands in a new order each round, times pooled: on a noisy machine, long blocks of one
command would catch different loads), else with an interleaved `subprocess.run` loop.
The goal is at most 0.5x the keyring floor, paired within each round (issue 14): the
command's cache-hit path (`oauth_auth/_cli_fast.py`) reads the Secret Service without
keyring. Before the timing, one full run records keyring's backend choice, as a user's
first `oauth-auth token` does. `own_profile` says where the command's own time goes.
"""

from __future__ import annotations

import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._common import Stat, child_env

ISSUER = "http://127.0.0.1:9"  # never contacted: the token comes from the keyring
CLIENT_ID = "bench-cli"
TOKEN = "bench-cli-access-token-0123456789"
ENTRY = TOKEN + "|2099-01-01T00:00:00Z"  # the `<key>_AT` value: token|RFC 3339 expiry
NAMES = ("oauth-auth token", "keyring floor", "python -c pass")


def commands(key: str) -> dict[str, list[str]]:
    bindir = Path(sys.executable).parent
    script = shutil.which("oauth-auth", path=str(bindir)) or "oauth-auth"
    read = f"import keyring; print(keyring.get_password('oauth-auth', '{key}_AT'))"
    return {
        "oauth-auth token": [script, "token", "--issuer", ISSUER, "--client-id", CLIENT_ID],
        "keyring floor": [sys.executable, "-c", read],
        "python -c pass": [sys.executable, "-c", "pass"],
    }


def display(key: str) -> dict[str, str]:
    """The commands as a reader would type them (no virtualenv paths)."""
    return {
        "oauth-auth token": f"oauth-auth token --issuer {ISSUER} --client-id {CLIENT_ID}",
        "keyring floor": "python -c \"import keyring; print(keyring.get_password("
                         f"'oauth-auth', '{key}_AT'))\"",
        "python -c pass": "python -c pass",
    }


Rounds = list[dict[str, list[float]]]  # per round: command -> its times in that round


def _hyperfine(cmds: dict[str, list[str]], env: dict[str, str], rounds: int, runs: int,
               tmp: Path) -> Rounds:
    out_rounds: Rounds = []
    names = list(cmds)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        out = tmp / f"hyperfine-{r}.json"
        subprocess.run(
            ["hyperfine", "-N", "--warmup", "1", "--runs", str(runs), "--style", "none",
             "--export-json", str(out), *(shlex.join(cmds[n]) for n in order)],
            env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=300)
        results = json.loads(out.read_text())["results"]
        out_rounds.append({name: result["times"]
                           for name, result in zip(order, results, strict=True)})
    return out_rounds


def _loop(cmds: dict[str, list[str]], env: dict[str, str], rounds: int, runs: int) -> Rounds:
    out_rounds: Rounds = []
    for cmd in cmds.values():  # warm-up
        for _ in range(3):
            subprocess.run(cmd, env=env, capture_output=True, timeout=60, check=False)
    for r in range(rounds):
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for i in range(runs):
            names = list(cmds)
            names = names[(r + i) % len(names):] + names[:(r + i) % len(names)]
            for name in names:
                start = time.perf_counter()
                subprocess.run(cmds[name], env=env, capture_output=True, timeout=60,
                               check=True)
                times[name].append(time.perf_counter() - start)
        out_rounds.append(times)
    return out_rounds


def run(bench_env: dict[str, str], rounds: int = 10, runs: int = 3,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """`bench_env`: the variables of a running private Secret Service."""
    from oauth_auth import derive_secret_key

    key = derive_secret_key("OAUTH_AUTH_", CLIENT_ID, ISSUER)
    with tempfile.TemporaryDirectory(prefix="oauth-auth-startup-") as tmp_name:
        tmp = Path(tmp_name)
        env = child_env(tmp / "pycache", {**bench_env,
                                          "OAUTH_AUTH_CONFIG": str(tmp / "config.toml"),
                                          "OAUTH_AUTH_LOCK_DIR": str(tmp / "locks")})
        seed = ("from oauth_auth import KeyringSecrets; KeyringSecrets().set_secret("
                f"{key + '_AT'!r}, {ENTRY!r})")
        subprocess.run([sys.executable, "-c", seed], env=env, check=True, timeout=60)
        cmds = commands(key)
        expected = {"oauth-auth token": TOKEN, "keyring floor": ENTRY}
        for name, value in expected.items():
            out = subprocess.run(cmds[name], env=env, capture_output=True, text=True,
                                 timeout=60, check=False)
            if out.returncode != 0 or out.stdout.strip() != value:
                raise RuntimeError(f"{name} did not print the cached entry: exit"
                                   f" {out.returncode}, stderr {out.stderr.strip()[-300:]}")
        tool = "hyperfine" if shutil.which("hyperfine") else "subprocess loop"
        if tool == "hyperfine":
            per_round = _hyperfine(cmds, env, rounds, runs, tmp)
        else:
            per_round = _loop(cmds, env, rounds, runs)
        times = {name: [t for rnd in per_round for t in rnd[name]] for name in cmds}
        # The goal's ratio is paired: command vs floor within each round (same load),
        # then the median over rounds.
        paired = Stat.of([statistics.median(rnd["oauth-auth token"])
                          / statistics.median(rnd["keyring floor"]) for rnd in per_round])
        importtime = _import_profile(cmds["oauth-auth token"], cmds["keyring floor"], env)
        own = _own_profile(cmds["oauth-auth token"], env)
    stats = {name: Stat.of(values) for name, values in times.items()}
    floor = stats["keyring floor"].median
    for name in NAMES:
        median = stats[name].median
        log(f"  [5] {name:18s} {median * 1e3:7.1f} ms  x{median / floor:.2f} of the keyring floor")
    log(f"  [5] paired per-round ratio: median {paired.median:.3f}"
        f" (IQR {paired.p25:.3f}-{paired.p75:.3f}, {paired.n} rounds)")
    return {"tool": tool, "runs": rounds * runs, "seconds": stats,
            "commands": display(key),
            "ratio": paired.median, "ratio_rounds": paired,
            "ratio_of_medians": stats["oauth-auth token"].median / floor,
            "import_profile": importtime, "own_profile": own}


def _imports(cmd: list[str], env: dict[str, str]) -> dict[str, int]:
    """module -> its own import time in µs, from `python -X importtime`."""
    out = subprocess.run([sys.executable, "-X", "importtime", *cmd], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    found = {}
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            self_us, _, name = line.split(":", 1)[1].split("|")
            found[name.strip()] = int(self_us)
    return found


def _own_profile(cmd: list[str], env: dict[str, str], repeat: int = 5,
                 top: int = 10) -> dict[str, Any]:
    """The command's own import time (median of `repeat` runs, in ms) and its largest
    modules: every module it imports beyond what `python -c pass` imports (the
    interpreter's start, counted apart)."""
    start = set().union(*(_imports(["-c", "pass"], env) for _ in range(2)))
    runs = [{name: us for name, us in _imports(cmd, env).items() if name not in start}
            for _ in range(repeat)]
    totals = sorted(sum(run.values()) / 1000 for run in runs)
    per_module: dict[str, float] = {}
    for name in set().union(*runs):
        values = sorted(run.get(name, 0) for run in runs)
        per_module[name] = values[len(values) // 2] / 1000
    ranked = sorted(per_module.items(), key=lambda kv: -kv[1])
    return {"runs": repeat, "import_ms": round(totals[len(totals) // 2], 1),
            "top": [[name, round(ms, 2)] for name, ms in ranked[:top]]}


def _import_profile(cli: list[str], floor: list[str], env: dict[str, str],
                    repeat: int = 5, top: int = 15) -> dict[str, Any]:
    """What the command imports that the floor does not: the modules with the largest
    own import time (median of `repeat` runs, in ms), and their total."""
    cli_runs = [_imports(cli, env) for _ in range(repeat)]
    floor_runs = [_imports(floor[1:], env) for _ in range(repeat)]
    floor_mods = set().union(*floor_runs)
    extra: dict[str, float] = {}
    for name in set().union(*cli_runs) - floor_mods:
        values = sorted(run.get(name, 0) for run in cli_runs)
        extra[name] = values[len(values) // 2] / 1000
    ranked = sorted(extra.items(), key=lambda kv: -kv[1])
    return {"extra_modules": len(extra), "extra_ms": round(sum(extra.values()), 1),
            "top": [[name, round(ms, 2)] for name, ms in ranked[:top]]}
