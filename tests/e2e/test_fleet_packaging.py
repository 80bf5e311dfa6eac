"""Issue 16, item 4: the fleet stores come with install extras and never load unless used."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

HEAVY = ("redis", "psycopg", "cryptography")


def _loaded(code: str) -> list[str]:
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_import_oauth_auth_loads_neither_redis_nor_psycopg() -> None:
    assert _loaded("import oauth_auth; from oauth_auth import OAuthTokenSource, OIDCParams") == []
    # Naming the class is lazy too (only making one imports its driver).
    assert _loaded("import oauth_auth; oauth_auth.RedisSecrets; oauth_auth.PostgresSecrets") == []


def test_making_a_store_loads_only_its_own_driver() -> None:
    key = "from oauth_auth._sealing import generate_key; k = generate_key()\n"
    redis_only = _loaded(key + "import oauth_auth; oauth_auth.RedisSecrets("
                         "'redis://127.0.0.1:1/0', encryption_key=k)")
    assert redis_only == ["redis", "cryptography"]
    pg_only = _loaded(key + "import oauth_auth; oauth_auth.PostgresSecrets("
                      "'postgresql://u@127.0.0.1:1/db', encryption_key=k)")
    assert pg_only == ["psycopg", "cryptography"]


def test_the_install_extras_name_the_drivers() -> None:
    requires = metadata.requires("oauth-auth") or []
    extras = {r.split(";")[0].strip(): r.split("extra ==")[-1].strip(' "\'')
              for r in requires if "extra ==" in r}
    assert extras.get("redis>=5") == "redis"
    assert extras.get("psycopg[binary]>=3.1") == "postgres"
    crypto = [r for r in requires if r.startswith("cryptography")]
    assert {r.split("extra ==")[-1].strip(' "\'') for r in crypto} == {"redis", "postgres"}
    base = [r for r in requires if "extra ==" not in r]
    assert not [r for r in base if r.startswith(HEAVY)]
