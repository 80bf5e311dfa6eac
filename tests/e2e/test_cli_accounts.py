"""Accounts through the console script, against the real provider and Secret Service.

Each test is a trap of issue 14 that today's users fell into, and fails on the code
before the fix: profiles that shared one secrets entry (logging out of one logged out
the other), a login that opened the browser and reported success with a store that
kept nothing, a trailing slash that made another session, `logout` of an unknown profile
exiting 4, login-only flags accepted by `token`, and registry sessions kept under
another name than ToolHive's `__thv_registry_<key>`.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from oauth_auth import KeyringSecrets, derive_secret_key
from tests.support.cli import browser_program, browser_urls, cli, cli_env
from tests.support.hygiene import LEDGER
from tests.support.idp import IdP
from tests.support.servers import free_port

pytestmark = [pytest.mark.idp, pytest.mark.keyring]


@pytest.fixture
def env(secret_service: Any, tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path, secret_service.subprocess_env())


def unique(name: str) -> str:
    """A profile name of this test run (the Secret Service is shared by the session)."""
    return f"{name}-{uuid.uuid4().hex[:6]}"


def login(env: dict[str, str], browser_dir: Path, idp: IdP, *target: str,
          user: str = "alice", extra: tuple[str, ...] = ()) -> Any:
    program = browser_program(browser_dir, login=user)
    return cli(["login", *target, "--issuer", idp.issuer, "--client-id", idp.client_id,
                "--callback-port", str(free_port()), *extra],
               {**env, "BROWSER": str(program)})


def token(env: dict[str, str], *argv: str) -> Any:
    result = cli(["token", *argv], env)
    if result.returncode == 0:
        LEDGER.secret(result.stdout.strip(), "CLI access token")
    return result


def test_two_profiles_on_one_client_are_two_accounts(real_idp: IdP, env: dict[str, str],
                                                     tmp_path: Path) -> None:
    work, dev = unique("work"), unique("dev")
    first = login(env, tmp_path / "b1", real_idp, "--profile", work, user="alice")
    assert first.returncode == 0, first.stderr
    second = login(env, tmp_path / "b2", real_idp, "--profile", dev, user="bob")
    assert second.returncode == 0, second.stderr
    # The success line says who logged in.
    assert " as alice" in first.stderr
    assert " as bob" in second.stderr

    work_token, dev_token = token(env, "--profile", work), token(env, "--profile", dev)
    assert (work_token.returncode, dev_token.returncode) == (0, 0)
    assert work_token.stdout != dev_token.stdout
    status = cli(["status", "--profile", work], env)
    assert "logged in as:  alice" in status.stdout, status.stdout

    # Logging out of dev leaves work logged in.
    assert cli(["logout", "--profile", dev], env).returncode == 0
    assert token(env, "--profile", dev).returncode == 4
    again = token(env, "--profile", work)
    assert (again.returncode, again.stdout) == (0, work_token.stdout)
    assert real_idp.token_requests("authorization_code") == 2
    cli(["logout", "--profile", work], env)


def test_a_profile_sharing_another_ones_key_is_refused(real_idp: IdP, env: dict[str, str],
                                                       tmp_path: Path) -> None:
    work = unique("work")
    assert login(env, tmp_path / "b1", real_idp, "--profile", work).returncode == 0
    clash = login(env, tmp_path / "b2", real_idp, "--profile", work.upper())
    assert clash.returncode == 1
    assert clash.stdout == ""
    assert repr(work) in clash.stderr  # names the other profile
    assert browser_urls(tmp_path / "b2") == []
    assert real_idp.token_requests("authorization_code") == 1
    cli(["logout", "--profile", work], env)


def test_login_with_a_store_that_keeps_nothing_fails_before_the_browser(
    real_idp: IdP, env: dict[str, str], tmp_path: Path
) -> None:
    failing = {**env, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    result = login(failing, tmp_path / "b", real_idp, "--profile", unique("p"))
    assert result.returncode == 1, result.stderr
    assert "no usable keyring backend" in result.stderr
    assert "Logged in" not in result.stderr
    assert browser_urls(tmp_path / "b") == []  # checked before the browser opened
    assert real_idp.counts()["token"] == {}


def test_an_issuer_with_a_trailing_slash_is_the_same_session(
    real_idp: IdP, env: dict[str, str]
) -> None:
    key = derive_secret_key("OAUTH_AUTH_", real_idp.client_id, real_idp.issuer)
    store = KeyringSecrets(service="oauth-auth")
    cached = "trailing-slash-access-token-" + uuid.uuid4().hex
    LEDGER.secret(cached, "seeded access token")
    store.set_secret(key + "_AT", f"{cached}|2099-01-01T00:00:00Z")
    try:
        for issuer in (real_idp.issuer, real_idp.issuer + "/"):
            result = token(env, "--issuer", issuer, "--client-id", real_idp.client_id)
            assert (result.returncode, result.stdout) == (0, cached + "\n"), result.stderr
    finally:
        store.delete_secret(key + "_AT")


def test_unknown_profiles_and_files_are_named(real_idp: IdP, env: dict[str, str],
                                              tmp_path: Path) -> None:
    work = unique("work")
    assert login(env, tmp_path / "b", real_idp, "--profile", work).returncode == 0
    # logout of a profile that does not exist: nothing to do, which is a success
    ghost = cli(["logout", "--profile", "ghost"], env)
    assert (ghost.returncode, ghost.stdout) == (0, ""), ghost.stderr
    # token names the profiles that do exist
    missing = cli(["token", "--profile", "ghost"], env)
    assert missing.returncode == 4
    assert work in missing.stderr
    # a config file that is not there is called that
    nofile = cli(["token", "--profile", work, "--config", str(tmp_path / "missing.json")], env)
    assert nofile.returncode == 4
    assert f"no such file: {tmp_path / 'missing.json'}" in nofile.stderr
    cli(["logout", "--profile", work], env)


@pytest.mark.parametrize("command", ["token", "status", "logout"])
@pytest.mark.parametrize("flag", [["--no-browser"], ["--device"], ["--callback-port", "9"],
                                  ["--preset", "google"], ["--client-secret-stdin"]])
def test_login_only_flags_belong_to_login(command: str, flag: list[str],
                                          tmp_path: Path) -> None:
    env = cli_env(tmp_path, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    adhoc = ["--issuer", "https://idp.example.test", "--client-id", "c"]
    result = cli([command, *adhoc, *flag], env)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert "unrecognized arguments" in result.stderr
    shown = cli([command, "--help"], env)
    assert flag[0] not in shown.stdout
    assert flag[0] in cli(["login", "--help"], env).stdout


def test_registry_sessions_are_scoped_as_toolhive_does(real_idp: IdP, env: dict[str, str],
                                                       tmp_path: Path) -> None:
    registry = f"https://registry-{uuid.uuid4().hex[:6]}.example.test"
    result = cli(["registry", "login", "--registry", registry, "--issuer", real_idp.issuer,
                  "--client-id", real_idp.client_id, "--callback-port", str(free_port())],
                 {**env, "BROWSER": str(browser_program(tmp_path / "b"))})
    assert result.returncode == 0, result.stderr
    key = derive_secret_key("REGISTRY_OAUTH_", registry, real_idp.issuer)
    store = KeyringSecrets(service="oauth-auth")
    stored = store.get_secret(f"__thv_registry_{key}")
    assert stored
    LEDGER.secret(stored, "registry refresh token")
    assert store.get_secret(key) is None
    served = cli(["registry", "token", "--registry", registry], env)
    assert served.returncode == 0, served.stderr
    LEDGER.secret(served.stdout.strip(), "registry access token")
    assert cli(["registry", "logout", "--registry", registry], env).returncode == 0
    assert store.get_secret(f"__thv_registry_{key}") is None
