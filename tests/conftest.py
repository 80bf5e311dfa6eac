"""Shared fixtures. The bench's parts live in tests/support and are loaded as plugins."""

import pytest

# The support modules import each other; mark the package for assertion rewriting before
# any of them is imported, or pytest warns (and filterwarnings=error fails the run).
pytest.register_assert_rewrite("tests.support")

pytest_plugins = [
    "tests.support.idp",
    "tests.support.secret_service",
    "tests.support.browser",
    "tests.support.api",
]
