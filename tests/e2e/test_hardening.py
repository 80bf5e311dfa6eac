"""End to end against the real oidc-provider: the hardening rules that need a real
provider to show (its counts are the referee)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import httpx
import requests

from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCAuth, OIDCParams
from tests.support.api import ProtectedAPI
from tests.support.idp import IdP, obtain_tokens, refresh_count


def test_an_always_401_api_costs_one_refresh_not_one_per_request(
    real_idp: IdP, tmp_path: Path, api_factory: Callable[..., ProtectedAPI]
) -> None:
    tokens = obtain_tokens(real_idp)
    store = MemorySecrets()
    store.set_secret("KH", tokens["refresh_token"])
    expiry = datetime.fromtimestamp(time.time() + int(tokens["expires_in"]), tz=timezone.utc)
    store.set_secret("KH_AT", f"{tokens['access_token']}|{expiry:%Y-%m-%dT%H:%M:%SZ}")
    real_idp.reset_counts()
    api = api_factory(lambda token: True)
    api.mode = "always_401"
    source = OAuthTokenSource(OIDCParams(real_idp.issuer, real_idp.client_id),
                              key_provider=lambda: "KH", secrets_provider=store,
                              lock_dir=str(tmp_path / "locks"))
    auth = OIDCAuth(source)
    with requests.Session() as s, httpx.Client(auth=auth, timeout=10) as c:
        s.auth = auth
        statuses = [s.get(api.url + "/data", timeout=10).status_code for _ in range(10)]
        statuses += [c.get(api.url + "/data").status_code for _ in range(10)]
    assert statuses == [401] * 20
    # The first request was retried with a fresh token, which got 401 too; the other 19
    # were not retried (before reauth_interval this was 20 refresh grants).
    assert refresh_count(real_idp.counts()) == 1
    assert api.count() == 21
    assert store.get_secret("KH") != tokens["refresh_token"]  # the rotation was stored
