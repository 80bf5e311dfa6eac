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


# --- ToolHive's names, spelled once -----------------------------------------------------------


def test_the_names_compose_as_toolhive_reads_them() -> None:
    from oauth_auth import EnvironmentSecrets, ScopedSecrets, llm_access_token_env_var
    from oauth_auth._keys import (
        LLM_KEY_PREFIX,
        derive_secret_key,
        env_access_token_var,
        scoped_name,
    )
    from oauth_auth.secrets import MemorySecrets

    assert scoped_name("llm", "K") == "__thv_llm_K"
    assert ScopedSecrets(MemorySecrets(), "llm").scoped_name("K") == "__thv_llm_K"
    assert EnvironmentSecrets().variable("K_AT") == env_access_token_var("K")
    assert env_access_token_var("K") == "TOOLHIVE_SECRET_K_AT"
    key = derive_secret_key(LLM_KEY_PREFIX, "https://llm", "https://idp")
    assert llm_access_token_env_var("https://llm", "https://idp") == (
        f"TOOLHIVE_SECRET___thv_llm_{key}_AT") == env_access_token_var(key, "llm")


def test_toolhive_names_are_spelled_only_in_keys() -> None:
    """Issue 12: `__thv_`, `TOOLHIVE_SECRET_` and `_AT` were written out in several modules;
    a string constant (docstrings aside) holding one of them outside `_keys` is a second
    spelling."""
    import ast
    from pathlib import Path

    import oauth_auth

    package = Path(oauth_auth.__file__).parent
    found: list[str] = []
    for path in sorted(package.glob("*.py")):
        if path.name == "_keys.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.value) for node in ast.walk(tree)
                      if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and id(node) not in docstrings
                    and ("__thv_" in node.value or "TOOLHIVE_SECRET" in node.value
                         or node.value.endswith("_AT")
                         or node.value in ("LLM_OAUTH_", "REGISTRY_OAUTH_"))):
                found.append(f"{path.name}:{node.lineno}: {node.value!r}")
    assert len(list(package.glob("*.py"))) > 20
    assert found == []


def test_same_url_ignores_only_a_trailing_slash() -> None:
    from oauth_auth._config import existing_key
    from oauth_auth._keys import same_url

    assert same_url("https://idp/realms/a/", "https://idp/realms/a")
    assert not same_url("https://idp/realms/a", "https://idp/realms/A")
    assert not same_url("https://idp/a", "https://idp/a/b")
    # The config entries and the issuer check use the same rule.
    entries = {"https://r.example/": {}, "https://other/": {}}
    assert existing_key(entries, "https://r.example", "registries") == "https://r.example/"
    assert existing_key(entries, "https://r.example", "profiles") == "https://r.example"


@pytest.mark.parametrize("bad", ["openid email", ["openid", "a b"], ["openid", ""], [3]])
def test_one_check_for_scopes_given_in_code(bad: object) -> None:
    """OIDCParams and the machine grants refuse the same scope lists (one rule)."""
    from oauth_auth import ClientCredentials, ConfigError, OIDCParams

    with pytest.raises(ConfigError) as params_error:
        OIDCParams("https://idp.example.test", "cli", scopes=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as grant_error:
        ClientCredentials(scopes=bad)  # type: ignore[arg-type]
    assert params_error.value.message.split(" must ")[-1] == (
        grant_error.value.message.split(" must ")[-1])
