"""The oauth-auth demo: a full login and authenticated requests against a local provider.

Run it with `make demo` (which installs what it needs first). It starts the bundled
OpenID provider (oidc-provider, the one the tests use) and a small protected API, both
on 127.0.0.1, then walks through the four tiers with real requests:

1. log in (browser + PKCE on a loopback port) and call the API with requests and httpx;
2. a second process gets its token from the shared cache, with no token request;
3. the clock jumps past expiry: one refresh, and the refresh token rotates;
4. the API rejects a token: OIDCAuth invalidates it and retries once;
5. log out: the refresh token is revoked and both entries are deleted.

On a desktop with a terminal it opens your browser (log in with any name). Without a
browser or terminal (CI, SSH, `--auto`) it fills in the provider's development login
itself and says so. Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import requests  # noqa: E402

from oauth_auth import OAuthTokenSource, OIDCAuth, OIDCParams, derive_secret_key  # noqa: E402
from tests.support.api import start_api, stop_api  # noqa: E402
from tests.support.filesecrets import FileSecrets  # noqa: E402
from tests.support.idp import IdP, refresh_count, start_idp  # noqa: E402


def say(step: str, text: str = "") -> None:
    print(f"\n== {step}" if not text else f"   {text}", flush=True)


def token_counts(idp: IdP) -> str:
    c = idp.counts().get("token", {})
    parts = [f"{grant}: {dict(outcomes)}" for grant, outcomes in sorted(c.items())]
    return "; ".join(parts) or "none"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def can_show_browser() -> bool:
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def auto_browser(url: str) -> bool:
    """Play the user in the provider's development login pages (no real browser here)."""
    from tests.support.browser import http_browser_login

    threading.Thread(target=http_browser_login, args=(url,), kwargs={"login": "demo-user"},
                     daemon=True).start()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--auto", action="store_true",
                        help="fill in the development login instead of opening a browser")
    args = parser.parse_args(argv)

    idp = start_idp(rotate_refresh_token=True)
    api = None
    workdir = tempfile.TemporaryDirectory(prefix="oauth-auth-demo-")
    try:
        # The API accepts a token only if the provider's introspection says it is active.
        def active(token: str) -> bool:
            r = httpx.post(idp.introspection_endpoint, data={"token": token},
                           auth=(idp.api_client_id, idp.api_client_secret), timeout=10)
            return bool(r.json().get("active"))

        api = start_api(active)
        say(f"Started the OpenID provider at {idp.issuer} and a protected API at {api.url}")

        store_dir = Path(workdir.name) / "secrets"
        # The demo keeps its secrets in a throwaway folder so it never touches your keychain;
        # real programs use KeyringSecrets().
        store = FileSecrets(store_dir)
        key = derive_secret_key("DEMO_OAUTH_", api.url, idp.issuer)
        offset = [0.0]
        oidc = OIDCParams(idp.issuer, idp.client_id, scopes=["openid", "profile"],
                          callback_port=free_port())
        auto = args.auto or not can_show_browser()
        source = OAuthTokenSource(
            oidc,
            key_provider=lambda: key,
            secrets_provider=store,
            interactive=True,
            open_browser=auto_browser if auto else None,
            clock=lambda: time.time() + offset[0],
            lock_dir=str(Path(workdir.name) / "locks"),
        )
        auth = OIDCAuth(source)

        say("1. Log in (authorization code + PKCE, loopback redirect)")
        if auto:
            say("", "no browser or terminal here: completing the provider's development"
                " login automatically as 'demo-user'")
        else:
            say("", "your browser opens the provider's login page: sign in with any name")
        started = time.perf_counter()
        with requests.Session() as session:
            session.auth = auth
            r = session.get(api.url + "/hello", timeout=10)
        say("", f"logged in in {time.perf_counter() - started:.2f} s;"
            f" requests -> API: HTTP {r.status_code}")
        with httpx.Client(auth=auth, timeout=30) as client:
            say("", f"httpx.Client -> API: HTTP {client.get(api.url + '/hello').status_code}")

        async def async_calls() -> list[int]:
            async with httpx.AsyncClient(auth=auth, timeout=30) as c:
                rs = await asyncio.gather(*(c.get(api.url + f"/a{i}") for i in range(5)))
                return [x.status_code for x in rs]

        say("", f"httpx.AsyncClient, 5 concurrent -> {asyncio.run(async_calls())}")
        say("", f"provider token requests so far: {token_counts(idp)}")

        say("2. A second process uses the shared access-token cache (tier 2)")
        before = refresh_count(idp.counts())
        cfg = {"issuer": idp.issuer, "client_id": idp.client_id, "key": key,
               "store": f"file:{store_dir}", "go": str(store_dir)}
        out = subprocess.run([sys.executable, "-m", "tests.support.child_token", json.dumps(cfg)],
                             capture_output=True, text=True, cwd=ROOT, timeout=60,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
        ok = out.stdout.startswith("TOKEN ") and out.stdout.split()[1] == source.token()
        say("", f"child process got the same token: {ok};"
            f" new refreshes: {refresh_count(idp.counts()) - before}")

        say("3. One hour later: the token expired, one refresh, the refresh token rotates")
        old_rt = store.get_secret(key)
        offset[0] = 3600.0
        with requests.Session() as session:
            session.auth = auth
            codes = [session.get(api.url + f"/later{i}", timeout=10).status_code
                     for i in range(3)]
        rotated = store.get_secret(key) != old_rt
        say("", f"3 requests -> {codes}; refreshes in total: {refresh_count(idp.counts())};"
            f" refresh token rotated and stored: {rotated}")

        say("4. The API rejects the current token: invalidate and retry once")
        api.rejected_tokens.add(source.token())
        api.reset()
        with httpx.Client(auth=auth, timeout=30) as client:
            resp = client.get(api.url + "/after-revocation")
        say("", f"final status {resp.status_code} after {api.count()} API requests"
            f" ({len(resp.history)} retried)")

        say("5. Log out: revoke at the provider, delete both entries")
        result = source.logout_result()
        say("", f"revoked: {result.revoked}; deleted locally: {result.deleted};"
            f" stored refresh token now: {store.get_secret(key)}")

        say("Provider token-request counts")
        say("", token_counts(idp))
        c = idp.counts()
        say("", f"revocations: {c.get('revocation', 0)}; introspections by the API:"
            f" {c.get('introspection', 0)}")
        return 0
    finally:
        if api is not None:
            stop_api(api)
        idp.stop()
        workdir.cleanup()
        say("Stopped the provider and the API.")


if __name__ == "__main__":
    sys.exit(main())
