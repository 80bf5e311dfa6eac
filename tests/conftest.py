"""Shared fixtures. The bench's parts live in tests/support and are loaded as plugins."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from oauth_auth._config import CONFIG_ENV
from oauth_auth._discovery import clear_discovery_cache

# The support modules import each other; mark the package for assertion rewriting before
# any of them is imported, or pytest warns (and filterwarnings=error fails the run).
pytest.register_assert_rewrite("tests.support")

pytest_plugins = [
    "tests.support.idp",
    "tests.support.dot",
    "tests.support.secret_service",
    "tests.support.browser",
    "tests.support.api",
    "tests.support.hygiene",
    "tests.support.redis_server",
    "tests.support.postgres_server",
    "tests.support.mcp",
    "tests.support.proxy",
    "tests.support.ci_issuer",
]


@pytest.fixture(autouse=True)
def _fresh_discovery() -> Iterator[None]:
    """Discovery is cached per process and issuer; each test starts without it."""
    clear_discovery_cache()
    yield
    clear_discovery_cache()


@pytest.fixture
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config file and lock directory of the test's own (CLI and profile tests)."""
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "cfg" / "config.json"))
    monkeypatch.setenv("OAUTH_AUTH_LOCK_DIR", str(tmp_path / "locks"))


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    """Where `isolated_config` puts the config file."""
    return tmp_path / "cfg" / "config.json"


@pytest.fixture
def fake_idp() -> Any:
    """A fresh fake OAuth provider on httpx.MockTransport (tests.support.fakes).

    `real_idp` (tests/support/idp.py) is the real oidc-provider on loopback.
    """
    from tests.support.fakes import FakeProvider  # after register_assert_rewrite

    return FakeProvider()
