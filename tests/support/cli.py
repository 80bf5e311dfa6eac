"""Running the `oauth-auth` console script as a user does, for the CLI's end-to-end tests.

`cli(argv, env)` runs the installed console script (or `python -m oauth_auth`) in a
subprocess; its stderr goes to the hygiene ledger. `browser_program(dir)` writes a
program to put in ``$BROWSER``: Python's `webbrowser` (what the command opens the login
with) runs it with the login URL, and it plays the user through the real provider's login
at HTTP level (`http_browser_login`), recording every URL it was given, so a test can
tell whether (and how often) a browser was opened.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.hygiene import LEDGER

__all__ = ["ROOT", "browser_program", "browser_urls", "cli", "cli_env", "script"]

ROOT = Path(__file__).resolve().parents[2]


def script() -> list[str]:
    """The console script as installed (`oauth-auth`), else `python -m oauth_auth`."""
    found = Path(sys.executable).parent / "oauth-auth"
    return [str(found)] if found.exists() else [sys.executable, "-m", "oauth_auth"]


def cli_env(tmp_path: Path, base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """`base` (default: this environment) with the test's own config file and lock
    directory, no display (so nothing but ``$BROWSER`` opens a browser) and `extra`."""
    env = dict(os.environ if base is None else base)
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "OAUTH_AUTH_PROFILE",
                 "OAUTH_AUTH_STORE"):
        env.pop(name, None)
    env.update({"OAUTH_AUTH_CONFIG": str(tmp_path / "cfg" / "config.json"),
                "OAUTH_AUTH_LOCK_DIR": str(tmp_path / "locks")})
    env.update(extra)
    return env


def cli(argv: list[str], env: dict[str, str], *, stdin: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``oauth-auth <argv>``; stdout and stderr captured as text."""
    done = subprocess.run([*script(), *argv], env=env, cwd=ROOT, capture_output=True,
                          text=True, input=stdin, timeout=timeout, check=False)
    LEDGER.text("cli-stderr", done.stderr)
    return done


def browser_program(directory: Path, *, login: str = "alice", follow: bool = False) -> Path:
    """A ``$BROWSER`` program that logs in as `login` and appends each URL to
    ``<directory>/browser-urls``; with `follow`, it only follows the page's redirects
    (a server that approves at once, such as the MCP SDK's test provider)."""
    directory.mkdir(parents=True, exist_ok=True)
    program = directory / "browser"
    play = ("import httpx\nhttpx.get(sys.argv[1], follow_redirects=True, timeout=30)\n"
            if follow else "from tests.support.browser import http_browser_login\n"
            f"http_browser_login(sys.argv[1], login={login!r})\n")
    program.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        f"with open({str(directory / 'browser-urls')!r}, 'a') as f:\n"
        "    f.write(sys.argv[1] + '\\n')\n"
        + play
    )
    program.chmod(0o755)
    return program


def browser_urls(directory: Path) -> list[str]:
    """The URLs the `browser_program` of `directory` was started with."""
    path = directory / "browser-urls"
    return path.read_text().splitlines() if path.exists() else []
