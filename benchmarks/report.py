"""Turn the results of one run into results/latest.md, results/latest.png and the README
section between `<!-- bench:start -->` and `<!-- bench:end -->`."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

from benchmarks._common import ROOT, Stat

FLOOR = "floor (set header)"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _us(s: Stat) -> str:
    return f"{s.median * 1e6:.2f}"


def _iqr_us(s: Stat) -> str:
    return f"{s.p25 * 1e6:.2f}-{s.p75 * 1e6:.2f}"


def _ratio(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def goals(res: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per goal of issue 8: what, target, measured ratio, met?"""
    rows: list[dict[str, Any]] = []
    for group, stats in res.get("hook", {}).items():
        # Paired: the median over runs of (oauth-auth / other) within the same run.
        paired = res["hook_paired"][group]["oauth-auth OIDCAuth"]
        ratio = paired[FLOOR].median
        rows.append({"goal": f"1. {group}: auth hook within 1.2x of the floor",
                     "target": "≤ 1.20", "measured": ratio, "met": ratio <= 1.2})
        peers = {n: s.median for n, s in stats.items() if n not in (FLOOR, "oauth-auth OIDCAuth")}
        if peers:
            best = min(peers, key=lambda n: peers[n])
            ratio = paired[best].median
            rows.append({"goal": f"1. {group}: no slower than the fastest peer ({best})",
                         "target": "≤ 1.00", "measured": ratio, "met": ratio <= 1.0})
    for client, r in res.get("throughput", {}).items():
        if client.startswith("_"):
            continue
        rows.append({"goal": f"2. {client}: authenticated throughput vs unauthenticated",
                     "target": "≥ 0.97", "measured": r["ratio"], "met": r["ratio"] >= 0.97})
    if "startup" in res:
        ratio = res["startup"]["ratio"]
        rows.append({"goal": "5. `oauth-auth token` (cache hit) vs the keyring floor",
                     "target": "≤ 0.50", "measured": ratio, "met": ratio <= 0.5})
    return rows


def markdown(res: dict[str, Any], *, heading: str = "#") -> str:
    m = res["machine"]
    lines = [
        f"{heading} oauth-auth benchmarks",
        "",
        f"Run {res['date']} on **{m['cpu']}**, {m['cores']} cores, {m['memory_gib']} GiB,"
        f" {m['os']}, {m['python']}; oauth-auth at `{res['commit']}`; total"
        f" {res['elapsed_s']:.0f} s. Peers: "
        + ", ".join(f"{k} {v}" for k, v in res["versions"].items()) + ".",
        "",
        "Medians with their spread (IQR: 25th-75th percentile); every comparison was measured"
        " in the same run, interleaved. Produced by `make bench` (`python -m benchmarks`).",
        "",
    ]
    lines += [f"{heading}# Goals", "", "| goal | target | measured | met |", "|---|---|---|---|"]
    for g in goals(res):
        lines.append(f"| {g['goal']} | {g['target']} | {_ratio(g['measured'])} |"
                     f" {'yes' if g['met'] else '**no**'} |")
    lines.append("")

    if "hook" in res:
        h = res["hook_params"]
        lines += [f"{heading}# 1. Per-request cost of the auth hook (token in memory)", "",
                  f"{h['runs']} runs x {h['calls']:,} calls per contender, interleaved in a"
                  " random order per run. requests: `auth(prepared)` + dispatch of the"
                  " response hooks; httpx: the auth flow driven to its end with a 200"
                  " response (authlib: plus `ensure_active_token`, which its clients call"
                  " per request); google-auth: `before_request` (what `AuthorizedSession`"
                  " calls). The goals use paired ratios: the median over runs of oauth-auth's"
                  " time over the other's in the same run (last column).", "",
                  "| client | contender | median µs/call | IQR µs | x floor | x oauth-auth |"
                  " oauth-auth / this, paired (IQR) |",
                  "|---|---|---|---|---|---|---|"]
        for group, stats in res["hook"].items():
            floor = stats[FLOOR].median
            ours = stats["oauth-auth OIDCAuth"].median
            pairs = res["hook_paired"][group]["oauth-auth OIDCAuth"]
            for name, s in sorted(stats.items(), key=lambda kv: kv[1].median):
                p = pairs[name]
                lines.append(f"| {group} | {name} | {_us(s)} | {_iqr_us(s)} |"
                             f" {s.median / floor:.2f} | {s.median / ours:.2f} |"
                             f" {p.median:.3f} ({p.p25:.3f}-{p.p75:.3f}) |")
        lines += ["", "httpx-auth is httpx-only; requests-oauth2client and google-auth are"
                  " requests-only here (google-auth has no httpx transport); msal has no"
                  " per-request hook (the app calls `acquire_token_silent` and sets the"
                  " header itself).", ""]

    if "hook_profile" in res:
        lines += [f"{heading}# 1b. Where the requests hook's time goes", "",
                  *_profile_lines(res), ""]

    if "throughput" in res:
        p = res["throughput_params"]
        lines += [f"{heading}# 2. Throughput to a loopback API", "",
                  f"{p['pairs']:,} requests per client and arm, the three arms (no auth; a"
                  " header-only auth, the floor; `OIDCAuth`) interleaved one request at a"
                  " time in a random order; sequential, keep-alive, to an API in its own"
                  " process; req/s = 1 / median latency. The goal compares with no auth;"
                  " the header-only column shows what sending the header costs at all (on"
                  " the client and on the server).", "",
                  "| client | no auth req/s (IQR) | header only req/s (IQR) |"
                  " OIDCAuth req/s (IQR) | ratio vs no auth | ratio vs header only |"
                  " OIDCAuth adds |", "|---|---|---|---|---|---|---|"]

        def rate(s: Stat) -> str:
            return f"{1 / s.median:.0f} ({1 / s.p75:.0f}-{1 / s.p25:.0f})"

        for client, r in res["throughput"].items():
            if client.startswith("_"):
                continue
            lines.append(
                f"| {client} | {rate(r['plain'])} | {rate(r['floor'])} | {rate(r['auth'])} |"
                f" {r['ratio']:.3f} | {r['ratio_vs_floor']:.3f} | {r['added_us']:.0f} µs |")
        lines.append("")

    if "herd" in res:
        reps = res["herd"]["reps"]
        lines += [f"{heading}# 3. Herd at expiry: 64 threads, 1,000 asyncio tasks", "",
                  "Real provider, rotation and reuse detection on, the access token expired,"
                  " one refresh token; all callers released at once. Counts are the"
                  f" provider's; {reps} runs per row, a fresh session each (a range when"
                  " the runs differ; errors summed over the runs). *Session alive*: the"
                  " refresh token the library holds afterwards still works (introspection)."
                  " *Served (valid)*: callers that got a token, and of those, how many hold"
                  " one the provider still accepts after the herd (reuse detection revokes"
                  " every token of the grant)."
                  " *Loop stall*: the longest gap a 1 ms heartbeat task saw (it includes the"
                  " tasks' own CPU work).", "",
                  "| callers | library | served (valid) | refresh ok | invalid_grant |"
                  " logins started | session alive | wall ms | loop stall ms | errors, notes |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in res["herd"]["results"]:
            errs = ", ".join(f"{k} x{v}" for k, v in r["errors"].items())
            note = "; ".join(x for x in (errs, r["notes"]) if x)
            lines.append(
                f"| {r['callers']} {r['mode']} | {r['name']} | {r['ok']} ({r['served_live']}) |"
                f" {r['refresh_ok']} |"
                f" {r['invalid_grant']} | {r['logins_started']} | {r['session_alive']} |"
                f" {r['wall_ms']} | {r['loop_stall_ms']} | {note} |")
        for mode, skipped in res["herd"]["not_configured"].items():
            for name, why in skipped.items():
                lines.append(f"| {mode} | {name} | not measured | | | | | | | {why} |")
        lines.append("")

    if "processes" in res:
        lines += [f"{heading}# 4. 16 processes at expiry, rotation on", "",
                  "Each row is one run: 16 interpreters share one store holding a refresh"
                  " token (no access token), released together (`tests/support/child_token.py`"
                  "); wall time from the start signal to the last exit (it includes each"
                  " child's lazy imports).", "",
                  "| store | cross-process lock | refresh ok | invalid_grant | processes served |"
                  " distinct tokens | session alive | wall ms | errors |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in res["processes"]["runs"]:
            errs = ", ".join(f"{k} x{v}" for k, v in r["errors"].items())
            lines.append(
                f"| {r['store']} | {'on' if r['lock'] else 'off'} | {r['refresh_ok']} |"
                f" {r['invalid_grant']} | {r['callers_ok']}/{r['processes']} |"
                f" {r['distinct_tokens']} | {'yes' if r['session_alive'] else '**no**'} |"
                f" {r['wall_s'] * 1e3:.0f} | {errs} |")
        lines.append("")

    if "startup" in res:
        st = res["startup"]
        floor = st["seconds"]["keyring floor"].median
        lines += [f"{heading}# 5. Command start-up on a cached access token", "",
                  f"{st['runs']} runs each ({st['tool']}), on a private gnome-keyring Secret"
                  " Service, bytecode cached as in an installed package.", "",
                  "| command | median ms | IQR ms | x keyring floor |", "|---|---|---|---|"]
        for name, s in st["seconds"].items():
            lines.append(f"| `{st['commands'][name]}` | {s.median * 1e3:.1f} |"
                         f" {s.p25 * 1e3:.1f}-{s.p75 * 1e3:.1f} | {s.median / floor:.2f} |")
        ip = st["import_profile"]
        pr = st["ratio_rounds"]
        lines += ["", f"The goal's ratio is paired: within each of the {pr.n} rounds, the"
                  " command's median over the floor's median; then the median over rounds:"
                  f" **{pr.median:.3f}** (IQR {pr.p25:.3f}-{pr.p75:.3f}).", "",
                  f"Modules the command imports that the floor does not: {ip['extra_modules']}"
                  f", {ip['extra_ms']} ms of own import time; the largest: "
                  + ", ".join(f"{n} {ms} ms" for n, ms in ip["top"][:10]) + ".", ""]
        own = st.get("own_profile")
        if own:
            command = st["seconds"]["oauth-auth token"].median * 1e3
            start = st["seconds"]["python -c pass"].median * 1e3
            rest = command - start - own["import_ms"]
            lines += [f"Where the command's {command:.1f} ms go (`python -X importtime`,"
                      f" median of {own['runs']} runs): the interpreter's start"
                      f" {start:.1f} ms (`python -c pass`), its own imports"
                      f" {own['import_ms']:.1f} ms (the largest: "
                      + ", ".join(f"{n} {ms} ms" for n, ms in own["top"][:8])
                      + f"), the rest {rest:.1f} ms: reading the config file and keyring's"
                      " recorded choice, one D-Bus connection to the Secret Service with"
                      " its 5 ms settle pause (a gnome-keyring race), and five calls.", ""]

    if "memory" in res:
        mem = res["memory"]
        floor = mem["rss_mib"]["bare"].median
        lines += [f"{heading}# 6. Resident memory", "",
                  "VmRSS of a fresh process after building the objects and sending one"
                  " request with each client to a loopback API (median of runs).", "",
                  "| process | RSS MiB (IQR) | over the floor |", "|---|---|---|"]
        for mode, s in mem["rss_mib"].items():
            lines.append(f"| {mem['labels'][mode]} | {s.median:.1f} ({s.p25:.1f}-{s.p75:.1f})"
                         f" | {s.median - floor:+.1f} MiB |")
        lines.append("")

    if "fleet" in res:
        from benchmarks import fleet

        lines += fleet.markdown(res["fleet"], heading=heading)
    return "\n".join(lines)


def readme_section(res: dict[str, Any]) -> str:
    """The README's summary: machine, goals, headline figures, links to the full table."""
    m = res["machine"]
    lines = [START, "## Benchmarks", "",
             f"Latest run ({res['date']}, {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB,"
             f" {m['os']}, {m['python']},"
             f" commit `{res['commit']}`), regenerated by `make bench`. Full tables:"
             " [benchmarks/results/latest.md](benchmarks/results/latest.md).", "",
             "| goal | target | measured | met |", "|---|---|---|---|"]
    for g in goals(res):
        lines.append(f"| {g['goal']} | {g['target']} | {_ratio(g['measured'])} |"
                     f" {'yes' if g['met'] else '**no**'} |")
    if "herd" in res:
        lines += ["", "| herd at expiry | refresh ok | invalid_grant | logins | session alive |",
                  "|---|---|---|---|---|"]
        for r in res["herd"]["results"]:
            lines.append(f"| {r['callers']} {r['mode']}: {r['name']} | {r['refresh_ok']} |"
                         f" {r['invalid_grant']} | {r['logins_started']} |"
                         f" {r['session_alive']} |")
    if "processes" in res:
        for r in res["processes"]["runs"]:
            lines.append(f"| 16 processes, {r['store']} store, lock {'on' if r['lock'] else 'off'}"
                         f" | {r['refresh_ok']} | {r['invalid_grant']} | 0 |"
                         f" {'1/1' if r['session_alive'] else '**0/1**'} |")
    if "memory" in res:
        mem = res["memory"]["rss_mib"]
        lines += ["", f"Memory: a process holding a token source and `OIDCAuth` on a requests"
                  f" session and an httpx client uses {mem['oauth-auth'].median:.1f} MiB,"
                  f" {mem['oauth-auth'].median - mem['bare'].median:+.1f} MiB over the same"
                  f" process without auth ({mem['bare'].median:.1f} MiB)."]
    if "hook_profile" in res:
        lines += ["", "**Where the requests hook's time goes.**", "", *_profile_lines(res)]
    if "startup" in res:
        lines += ["", "**Where `oauth-auth token`'s time goes.**", "", *_startup_lines(res)]
    lines += ["", "![benchmarks](benchmarks/results/latest.png)", "", END]
    return "\n".join(lines)


def _startup_lines(res: dict[str, Any]) -> list[str]:
    """The cache-hit command next to its floors, and where its own time goes."""
    st = res["startup"]
    sec = st["seconds"]
    command, floor = sec["oauth-auth token"].median * 1e3, sec["keyring floor"].median * 1e3
    start = sec["python -c pass"].median * 1e3
    pr = st["ratio_rounds"]
    text = (f"On a cache hit `oauth-auth token` takes {command:.1f} ms against {floor:.1f} ms"
            f" for `import keyring; keyring.get_password(...)` and {start:.1f} ms for"
            f" `python -c pass` (paired per round: **{pr.median:.3f}x** the keyring floor, IQR"
            f" {pr.p25:.3f}-{pr.p75:.3f}, {pr.n} rounds; the machine is shared, so only the"
            " paired ratio is comparable between runs). It reads the `_AT` entry from the"
            " Secret Service keyring recorded for the configuration, without keyring's"
            " entry-point scan, secretstorage, cryptography or argparse.")
    own = st.get("own_profile")
    if own:
        rest = command - start - own["import_ms"]
        text += (f" Beyond the interpreter's start: {own['import_ms']:.1f} ms of imports"
                 " (`python -X importtime`; the largest: "
                 + ", ".join(f"{n} {ms} ms" for n, ms in own["top"][:6])
                 + f"), and {rest:.1f} ms for the rest: the config file, keyring's recorded"
                 " choice, a D-Bus connection with its 5 ms settle pause (a gnome-keyring"
                 " race) and four calls.")
    return [text]


def _profile_lines(res: dict[str, Any]) -> list[str]:
    """The ablation profile of `OIDCAuth` on requests, and what would meet the goal."""
    steps = res["hook_profile"]
    floor = steps[0]["stat"].median
    total = steps[-1]["stat"].median
    dispatch = next(s for s in steps if s["step"].startswith("+ requests dispatching"))
    lines = [
        "A call is too short for a profiler (cProfile's overhead per call exceeds it), so"
        " this is an ablation: the benchmark loop built up from the floor to `OIDCAuth`"
        " one step at a time (median of interleaved runs; each row's cost is its median"
        " minus the row above).", "",
        "| step | µs/call | adds µs |", "|---|---|---|",
    ]
    lines += [f"| {s['step']} | {s['stat'].median * 1e6:.3f} | {s['delta'] * 1e6:+.3f} |"
              for s in steps]
    share = dispatch["delta"] / (total - floor) if total > floor else 0.0
    text = (f"`OIDCAuth` is {total / floor:.2f}x this loop's floor; {share:.0%} of what it adds"
            f" ({dispatch['delta'] * 1e6:.2f} of {(total - floor) * 1e6:.2f} µs) is requests"
            " calling the one response hook that any auth retrying a 401 must register (its"
            " own `HTTPDigestAuth` does the same), with the keyword arguments `Session.send`"
            " passes. The rest is the token lookup, the header string, appending the"
            " hook and the call into `OIDCAuth`. Everything else the"
            " retry needs is computed only when a 401 arrives. What would meet 1.2x:"
            " dropping the 401 retry, nothing else")
    tp = res.get("throughput", {}).get("requests")
    if tp:
        text += (f"; the whole hook is {(total - floor) * 1e6:.2f} µs against"
                 f" {tp['plain'].median * 1e6:.0f} µs for one loopback request with requests"
                 f" (item 2), where the measured throughput ratio is {tp['ratio']:.3f}")
    return [*lines, "", text + "."]


def update_readme(res: dict[str, Any], path: Path = ROOT / "README.md") -> bool:
    """Rewrite the section between the markers (appended at the end the first time).
    Returns False, touching nothing, when there is no README."""
    if not path.exists():
        return False
    text = path.read_text(encoding="utf-8")
    section = readme_section(res)
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")
    return True


def chart(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def wrap(label: str, width: int = 34) -> str:
        return "\n".join(textwrap.wrap(label, width))

    fig, axes = plt.subplots(2, 3, figsize=(21, 12.5))
    m = res["machine"]
    fig.suptitle(f"oauth-auth benchmarks — {m['cpu']}, {m['cores']} cores, {m['python']},"
                 f" {res['date']}", fontsize=14)
    ours_color, peer_color, floor_color, bad_color = "#2b6cb0", "#a0aec0", "#38a169", "#e53e3e"

    ax = axes[0][0]
    if "hook" in res:
        labels, values, errs, colors, notes = [], [], [[], []], [], []
        for group, stats in res["hook"].items():
            floor = stats[FLOOR].median
            for name, s in sorted(stats.items(), key=lambda kv: -kv[1].median):
                notes.append((s.p75 * 1e6, f" {s.median * 1e6:.1f} µs (x{s.median / floor:.1f})"))
                labels.append(wrap(f"{group}: {name}", 44))
                values.append(s.median * 1e6)
                errs[0].append((s.median - s.p25) * 1e6)
                errs[1].append((s.p75 - s.median) * 1e6)
                colors.append(floor_color if name == FLOOR else
                              ours_color if name.startswith("oauth-auth") else peer_color)
        y = range(len(labels))
        ax.barh(y, values, xerr=errs, color=colors)
        ax.set_yticks(list(y), labels, fontsize=7)
        for i, (end, text) in enumerate(notes):
            ax.text(end, i, text, va="center", fontsize=7)
        ax.set_xlim(0, max(end for end, _ in notes) * 1.3)
        ax.set_xlabel("µs per request (median, IQR bars; x = multiple of the floor)")
    ax.set_title("1. Auth hook cost, token in memory (lower is better)")

    ax = axes[0][1]
    if "throughput" in res:
        clients = [c for c in res["throughput"] if not c.startswith("_")]
        ratios = [res["throughput"][c]["ratio"] for c in clients]
        bars = ax.bar(clients, ratios, color=[ours_color if r >= 0.97 else bad_color
                                              for r in ratios])
        ax.axhline(0.97, color="black", linestyle="--", linewidth=1, label="goal 0.97")
        ax.axhline(1.0, color="grey", linewidth=0.5)
        ax.set_ylim(min(0.8, min(ratios) - 0.02), 1.05)
        ax.bar_label(bars, [f"{r:.3f}" for r in ratios])
        ax.legend(loc="lower right")
        ax.set_ylabel("throughput with OIDCAuth / without")
    ax.set_title("2. Loopback API throughput ratio (higher is better)")

    ax = axes[0][2]
    if "herd" in res:
        rows = res["herd"]["results"]
        labels = [wrap(f"{r['callers']} {r['mode']}: {r['name']}", 44) for r in rows]

        def median_of(r: dict[str, Any], key: str) -> int:
            values = sorted(run[key] for run in r["runs"])
            return int(values[len(values) // 2])

        ok = [median_of(r, "refresh_ok") for r in rows]
        bad = [median_of(r, "invalid_grant") for r in rows]
        logins = [median_of(r, "logins_started") for r in rows]
        y = list(range(len(rows)))
        ax.barh(y, ok, color=ours_color, label="refresh ok")
        ax.barh(y, bad, left=ok, color=bad_color, label="invalid_grant")
        ax.barh(y, logins, left=[a + b for a, b in zip(ok, bad, strict=True)],
                color="#dd6b20", label="browser logins started")
        for i, r in enumerate(rows):
            total = ok[i] + bad[i] + logins[i]
            alive, n = r["session_alive"].split("/")
            ax.text(total, i, f" {total}" + ("" if alive == n else
                                             f"  session dead in {int(n) - int(alive)}/{n}"),
                    va="center", fontsize=8)
        ax.set_yticks(y, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, max(a + b + c for a, b, c in zip(ok, bad, logins, strict=True)) * 1.5)
        ax.set_xlabel("requests at the provider, median of runs (1 is ideal)")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title("3. Herd at expiry (fewer is better)")

    ax = axes[1][0]
    if "processes" in res:
        runs = res["processes"]["runs"]
        labels = [f"{r['store']}\nlock {'on' if r['lock'] else 'off'}\n#{i + 1}"
                  for i, r in enumerate(runs)]
        ok = [r["refresh_ok"] for r in runs]
        bad = [r["invalid_grant"] for r in runs]
        x = list(range(len(runs)))
        ax.bar(x, ok, color=ours_color, label="refresh ok")
        ax.bar(x, bad, bottom=ok, color=bad_color, label="invalid_grant")
        for i, r in enumerate(runs):
            ax.text(i, ok[i] + bad[i], f"{r['callers_ok']}/16 ok\n"
                    + ("alive" if r["session_alive"] else "dead"), ha="center",
                    va="bottom", fontsize=8)
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_ylim(0, max(a + b for a, b in zip(ok, bad, strict=True)) * 1.3 + 1)
        ax.set_ylabel("requests at the provider")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_title("4. 16 processes at expiry (1 refresh, 0 invalid_grant is ideal)")

    ax = axes[1][1]
    if "startup" in res:
        st = res["startup"]["seconds"]
        names = list(st)
        vals = [st[n].median * 1e3 for n in names]
        err = [[(st[n].median - st[n].p25) * 1e3 for n in names],
               [(st[n].p75 - st[n].median) * 1e3 for n in names]]
        bars = ax.bar(names, vals, yerr=err, capsize=4,
                      color=[ours_color, floor_color, peer_color][: len(names)])
        floor = st["keyring floor"].median * 1e3
        ax.axhline(floor * 0.5, color="black", linestyle="--", linewidth=1,
                   label="goal: 0.5x keyring floor")
        ax.bar_label(bars, [f"{v:.0f} ms" for v in vals], label_type="center", color="white",
                     fontweight="bold")
        ax.set_ylim(0, max(*vals, floor * 0.5) * 1.2)
        ax.legend(loc="upper right")
        ax.set_ylabel("wall time, ms (median, IQR bars)")
    ax.set_title("5. Start-up on a cached token (lower is better)")

    ax = axes[1][2]
    if "memory" in res:
        mem = res["memory"]
        modes = list(mem["rss_mib"])
        vals = [mem["rss_mib"][k].median for k in modes]
        bars = ax.barh([wrap(mem["labels"][k], 30) for k in modes], vals,
                       color=[peer_color, floor_color, ours_color, peer_color][: len(modes)])
        ax.bar_label(bars, [f" {v:.1f} MiB" for v in vals])
        ax.invert_yaxis()
        ax.set_xlim(0, max(vals) * 1.25)
        ax.set_xlabel("VmRSS, MiB")
    ax.set_title("6. Resident memory (lower is better)")

    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=100)
    plt.close(fig)
