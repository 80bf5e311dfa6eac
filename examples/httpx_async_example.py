"""httpx async: `httpx.AsyncClient(auth=OIDCAuth(source))`; nothing blocks the event loop.

Run: python examples/httpx_async_example.py  (OAUTH_ISSUER, OAUTH_CLIENT_ID, API_URL: _local.py)
"""

from __future__ import annotations

import asyncio

import httpx
from _local import local_setup

from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCAuth, OIDCParams, derive_secret_key


async def fetch_all(api_url: str, auth: OIDCAuth) -> list[int]:
    async with httpx.AsyncClient(auth=auth, base_url=api_url, timeout=30) as client:
        responses = await asyncio.gather(*(client.get(f"/items/{i}") for i in range(10)))
        return [r.status_code for r in responses]


def main() -> None:
    with local_setup() as setup:
        source = OAuthTokenSource(
            OIDCParams(setup.issuer, setup.client_id, callback_port=setup.callback_port),
            key_provider=lambda: derive_secret_key("EXAMPLE_", setup.api_url, setup.issuer),
            secrets_provider=MemorySecrets(),  # real programs: KeyringSecrets()
            interactive=True,
            open_browser=setup.open_browser,
        )
        # 10 concurrent requests, one login, one token
        statuses = asyncio.run(fetch_all(setup.api_url, OIDCAuth(source)))
        print(f"10 concurrent GETs -> {statuses}")


if __name__ == "__main__":
    main()
