"""A child process for the memory benchmark: build what `mode` says, then report RSS.

Usage: python -m benchmarks._memory_child '<json>' with keys mode ("pass", "bare",
"oauth-auth", "authlib"), api (URL of the loopback API), issuer, client_id,
refresh_token. Prints one JSON line {"rss_kib", "hwm_kib"} (VmRSS and VmHWM from
/proc/self/status, after a garbage collection) and exits 0.
"""

from __future__ import annotations

import gc
import json
import sys
from typing import Any


def status_kib() -> dict[str, int]:
    out = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                out["rss_kib" if name == "VmRSS" else "hwm_kib"] = int(value.split()[0])
    return out


def main() -> int:
    cfg = json.loads(sys.argv[1])
    mode = cfg["mode"]
    keep: list[Any] = []
    if mode != "pass":
        import httpx
        import requests

        session, client = requests.Session(), httpx.Client(timeout=10)
        keep += [session, client]
        if mode == "oauth-auth":
            from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCAuth, OIDCParams

            source = OAuthTokenSource(
                OIDCParams(cfg["issuer"], cfg["client_id"]), key_provider=lambda: "MEM",
                secrets_provider=MemorySecrets({"MEM": cfg["refresh_token"]}),
                lock_dir=cfg["lock_dir"])
            source.token()  # a real refresh at the provider: the source holds a token
            auth = OIDCAuth(source)
            session.auth = auth
            client.auth = auth
            keep.append(source)
        elif mode == "authlib":
            from authlib.integrations.httpx_client import OAuth2Client
            from authlib.integrations.requests_client import OAuth2Session

            token = {"access_token": "x", "token_type": "Bearer", "expires_at": 0,
                     "refresh_token": cfg["refresh_token"]}
            session = OAuth2Session(cfg["client_id"], token=token,
                                    token_endpoint=cfg["issuer"] + "/token",
                                    token_endpoint_auth_method="none")
            session.ensure_active_token(session.token)  # a real refresh
            client = OAuth2Client(cfg["client_id"], token=session.token, timeout=10,
                                  token_endpoint=cfg["issuer"] + "/token",
                                  token_endpoint_auth_method="none")
            keep += [session, client]
        for sender in (session, client):  # one request each, authenticated or not
            response = sender.get(cfg["api"] + "/data")
            if response.status_code != 200:
                print(json.dumps({"error": f"HTTP {response.status_code}"}))
                return 1
    gc.collect()
    print(json.dumps(status_kib()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
