"""A browser command for the bench (`BROWSER=<script>`): what a local attacker could see.

Run as the command that Python's `webbrowser` starts, it records (to the JSON file named
by `FAKE_BROWSER_RECORD`) the arguments it was given and every process's command line
that holds a value of the login (the authorization URL, its state, nonce or code
challenge, a user code), then plays the user:

- `FAKE_BROWSER_MODE=login` (default): follows the start page to the provider and logs in;
- `twice`: fetches the start page twice (as an attacker who read it from /proc would, next
  to the user's browser), then tries to finish the login with what the first fetch gave;
- `record`: only records (the device grant: the test approves with the printed code);
- `attacker_first`: first lets another local user (uid 65534, root only) fetch the start
  page, as one who watches for browser commands would, then logs in as `login` does.

`write_browser_script(path)` writes the executable that runs this module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["NOBODY", "cmdlines_holding", "fetch_as_another_user", "main", "write_browser_script"]

#: The other local user of the tests (nobody), and a fetch in its name: the status of a
#: GET of the URL, redirects not followed (stdlib only: it runs as that user, outside the
#: virtualenv).
NOBODY = 65534
_FETCH = """
import sys, urllib.error, urllib.request
class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
try:
    print(urllib.request.build_opener(Stay).open(sys.argv[1], timeout=10).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
"""


def fetch_as_another_user(url: str) -> int:
    """GET `url` from a process of user `NOBODY` (needs root); its HTTP status."""
    done = subprocess.run(["/usr/bin/python3", "-c", _FETCH, url], user=NOBODY, group=NOBODY,
                          extra_groups=[], cwd="/", env={}, capture_output=True, text=True,
                          timeout=30, check=True)
    return int(done.stdout.strip())


def write_browser_script(path: Path) -> Path:
    """An executable that runs `main()` with this interpreter; returns its path."""
    path.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.support.fake_browser import main\n"
        "raise SystemExit(main())\n"
    )
    path.chmod(0o755)
    return path


def cmdlines_holding(values: list[str]) -> dict[str, list[str]]:
    """Every process (pid -> its argv) whose command line contains one of `values`: what
    `ps` shows every user of the machine."""
    found: dict[str, list[str]] = {}
    wanted = [v.encode() for v in values if v]
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            raw = Path("/proc", pid, "cmdline").read_bytes()
        except OSError:  # gone, or not ours to read
            continue
        if any(v in raw for v in wanted):
            found[pid] = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    return found


def _secrets_of(url: str) -> list[str]:
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    names = ("state", "nonce", "code_challenge", "user_code")
    return [url, *(query[n][0] for n in names if n in query)]


def main() -> int:
    import httpx

    from tests.support.browser import _is_start_page, http_browser_login

    given = sys.argv[1]
    mode = os.environ.get("FAKE_BROWSER_MODE", "login")
    record: dict[str, Any] = {
        "argv": sys.argv[1:],
        "own_cmdline": [a for a in Path("/proc/self/cmdline").read_bytes().decode().split("\0")
                        if a],
        "start_page": _is_start_page(given),
    }
    authorization_url = given
    if mode == "attacker_first":
        record["attacker_status"] = fetch_as_another_user(given)
        mode = "login"
    try:
        if record["start_page"]:
            with httpx.Client(trust_env=False, timeout=10) as client:
                first = client.get(given)
                record["first"] = {"status": first.status_code,
                                   "location": first.headers.get("location")}
                authorization_url = first.headers.get("location") or ""
                if mode == "twice":
                    second = client.get(given)
                    record["second"] = {"status": second.status_code,
                                        "location": second.headers.get("location"),
                                        "body_has_state": any(
                                            s in second.text
                                            for s in _secrets_of(authorization_url)[1:])}
        record["secrets_found"] = len(_secrets_of(authorization_url)) - 1
        record["cmdlines_with_secrets"] = cmdlines_holding(_secrets_of(authorization_url))
        if mode in ("login", "twice") and authorization_url:
            callback = http_browser_login(authorization_url, follow_callback=False)
            with httpx.Client(trust_env=False, timeout=10) as client:
                record["callback_status"] = client.get(callback).status_code
    except Exception as exc:  # the test reads what went wrong
        record["error"] = f"{type(exc).__name__}: {exc}"
    Path(os.environ["FAKE_BROWSER_RECORD"]).write_text(json.dumps(record))
    return 0
