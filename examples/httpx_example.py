"""httpx: `httpx.Client(auth=OIDCAuth(source))`.

Run: python examples/httpx_example.py   (OAUTH_ISSUER, OAUTH_CLIENT_ID, API_URL: see _local.py)
"""

from __future__ import annotations

import httpx
from _local import local_setup

from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCAuth, OIDCParams, derive_secret_key


def main() -> None:
    with local_setup() as setup:
        source = OAuthTokenSource(
            OIDCParams(setup.issuer, setup.client_id, callback_port=setup.callback_port),
            key_provider=lambda: derive_secret_key("EXAMPLE_", setup.api_url, setup.issuer),
            secrets_provider=MemorySecrets(),  # real programs: KeyringSecrets()
            interactive=True,
            open_browser=setup.open_browser,
        )
        with httpx.Client(auth=OIDCAuth(source), base_url=setup.api_url, timeout=30) as client:
            r = client.post("/items", json={"name": "example"})
            print(f"POST /items -> {r.status_code} {r.text}")


if __name__ == "__main__":
    main()
