"""Shared by the examples: the bundled local provider and API, or your own settings.

With OAUTH_ISSUER, OAUTH_CLIENT_ID and API_URL set, the examples talk to your provider and
API (and open your browser to log in; OAUTH_CALLBACK_PORT if your redirect URI is not on
the default port 8666). Without them, they start the provider the tests use
(oidc-provider on 127.0.0.1, needs `make deps`) and a small protected API, and complete the
development login automatically, so every example runs anywhere.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass
class Setup:
    issuer: str
    client_id: str
    api_url: str
    open_browser: Callable[[str], object] | None  # None: the real browser
    # 0 is the default 8666 (the redirect URI your provider has registered); the bundled
    # provider accepts any loopback port, so a free one there never meets a running login.
    callback_port: int = 0


@contextlib.contextmanager
def local_setup() -> Iterator[Setup]:
    """Your settings from the environment, else the bundled provider and API."""
    if os.environ.get("OAUTH_ISSUER"):
        yield Setup(os.environ["OAUTH_ISSUER"], os.environ["OAUTH_CLIENT_ID"],
                    os.environ["API_URL"], None, int(os.environ.get("OAUTH_CALLBACK_PORT", "0")))
        return
    import httpx

    from tests.support.api import start_api, stop_api
    from tests.support.browser import http_browser_login
    from tests.support.idp import start_idp

    idp = start_idp()

    def active(token: str) -> bool:
        r = httpx.post(idp.introspection_endpoint, data={"token": token},
                       auth=(idp.api_client_id, idp.api_client_secret), timeout=10)
        return bool(r.json().get("active"))

    def auto_login(url: str) -> bool:
        print("(example) completing the local provider's development login", file=sys.stderr)
        threading.Thread(target=http_browser_login, args=(url,), daemon=True).start()
        return True

    api = start_api(active)
    try:
        yield Setup(idp.issuer, idp.client_id, api.url, auto_login, _free_port())
    finally:
        stop_api(api)
        idp.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
