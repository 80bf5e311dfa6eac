"""requests: `session.auth = OIDCAuth(source)` and every request carries a valid token.

Run: python examples/requests_example.py   (OAUTH_ISSUER, OAUTH_CLIENT_ID, API_URL: see _local.py)
"""

from __future__ import annotations

import requests
from _local import local_setup

from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCAuth, OIDCParams, derive_secret_key


def main() -> None:
    with local_setup() as setup:
        source = OAuthTokenSource(
            OIDCParams(setup.issuer, setup.client_id, scopes=["openid", "profile"],
                       callback_port=setup.callback_port),
            key_provider=lambda: derive_secret_key("EXAMPLE_", setup.api_url, setup.issuer),
            secrets_provider=MemorySecrets(),  # real programs: KeyringSecrets()
            interactive=True,
            open_browser=setup.open_browser,
        )
        with requests.Session() as session:
            session.auth = OIDCAuth(source)
            for path in ("/items", "/items/1"):
                r = session.get(setup.api_url + path, timeout=30)
                print(f"GET {path} -> {r.status_code} {r.text}")


if __name__ == "__main__":
    main()
