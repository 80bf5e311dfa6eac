#!/usr/bin/env python3
"""Call a registry with the session `oauth-auth registry login` stored.

First, once (opens the browser):

    oauth-auth registry login --registry https://registry.example.com \
        --issuer https://auth.example.com --client-id registry-cli

Then, from any script, as often as you like (no browser, no prompt; tokens are refreshed
and shared between processes through the keyring):

    python examples/registry_client.py https://registry.example.com /v0/servers

Exit codes: 0 ok, 4 not logged in (the message says which command to run), 1 other errors.
"""

from __future__ import annotations

import sys

import requests

from oauth_auth import LoginRequiredError, OAuthAuthError, registry_auth


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    registry_url = argv[0].rstrip("/")
    path = argv[1] if len(argv) > 1 else "/"
    try:
        # Settings (issuer, client id, scopes...) come from the oauth-auth config file.
        # interactive=False: a script never opens a browser; it says what to run instead.
        auth = registry_auth(registry_url, interactive=False)
        with requests.Session() as session:
            session.auth = auth  # adds the bearer token; retries once on a 401
            response = session.get(registry_url + path, timeout=30)
    except LoginRequiredError as exc:
        print(f"registry_client: not logged in: {exc.message}", file=sys.stderr)
        print(f"registry_client: {exc.hint}", file=sys.stderr)
        return 4
    except OAuthAuthError as exc:
        print(f"registry_client: {exc}", file=sys.stderr)
        return 1
    except requests.RequestException as exc:
        print(f"registry_client: the request failed: {exc}", file=sys.stderr)
        return 1
    print(f"{response.status_code} {response.reason}", file=sys.stderr)
    print(response.text)
    return 0 if response.ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
