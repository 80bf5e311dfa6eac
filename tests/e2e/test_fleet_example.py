"""Issue 16, item 8: examples/fleet_worker.py, run as a replica would run it.

Four replicas at once, each a separate interpreter started outside the repository (so
only the installed package is importable), share one session seeded on a real Redis or
PostgreSQL: every job gets an answer from the provider's userinfo endpoint (the
protected API here), and the expired access token costs exactly one refresh.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from oauth_auth import derive_secret_key
from oauth_auth._sealing import generate_key
from oauth_auth._store_url import KEY_ENV, store_from_url
from tests.support.hygiene import LEDGER
from tests.support.idp import IdP, obtain_tokens, refresh_count

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet_worker.py"
STORE_KEY = generate_key()
LEDGER.secret(STORE_KEY, "the example's store key")


@pytest.mark.parametrize("kind", ["redis", "postgres"])
def test_four_replicas_share_one_session(real_idp: IdP, kind: str, tmp_path: Path,
                                         request: pytest.FixtureRequest) -> None:
    server: Any = request.getfixturevalue(f"{kind}_server")
    url = server.url if kind == "redis" else server.dsn
    store: Any = store_from_url(url, {KEY_ENV: STORE_KEY})  # the example's defaults
    key = derive_secret_key("OAUTH_AUTH_", real_idp.client_id, real_idp.issuer)
    tokens = obtain_tokens(real_idp)
    LEDGER.secret(tokens["refresh_token"], "the example's seeded refresh token")
    store.set_secret(key, tokens["refresh_token"])  # what `oauth-auth login` would store
    store.delete_secret(key + "_AT")
    real_idp.reset_counts()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OAUTH_", "PYTHONPATH"))}
    env.update({"FLEET_STORE": url, "OAUTH_AUTH_STORE_KEY": STORE_KEY,
                "OAUTH_ISSUER": real_idp.issuer, "OAUTH_CLIENT_ID": real_idp.client_id,
                "API_URL": real_idp.userinfo_endpoint, "HOME": str(tmp_path),
                "OAUTH_AUTH_LOCK_DIR": str(tmp_path / "locks")})
    replicas = [subprocess.Popen([sys.executable, str(EXAMPLE), "--jobs", "2"], cwd=tmp_path,
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in replicas]
    for p, (out, err) in zip(replicas, outputs, strict=True):
        LEDGER.text("fleet example stderr", err)
        assert p.returncode == 0, out + err
        assert out.count(" -> 200") == 2, out
    counts = real_idp.counts()
    assert refresh_count(counts) == 1, counts
    assert refresh_count(counts, "invalid_grant") == 0, counts
    stored = store.get_secret(key)
    assert stored not in (None, tokens["refresh_token"])  # the rotation is on the server
    LEDGER.secret(stored, "the example's rotated refresh token")
    store.delete_secret(key)
    store.delete_secret(key + "_AT")
    store.close()
