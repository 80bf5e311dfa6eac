"""Unit tests of ToolHive's names and the one scope rule (`_keys`)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oauth_auth._keys import LOGIN_SCOPES, ensure_offline_access, normalize_scopes


@pytest.mark.parametrize(
    ("given_scopes", "expected"),
    [
        (["a b"], ["a", "b"]),
        (["a,b"], ["a", "b"]),
        (["a, b", " c\t", ""], ["a", "b", "c"]),
        (["b", "a", "b"], ["b", "a"]),
        ((), []),
        (["registry:read", "https://www.googleapis.com/auth/userinfo.email"],
         ["registry:read", "https://www.googleapis.com/auth/userinfo.email"]),
    ],
)
def test_every_way_of_writing_a_scope_list_is_one_list(
    given_scopes: list[str], expected: list[str]
) -> None:
    # Issue 12: the CLI split on commas and spaces, the profiles on spaces only, and a
    # login not at all; "a,b" from a config file reached the provider as one scope.
    assert normalize_scopes(given_scopes) == expected


def test_add_appends_what_is_absent_and_drop_removes() -> None:
    assert normalize_scopes(["email", "openid"], add=LOGIN_SCOPES) == [
        "email", "openid", "offline_access"]
    assert normalize_scopes(["openid", "email offline_access"], drop=LOGIN_SCOPES) == ["email"]


@given(st.lists(st.text(alphabet="ab ,\t", max_size=6), max_size=5))
def test_normalized_scopes_are_a_fixed_point(scopes: list[str]) -> None:
    once = normalize_scopes(scopes)
    assert normalize_scopes(once) == once
    assert len(set(once)) == len(once)
    assert all(s and not set(s) & set(" ,\t") for s in once)
    assert ensure_offline_access(once) == [*once, "offline_access"]
