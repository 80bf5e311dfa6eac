"""The secrets providers: one contract suite for all of them, then each one's own rules."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oauth_auth.errors import SecretsError
from oauth_auth.secrets import (
    SPLIT_PREFIX,
    ChainSecrets,
    EnvironmentSecrets,
    KeyringSecrets,
    MemorySecrets,
    ScopedSecrets,
    SecretsProvider,
    is_writable,
    part_name,
    split_value,
)
from tests.support.keyring_fakes import DictBackend

# --------------------------------------------------------------------------------------
# The contract, for every provider

PROVIDERS = [
    "memory",
    "scoped",
    "chain",
    "chain-with-env",
    "keyring-fake-split",
    pytest.param("keyring", marks=pytest.mark.keyring),
    pytest.param("keyring-split", marks=pytest.mark.keyring),
]


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[SecretsProvider]:
    kind = request.param
    if kind == "memory":
        yield MemorySecrets()
    elif kind == "scoped":
        yield ScopedSecrets(MemorySecrets(), "llm")
    elif kind == "chain":
        yield ChainSecrets(MemorySecrets(), MemorySecrets())
    elif kind == "chain-with-env":
        yield ChainSecrets(EnvironmentSecrets(prefix=f"OAUTH_AUTH_TEST_{uuid.uuid4().hex}_"),
                           MemorySecrets())
    elif kind == "keyring-fake-split":
        yield KeyringSecrets(backend=DictBackend(), max_value_length=32, lock_dir=tmp_path)
    else:
        request.getfixturevalue("secret_service")
        service = f"oauth-auth-test-{uuid.uuid4().hex[:8]}"
        # Values above 4,096 characters are split: the 64 KiB one into 16 parts.
        limit = 4096 if kind == "keyring-split" else None
        yield KeyringSecrets(service=service, max_value_length=limit)


VALUES = [
    pytest.param("plain-value", id="ascii"),
    pytest.param("ünïcødé ✓ 鍵 🔑 \U0001f600", id="unicode"),
    pytest.param("tok|2026-11-28T22:15:03Z", id="pipe"),
    pytest.param("a|b||c|", id="pipes"),
    pytest.param("line1\nline2\ttab \"quote\" 'single' \\backslash", id="control"),
    pytest.param("x" * 5000, id="5k"),
    pytest.param("🔑" * 3000, id="astral-6k-utf16"),
    pytest.param("".join(chr(33 + i % 90) for i in range(64 * 1024)), id="64KiB"),
    pytest.param(SPLIT_PREFIX + "3", id="looks-like-a-split-header"),
    pytest.param("", id="empty"),
]

NAMES = [
    "REGISTRY_OAUTH_48230903",
    "REGISTRY_OAUTH_48230903_AT",
    "with space",
    "slash/and\\backslash",
    "ünï-名前",
    "a|b:c=d;e,f",
    "dots.in.name",
]


def test_is_a_secrets_provider(provider: SecretsProvider) -> None:
    assert isinstance(provider, SecretsProvider)
    assert is_writable(provider)


def test_missing_is_none(provider: SecretsProvider) -> None:
    assert provider.get_secret("never-stored") is None


@pytest.mark.parametrize("value", VALUES)
def test_round_trip(provider: SecretsProvider, value: str) -> None:
    provider.set_secret("key", value)
    assert provider.get_secret("key") == value


@pytest.mark.parametrize("name", NAMES)
def test_odd_names(provider: SecretsProvider, name: str) -> None:
    provider.set_secret(name, f"value of {name}")
    assert provider.get_secret(name) == f"value of {name}"
    provider.delete_secret(name)
    assert provider.get_secret(name) is None


def test_overwrite(provider: SecretsProvider) -> None:
    provider.set_secret("key", "first")
    provider.set_secret("key", "second")
    assert provider.get_secret("key") == "second"


def test_overwrite_long_with_short_and_back(provider: SecretsProvider) -> None:
    long, longer = "L" * 9000, "M" * 13000
    provider.set_secret("key", long)
    provider.set_secret("key", "short")
    assert provider.get_secret("key") == "short"
    provider.set_secret("key", longer)
    assert provider.get_secret("key") == longer
    provider.set_secret("key", long)
    assert provider.get_secret("key") == long


def test_delete(provider: SecretsProvider) -> None:
    provider.set_secret("key", "value")
    provider.set_secret("other", "kept")
    provider.delete_secret("key")
    assert provider.get_secret("key") is None
    assert provider.get_secret("other") == "kept"


def test_delete_long_value(provider: SecretsProvider) -> None:
    provider.set_secret("key", "y" * 10000)
    provider.delete_secret("key")
    assert provider.get_secret("key") is None


def test_delete_missing_is_fine(provider: SecretsProvider) -> None:
    provider.delete_secret("never-stored")
    provider.set_secret("key", "value")
    provider.delete_secret("key")
    provider.delete_secret("key")
    assert provider.get_secret("key") is None


def test_concurrent_threads(provider: SecretsProvider) -> None:
    """8 threads, each writing and reading its own name, plus one shared name."""
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for round_ in range(3):
                provider.set_secret(f"thread-{index}", f"{index}-{round_}")
                assert provider.get_secret(f"thread-{index}") == f"{index}-{round_}"
                provider.set_secret("shared", f"{index}-{round_}")
                assert provider.get_secret("shared") is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {provider.get_secret(f"thread-{i}") for i in range(8)} == {f"{i}-2" for i in range(8)}


# --------------------------------------------------------------------------------------
# MemorySecrets


def test_memory_repr_has_no_values() -> None:
    memory = MemorySecrets()
    memory.set_secret("key", "super-secret-value")
    assert "super-secret-value" not in repr(memory)
    assert memory.names() == ["key"]
    assert len(memory) == 1


# --------------------------------------------------------------------------------------
# EnvironmentSecrets


def test_environment_reads_prefixed_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLHIVE_SECRET_MY_KEY", "from-env")
    env = EnvironmentSecrets()
    assert env.get_secret("MY_KEY") == "from-env"
    assert env.get_secret("OTHER_KEY") is None
    assert env.variable("MY_KEY") == "TOOLHIVE_SECRET_MY_KEY"


def test_environment_custom_prefix_and_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_PREFIX_A", "a")
    monkeypatch.setenv("MY_PREFIX_EMPTY", "")
    env = EnvironmentSecrets(prefix="MY_PREFIX_")
    assert env.get_secret("A") == "a"
    assert env.get_secret("EMPTY") is None


@pytest.mark.parametrize("action", ["set", "delete"])
def test_environment_refuses_writes(monkeypatch: pytest.MonkeyPatch, action: str) -> None:
    monkeypatch.setenv("TOOLHIVE_SECRET_MY_KEY", "from-env")
    env = EnvironmentSecrets()
    assert env.writable is False
    assert not is_writable(env)
    call = {
        "set": lambda: env.set_secret("MY_KEY", "new-secret-value"),
        "delete": lambda: env.delete_secret("MY_KEY"),
    }[action]
    with pytest.raises(SecretsError, match="read-only") as excinfo:
        call()
    assert "new-secret-value" not in str(excinfo.value)
    assert env.get_secret("MY_KEY") == "from-env"


# --------------------------------------------------------------------------------------
# ScopedSecrets


def test_scoped_names_exactly_like_toolhive() -> None:
    inner = MemorySecrets()
    scoped = ScopedSecrets(inner, "llm")
    scoped.set_secret("KEY", "v")
    assert inner.names() == ["__thv_llm_KEY"]
    assert inner.get_secret("__thv_llm_KEY") == "v"
    assert scoped.get_secret("KEY") == "v"
    assert scoped.scoped_name("KEY") == "__thv_llm_KEY"
    scoped.delete_secret("KEY")
    assert inner.names() == []


def test_scoped_environment_matches_llm_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    # llm_access_token_env_var("https://llm.example.com", "https://auth.example.com")
    variable = "TOOLHIVE_SECRET___thv_llm_LLM_OAUTH_d16a034b_AT"
    monkeypatch.setenv(variable, "tok|2099-01-01T00:00:00Z")
    scoped = ScopedSecrets(EnvironmentSecrets(), "llm")
    assert scoped.get_secret("LLM_OAUTH_d16a034b_AT") == "tok|2099-01-01T00:00:00Z"
    assert scoped.writable is False


def test_scoped_needs_a_scope() -> None:
    with pytest.raises(ValueError, match="scope"):
        ScopedSecrets(MemorySecrets(), "")


# --------------------------------------------------------------------------------------
# ChainSecrets


class FailingSecrets:
    """A provider whose backend is broken."""

    writable = True

    def __init__(self) -> None:
        self.calls = 0

    def _fail(self) -> SecretsError:
        self.calls += 1
        return SecretsError("backend is broken")

    def get_secret(self, name: str) -> str | None:
        raise self._fail()

    def set_secret(self, name: str, value: str) -> None:
        raise self._fail()

    def delete_secret(self, name: str) -> None:
        raise self._fail()


def test_chain_read_order_first_hit_wins() -> None:
    first = MemorySecrets({"a": "from-first"})
    second = MemorySecrets({"a": "x", "b": "from-second"})
    chain = ChainSecrets(first, second)
    assert chain.get_secret("a") == "from-first"
    assert chain.get_secret("b") == "from-second"
    assert chain.get_secret("c") is None


def test_chain_environment_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLHIVE_SECRET_K", "injected")
    chain = ChainSecrets(EnvironmentSecrets(), MemorySecrets({"K": "stored"}))
    assert chain.get_secret("K") == "injected"


def test_chain_read_error_does_not_hide_a_later_hit() -> None:
    broken = FailingSecrets()
    chain = ChainSecrets(broken, MemorySecrets({"a": "found"}))
    assert chain.get_secret("a") == "found"
    assert broken.calls == 1


def test_chain_read_error_raised_when_nobody_has_it() -> None:
    chain = ChainSecrets(MemorySecrets(), FailingSecrets(), MemorySecrets())
    with pytest.raises(SecretsError, match="broken"):
        chain.get_secret("a")


def test_chain_writes_fan_out_skipping_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLHIVE_SECRET_K", "injected")
    first, second = MemorySecrets(), MemorySecrets()
    chain = ChainSecrets(EnvironmentSecrets(), first, ScopedSecrets(EnvironmentSecrets(), "x"),
                         second)
    assert chain.writable
    chain.set_secret("K", "v")
    assert first.get_secret("K") == second.get_secret("K") == "v"
    chain.delete_secret("K")
    assert first.names() == second.names() == []
    assert chain.get_secret("K") == "injected"


def test_chain_write_tries_every_provider_then_raises() -> None:
    broken, memory = FailingSecrets(), MemorySecrets()
    chain = ChainSecrets(broken, memory)
    with pytest.raises(SecretsError, match="broken"):
        chain.set_secret("a", "v")
    assert memory.get_secret("a") == "v"
    with pytest.raises(SecretsError, match="broken"):
        chain.delete_secret("a")
    assert memory.get_secret("a") is None


@pytest.mark.parametrize("action", ["set", "delete"])
def test_chain_without_writable_provider_refuses_writes(action: str) -> None:
    chain = ChainSecrets(EnvironmentSecrets(), EnvironmentSecrets(prefix="OTHER_"))
    assert chain.writable is False
    call = {"set": lambda: chain.set_secret("a", "v"), "delete": lambda: chain.delete_secret("a")}
    with pytest.raises(SecretsError, match="no provider in the chain is writable"):
        call[action]()
    assert ChainSecrets().writable is False
    assert ChainSecrets().get_secret("a") is None


def test_is_writable_defaults_to_true_for_plain_providers() -> None:
    class Minimal:
        def get_secret(self, name: str) -> str | None:
            return None

        def set_secret(self, name: str, value: str) -> None:
            pass

        def delete_secret(self, name: str) -> None:
            pass

    assert isinstance(Minimal(), SecretsProvider)
    assert is_writable(Minimal())
    assert ChainSecrets(Minimal()).writable


# --------------------------------------------------------------------------------------
# Splitting


@settings(max_examples=300, deadline=None)
@given(value=st.text(), limit=st.integers(min_value=2, max_value=40))
def test_split_join_property(value: str, limit: int) -> None:
    parts = split_value(value, limit)
    assert "".join(parts) == value
    assert parts
    for part in parts:
        assert len(part.encode("utf-16-le")) // 2 <= limit
        assert part or value == ""


@pytest.fixture(scope="module")
def lock_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("locks")


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.text(max_size=300), min_size=1, max_size=6))
def test_split_storage_leaves_no_stale_parts(values: list[str], lock_dir: Path) -> None:
    """After any sequence of writes, the backend holds exactly the last value's entries."""
    backend = DictBackend()
    secrets = KeyringSecrets(service="svc", backend=backend, max_value_length=32, timeout=None,
                             lock_dir=lock_dir)
    for value in values:
        secrets.set_secret("name", value)
        assert secrets.get_secret("name") == value
        parts = split_value(value, 32) if (
            value.startswith(SPLIT_PREFIX) or len(value.encode("utf-16-le")) // 2 > 32
        ) else []
        expected = {"name"} | {part_name("name", i) for i in range(1, len(parts) + 1)}
        assert backend.usernames("svc") == expected
    secrets.delete_secret("name")
    assert backend.usernames("svc") == set()
