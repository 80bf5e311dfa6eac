"""The command line on a fleet store: `OAUTH_AUTH_STORE` (or the config file's `store`)
points `oauth-auth token` at Redis or PostgreSQL, against the real provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from oauth_auth import derive_secret_key
from oauth_auth._sealing import generate_key
from oauth_auth._store_url import store_from_url
from tests.support.hygiene import LEDGER
from tests.support.idp import IdP, obtain_tokens, refresh_count

ROOT = Path(__file__).resolve().parents[2]
STORE_KEY = generate_key()
LEDGER.secret(STORE_KEY, "the CLI store's encryption key")


@pytest.fixture(params=["redis", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    unique = "cli_" + uuid.uuid4().hex[:8]
    if request.param == "redis":
        return f"{request.getfixturevalue('redis_server').url}?namespace={unique}"
    return f"{request.getfixturevalue('postgres_server').dsn}?table={unique}"


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "oauth_auth", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120, check=False)
    LEDGER.text("cli-stderr", done.stderr)
    return done


@pytest.mark.parametrize("via", ["env", "config"])
def test_token_uses_the_store_the_url_names(real_idp: IdP, store_url: str, tmp_path: Path,
                                            via: str) -> None:
    store: Any = store_from_url(store_url, {"OAUTH_AUTH_STORE_KEY": STORE_KEY})
    key = derive_secret_key("OAUTH_AUTH_", real_idp.client_id, real_idp.issuer)
    seeded = str(obtain_tokens(real_idp)["refresh_token"])
    LEDGER.secret(seeded, "seeded refresh token")
    store.set_secret(key, seeded)
    real_idp.reset_counts()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"version": 1, "store": store_url if via == "config" else ""}))
    env = {**os.environ, "OAUTH_AUTH_CONFIG": str(config), "OAUTH_AUTH_STORE_KEY": STORE_KEY,
           "OAUTH_AUTH_LOCK_DIR": str(tmp_path / "locks"), "HOME": str(tmp_path),
           "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}  # never the keychain
    env.pop("OAUTH_AUTH_STORE", None)
    if via == "env":
        env["OAUTH_AUTH_STORE"] = store_url
    first = cli(["token", "--issuer", real_idp.issuer, "--client-id", real_idp.client_id], env)
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip()
    LEDGER.secret(token, "CLI token")
    assert refresh_count(real_idp.counts()) == 1
    rotated = store.get_secret(key)
    assert rotated not in (None, seeded)  # the rotation was written back to the server
    LEDGER.secret(rotated, "rotated refresh token")
    second = cli(["token", "--issuer", real_idp.issuer, "--client-id", real_idp.client_id], env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == token  # a tier-2 hit from the server
    assert refresh_count(real_idp.counts()) == 1
    store.close()
