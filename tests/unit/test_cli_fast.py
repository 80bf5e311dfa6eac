"""The cache-hit path of `oauth-auth token` (`oauth_auth._cli_fast`), with a fake Secret
Service read: what it answers, and everything it leaves to the full path.

The real Secret Service proof (the token, and no keyring, secretstorage, cryptography,
argparse or token source imported) is tests/e2e/test_cli_tokens.py.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from oauth_auth import _cli_fast, derive_secret_key, llm_access_token_env_var
from oauth_auth._config import Config
from oauth_auth._keyring_choice import BackendChoice

ISSUER = "https://idp.example.test"
FRESH = "|2099-01-01T00:00:00Z"

pytestmark = pytest.mark.usefixtures("isolated_config")


@pytest.fixture
def entries(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The fake Secret Service: keyring's recorded choice is its SecretService backend,
    and `read_once` reads this dict."""
    store: dict[str, str] = {}
    choice = BackendChoice("keyring.backends.SecretService.Keyring",
                           ("keyring.backends.SecretService.Keyring",), False, True,
                           (None, "default"))
    monkeypatch.setattr("oauth_auth._keyring_choice.cached_choice", lambda: choice)
    monkeypatch.setattr("oauth_auth._secret_service.read_once",
                        lambda service, name, **kw: store.get(f"{service}/{name}"))
    monkeypatch.delitem(sys.modules, "keyring", raising=False)
    monkeypatch.delenv("OAUTH_AUTH_STORE", raising=False)
    monkeypatch.delenv("OAUTH_AUTH_PROFILE", raising=False)
    return store


def serve(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int | None, str]:
    code = _cli_fast.cached_token(list(argv))
    return code, capsys.readouterr().out


def test_an_ad_hoc_hit_is_served(capsys: pytest.CaptureFixture[str],
                                 entries: dict[str, str]) -> None:
    key = derive_secret_key("OAUTH_AUTH_", "c", ISSUER)
    entries[f"oauth-auth/{key}_AT"] = "tok" + FRESH
    assert serve(capsys, "token", "--issuer", ISSUER, "--client-id", "c") == (0, "tok\n")
    assert serve(capsys, "token", f"--issuer={ISSUER}/", "--client-id=c") == (0, "tok\n")


def test_a_profile_registry_and_default_profile_use_their_own_keys(
    capsys: pytest.CaptureFixture[str], entries: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    Config().set_entry("profiles", "work", {"issuer": ISSUER, "client_id": "c"})
    Config().set_entry("registries", "https://reg.example.test", {"issuer": ISSUER,
                                                                  "client_id": "r"})
    work = derive_secret_key("OAUTH_AUTH_WORK_", "c", ISSUER)
    reg = derive_secret_key("REGISTRY_OAUTH_", "https://reg.example.test", ISSUER)
    entries[f"oauth-auth/{work}_AT"] = "work-tok" + FRESH
    entries[f"oauth-auth/__thv_registry_{reg}_AT"] = "reg-tok" + FRESH
    assert serve(capsys, "token", "--profile", "work") == (0, "work-tok\n")
    assert serve(capsys, "registry", "token", "--registry", "https://reg.example.test") == (
        0, "reg-tok\n")
    monkeypatch.setenv("OAUTH_AUTH_PROFILE", "work")
    assert serve(capsys, "token") == (0, "work-tok\n")
    # a profile whose prefix another profile has is the full path's to refuse
    Config().set_entry("profiles", "WORK", {"issuer": ISSUER, "client_id": "c"})
    assert serve(capsys, "token", "--profile", "work") == (None, "")


def test_the_llm_gateway_reads_the_environment_first_with_its_window(
    capsys: pytest.CaptureFixture[str], entries: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway = "https://llm.example.test"
    argv = ("llm", "token", "--gateway", gateway, "--issuer", ISSUER, "--client-id", "l")
    monkeypatch.setenv(llm_access_token_env_var(gateway, ISSUER), "env-tok" + FRESH)
    assert serve(capsys, *argv) == (0, "env-tok\n")
    from datetime import datetime, timedelta, timezone

    soon = (datetime.now(timezone.utc) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    monkeypatch.setenv(llm_access_token_env_var(gateway, ISSUER), f"env-tok|{soon}")
    assert serve(capsys, *argv) == (None, "")  # inside the gateway's 10-minute window


@pytest.mark.parametrize("extra", [["--json"], ["--debug"], ["--force-refresh"],
                                   ["--id-token"], ["--scope", "a", "--scope", "b"],
                                   ["--client-credentials"], ["positional"], ["--issuer"]])
def test_anything_else_takes_the_full_path(capsys: pytest.CaptureFixture[str],
                                           entries: dict[str, str], extra: list[str]) -> None:
    key = derive_secret_key("OAUTH_AUTH_", "c", ISSUER)
    entries[f"oauth-auth/{key}_AT"] = "tok" + FRESH
    assert serve(capsys, "token", "--issuer", ISSUER, "--client-id", "c", *extra) == (None, "")


def test_stale_split_other_stores_and_backends_take_the_full_path(
    capsys: pytest.CaptureFixture[str], entries: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = derive_secret_key("OAUTH_AUTH_", "c", ISSUER)
    argv = ("token", "--issuer", ISSUER, "--client-id", "c")
    entries[f"oauth-auth/{key}_AT"] = "tok|2000-01-01T00:00:00Z"
    assert serve(capsys, *argv) == (None, "")
    entries[f"oauth-auth/{key}_AT"] = "tok" + FRESH
    assert serve(capsys, *argv, "--min-valid", "9999999999") == (None, "")
    entries[f"oauth-auth/{key}_AT"] = "oauth-auth-split:2"
    assert serve(capsys, *argv) == (None, "")
    entries[f"oauth-auth/{key}_AT"] = "tok" + FRESH
    monkeypatch.setenv("OAUTH_AUTH_STORE", "redis://127.0.0.1:1")
    assert serve(capsys, *argv) == (None, "")
    monkeypatch.delenv("OAUTH_AUTH_STORE")
    other: Any = BackendChoice("keyrings.alt.file.PlaintextKeyring",
                               ("keyrings.alt.file.PlaintextKeyring",), False, True, None)
    monkeypatch.setattr("oauth_auth._keyring_choice.cached_choice", lambda: other)
    assert serve(capsys, *argv) == (None, "")
