"""Store URLs (`oauth_auth._store_url`) and the profiles' choice of store (`default_store`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oauth_auth import ConfigError, KeyringSecrets, PostgresSecrets, RedisSecrets
from oauth_auth._config import Config
from oauth_auth._sealing import generate_key
from oauth_auth._store_url import store_from_url
from oauth_auth.profiles import default_store

KEY = generate_key()


def test_redis_urls_with_our_own_parameters_taken_out() -> None:
    store = store_from_url("redis://127.0.0.1:6399/2?namespace=app&lock_lease=12",
                           {"OAUTH_AUTH_STORE_KEY": KEY})
    assert isinstance(store, RedisSecrets)
    assert store.namespace == "app"
    assert store.lock_lease == 12.0
    assert store.where == "redis://127.0.0.1:6399/2"
    kwargs = store._client.connection_pool.connection_kwargs
    assert kwargs["db"] == 2  # the driver got the URL without our parameters
    assert "namespace" not in kwargs


def test_postgres_urls_and_both_schemes() -> None:
    for scheme in ("postgresql", "postgres"):
        store = store_from_url(f"{scheme}://u@127.0.0.1:5499/db?table=tok&connect_timeout=3",
                               {"OAUTH_AUTH_STORE_KEY": KEY})
        assert isinstance(store, PostgresSecrets)
        assert store.table == "tok"
        assert store.where == "postgresql://u@127.0.0.1:5499/db"
        assert "table=" not in store._dsn
        assert "connect_timeout=3" in store._dsn  # libpq's own parameters stay


def test_keys_from_the_environment_or_a_file(tmp_path: Path) -> None:
    old, new = generate_key(), generate_key()
    writer = store_from_url("redis://127.0.0.1:1/0", {"OAUTH_AUTH_STORE_KEY": old})
    sealed = writer._sealer.seal("K", "value-0123456789")
    rotated = store_from_url("redis://127.0.0.1:1/0",
                             {"OAUTH_AUTH_STORE_KEY": f"{new}, {old}"})
    assert rotated._sealer.open("K", sealed) == "value-0123456789"
    keyfile = tmp_path / "key"
    keyfile.write_text(new + "\n" + old + "\n")
    from_file = store_from_url("redis://127.0.0.1:1/0", {"OAUTH_AUTH_STORE_KEY_FILE": str(keyfile)})
    assert from_file._sealer.open("K", sealed) == "value-0123456789"
    with pytest.raises(ConfigError, match="key file"):
        store_from_url("redis://x/0", {"OAUTH_AUTH_STORE_KEY_FILE": str(tmp_path / "none")})


def test_no_key_needs_the_plaintext_switch() -> None:
    with pytest.raises(ConfigError) as caught:
        store_from_url("redis://127.0.0.1:1/0", {})
    assert "encryption_key" in str(caught.value)
    plain = store_from_url("redis://127.0.0.1:1/0", {"OAUTH_AUTH_STORE_ALLOW_PLAINTEXT": "1"})
    assert not plain._sealer.encrypted


@pytest.mark.parametrize("url", ["https://example.com/x", "keyring", "redis://h/0?lock_lease=x"])
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        store_from_url(url, {"OAUTH_AUTH_STORE_KEY": KEY})


def test_default_store_env_then_config_then_keyring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OAUTH_AUTH_STORE", raising=False)
    monkeypatch.setenv("OAUTH_AUTH_STORE_KEY", KEY)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"version": 1, "store": "postgresql://u@127.0.0.1:1/db"}))
    config = Config(str(path))
    assert isinstance(default_store(config), PostgresSecrets)
    monkeypatch.setenv("OAUTH_AUTH_STORE", "redis://127.0.0.1:1/0")
    assert isinstance(default_store(config), RedisSecrets)  # the environment wins
    monkeypatch.delenv("OAUTH_AUTH_STORE")
    path.write_text(json.dumps({"version": 1}))
    assert isinstance(default_store(Config(str(path))), KeyringSecrets)
    path.write_text(json.dumps({"version": 1, "store": 42}))
    with pytest.raises(ConfigError):
        default_store(Config(str(path)))
