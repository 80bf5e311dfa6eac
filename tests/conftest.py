"""Shared fixtures. The bench's parts live in tests/support and are loaded as plugins."""

from collections.abc import Iterator

import pytest

from oauth_auth._discovery import clear_discovery_cache

# The support modules import each other; mark the package for assertion rewriting before
# any of them is imported, or pytest warns (and filterwarnings=error fails the run).
pytest.register_assert_rewrite("tests.support")

pytest_plugins = [
    "tests.support.idp",
    "tests.support.secret_service",
    "tests.support.browser",
    "tests.support.api",
    "tests.support.hygiene",
]


@pytest.fixture(autouse=True)
def _fresh_discovery() -> Iterator[None]:
    """Discovery is cached per process and issuer; each test starts without it."""
    clear_discovery_cache()
    yield
    clear_discovery_cache()
