"""`oauth-auth login --paste`: the browser login for a terminal the redirect cannot reach.

Over SSH without port forwarding the browser runs on another machine, so the loopback
redirect never arrives here. The user opens the login URL anywhere, and pastes back the
URL the browser ended on (kubelogin's authcode-keyboard); `_login` checks it exactly
like a callback (state, then iss, then error, then code).
"""

from __future__ import annotations

import sys
from typing import Any

from .errors import LoginError

__all__ = ["paste_options", "read_redirect"]


def read_redirect(redirect_uri: str) -> str:
    """One pasted line from stdin (the prompt went to stderr before)."""
    stream = sys.stdin
    if stream is None:
        raise LoginError("--paste needs a stdin to read the URL from", error="invalid_request")
    print(f"URL ({redirect_uri}?...): ", end="", file=sys.stderr, flush=True)
    line = stream.readline()
    if not line:
        raise LoginError("stdin ended before a URL was pasted", error="invalid_request",
                         hint="run the login again and paste the URL the browser ends on")
    return line


def paste_options() -> dict[str, Any]:
    """The token-source options of the paste mode: the browser flow, printed, pasted."""
    return {"read_redirect": read_redirect, "login_method": "browser", "skip_browser": True}
