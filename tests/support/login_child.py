"""A process that logs in with the library's default browser opener (tests only).

Usage: python -m tests.support.login_child '<json>' with issuer, client_id, scopes,
callback_port, lock_dir, and optionally method ("browser" or "device"). It runs
`OAuthTokenSource(..., interactive=True).token()` with a `MemorySecrets` store, so the
browser is whatever `BROWSER` names (Python's `webbrowser`), and prints one JSON line:
`{"ok": true, "identity": {...}, "stored": bool}` or `{"ok": false, "error": ..., "code":
...}`. Instructions for the user (the device grant's code) go to stderr, as always.
"""

from __future__ import annotations

import json
import sys

from oauth_auth import LoginError, MemorySecrets, OAuthAuthError, OAuthTokenSource, OIDCParams


def main() -> int:
    cfg = json.loads(sys.argv[1])
    store = MemorySecrets()
    source = OAuthTokenSource(
        OIDCParams(cfg["issuer"], cfg["client_id"], scopes=cfg.get("scopes", []),
                   callback_port=int(cfg.get("callback_port", 0))),
        key_provider=lambda: "LOGIN_CHILD",
        secrets_provider=store,
        interactive=True,
        login_method=cfg.get("method", "browser"),
        login_timeout=float(cfg.get("timeout", 60)),
        lock_dir=cfg["lock_dir"],
    )
    try:
        source.token()
    except OAuthAuthError as exc:
        code = exc.error if isinstance(exc, LoginError) else ""
        print(json.dumps({"ok": False, "error": str(exc), "code": code}), flush=True)
        return 1
    identity = dict(source.status(read_store=False).identity)
    print(json.dumps({"ok": True, "identity": identity,
                      "stored": store.get_secret("LOGIN_CHILD") is not None}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
