"""A machine calls an API with no person: client credentials, or a token exchange in CI.

    OAUTH_ISSUER=https://auth.example.com OAUTH_CLIENT_ID=nightly-report \
    OAUTH_CLIENT_SECRET=... API_URL=https://api.example.com python examples/machine_client.py

With OAUTH_CLIENT_SECRET (or OAUTH_ASSERTION_KEY, a private key file for private_key_jwt)
it uses the client credentials grant; in a GitHub Actions job with `id-token: write` and
neither set, it exchanges the job's OIDC token (RFC 8693) instead. Three requests go out
and one token request is made: the token is kept in memory, and would be shared through
tier 2 with other processes given a shared secrets provider.
"""

from __future__ import annotations

import os
import sys

import httpx

from oauth_auth import (
    ClientCredentials,
    GitHubActionsToken,
    MemorySecrets,
    OAuthAuthError,
    OAuthTokenSource,
    OIDCAuth,
    OIDCParams,
    TokenExchange,
)
from oauth_auth.grants import Grant


def main() -> int:
    try:
        issuer = os.environ["OAUTH_ISSUER"]
        client_id = os.environ["OAUTH_CLIENT_ID"]
        api = os.environ["API_URL"].rstrip("/")
    except KeyError as missing:
        print(f"set {missing.args[0]} (see the docstring)", file=sys.stderr)
        return 2
    secret = os.environ.get("OAUTH_CLIENT_SECRET", "")
    key = os.environ.get("OAUTH_ASSERTION_KEY", "")
    grant: Grant
    if secret or key:
        grant = ClientCredentials(assertion_key=key or None)
    else:
        grant = TokenExchange(GitHubActionsToken(api), resource=api)
    source = OAuthTokenSource(
        OIDCParams(issuer, client_id, audience=os.environ.get("OAUTH_AUDIENCE", ""),
                   client_secret=secret),
        key_provider=lambda: "EXAMPLE_MACHINE",
        secrets_provider=MemorySecrets(),
        grant=grant,
    )
    try:
        with httpx.Client(auth=OIDCAuth(source), timeout=10) as client:
            for path in ("/reports", "/reports/today", "/reports/pending"):
                print(f"GET {path} -> {client.get(api + path).status_code}")
    except OAuthAuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
