"""Shared fixtures. The bench's parts live in tests/support and are loaded as plugins."""

pytest_plugins = [
    "tests.support.idp",
    "tests.support.secret_service",
    "tests.support.browser",
]
