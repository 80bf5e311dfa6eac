"""Shared by the adapter examples: your provider and API, from the environment.

    OAUTH_ISSUER=https://auth.example.com OAUTH_CLIENT_ID=my-cli \\
    API_URL=https://api.example.com python examples/requests_example.py

OAUTH_CALLBACK_PORT picks the redirect URI's port if your provider registered another
than the default 8666. The login opens your browser (Python's `webbrowser`, which
honours $BROWSER). Nothing here comes from the repository's tests, so the examples run
from an installed package as they are; `make demo` runs the whole flow against the
bundled local provider instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_NEEDED = ("OAUTH_ISSUER", "OAUTH_CLIENT_ID", "API_URL")


@dataclass
class Setup:
    issuer: str
    client_id: str
    api_url: str
    open_browser: Callable[[str], object] | None  # None: the real browser
    # 0 is the default 8666 (the redirect URI your provider has registered).
    callback_port: int = 0


@contextlib.contextmanager
def local_setup() -> Iterator[Setup]:
    """Your settings from the environment; a usage message (exit 2) without them."""
    missing = [name for name in _NEEDED if not os.environ.get(name)]
    if missing:
        print(f"set {', '.join(missing)} to your provider, client and API (see the top of"
              " examples/_local.py); `make demo` runs against a bundled local provider",
              file=sys.stderr)
        raise SystemExit(2)
    yield Setup(os.environ["OAUTH_ISSUER"], os.environ["OAUTH_CLIENT_ID"],
                os.environ["API_URL"], None, int(os.environ.get("OAUTH_CALLBACK_PORT", "0")))
