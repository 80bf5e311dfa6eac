"""A worker of a fleet that shares one OAuth session through Redis or PostgreSQL.

Run it on every replica of a Kubernetes Deployment (or in every Celery worker, cron job,
serverless function...). They all use the one grant stored on the server: when the access
token expires, one replica refreshes under the server's lease and the others use its
token, so a rotating refresh token never meets `invalid_grant` from a race.

    pip install 'oauth-auth[redis]'            # or 'oauth-auth[postgres]'
    export FLEET_STORE=redis://redis.internal:6379/0      # or postgresql://user@db/app
    export OAUTH_AUTH_STORE_KEY=...            # a Fernet key, the same on every replica
    export OAUTH_ISSUER=https://auth.example.com OAUTH_CLIENT_ID=report-worker
    export API_URL=https://api.example.com/reports/pending

    # once, anywhere, by a person: store the session on the server
    OAUTH_AUTH_STORE=$FLEET_STORE oauth-auth login --issuer $OAUTH_ISSUER \\
        --client-id $OAUTH_CLIENT_ID
    # then, on every replica
    python fleet_worker.py --jobs 3

The session's key is the one `oauth-auth login` uses for these flags, so the command
above seeds exactly the session the workers read. Make a key with
`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`;
with several keys (comma-separated) the first encrypts and all decrypt, so keys rotate.
Exit status: 0 when every job got an answer below 400, 4 when the session needs a login,
1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse

import httpx

from oauth_auth import (
    InvalidGrantError,
    LoginRequiredError,
    OAuthAuthError,
    OAuthTokenSource,
    OIDCAuth,
    OIDCParams,
    PostgresSecrets,
    RedisSecrets,
    SecretsProvider,
    derive_secret_key,
)


def fleet_store(url: str, keys: str) -> SecretsProvider:
    """RedisSecrets or PostgresSecrets from a URL; `keys`: Fernet keys, comma-separated."""
    encryption_key = [k.strip() for k in keys.split(",") if k.strip()]
    if urllib.parse.urlsplit(url).scheme in ("postgresql", "postgres"):
        return PostgresSecrets(url, encryption_key=encryption_key)
    return RedisSecrets(url, encryption_key=encryption_key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="API calls to make")
    args = parser.parse_args(argv)
    issuer, client_id = os.environ["OAUTH_ISSUER"], os.environ["OAUTH_CLIENT_ID"]
    api = os.environ["API_URL"]
    store = fleet_store(os.environ["FLEET_STORE"], os.environ["OAUTH_AUTH_STORE_KEY"])
    source = OAuthTokenSource(
        OIDCParams(issuer, client_id),
        # The key `oauth-auth login --issuer ... --client-id ...` stores the session under.
        key_provider=lambda: derive_secret_key("OAUTH_AUTH_", client_id, issuer),
        secrets_provider=store,
        interactive=False,  # a worker never opens a browser: it needs the stored session
    )
    failed = 0
    try:
        with httpx.Client(auth=OIDCAuth(source), timeout=30) as client:
            for job in range(1, args.jobs + 1):
                response = client.get(api)
                print(f"job {job}: GET {api} -> {response.status_code}", flush=True)
                failed += response.status_code >= 400
    except (LoginRequiredError, InvalidGrantError) as exc:
        print(f"fleet_worker: the shared session needs a login: {exc}", file=sys.stderr)
        return 4
    except OAuthAuthError as exc:  # the store down, a timeout...: typed, with a hint
        print(f"fleet_worker: {exc} ({exc.hint})", file=sys.stderr)
        return 1
    finally:
        source.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
