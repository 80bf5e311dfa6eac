"""Unit tests of the sans-IO protocol helpers (`_protocol`).

Regression tests (bugs the reliability suite found) live next to the unit they cover.
"""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("header", [
    'Negotiate, Bearer error="insufficient_scope"',
    'Bearer, Bearer error="insufficient_scope"',
    'Basic dXNlcjpwYXNz, Bearer error="insufficient_scope", scope="admin"',
])
def test_a_bearer_challenge_after_a_bare_scheme_is_seen(header: str) -> None:
    from oauth_auth._protocol import parse_bearer_challenges, should_retry_401

    assert any(c.error == "insufficient_scope" for c in parse_bearer_challenges([header]))
    assert should_retry_401(401, [header]) is False
