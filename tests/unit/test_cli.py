"""The oauth-auth command: every command and exit code, in process and as a console script.

In-process tests call `main(argv)` with a MemorySecrets store and the MockTransport provider
injected through `cli._session_options`. The subprocess tests run the installed console
script (or `python -m oauth_auth`) against the real provider (tests/support/idp.py) and the
real Secret Service (tests/support/secret_service.py), or with keyring's `fail` backend to
prove the LLM environment path needs no keyring at all.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

from oauth_auth import (
    KeyringSecrets,
    MemorySecrets,
    OAuthTokenSource,
    derive_secret_key,
    llm_access_token_env_var,
    registry_auth,
)
from oauth_auth import cli as cli_module
from oauth_auth._config import CONFIG_ENV, Config
from oauth_auth._token import format_rfc3339
from oauth_auth.cli import main
from tests.support.fakes import ISSUER, FakeProvider
from tests.support.idp import IdP, obtain_tokens, refresh_count
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
CLIENT = "cli"
ADHOC_KEY = derive_secret_key("OAUTH_AUTH_", CLIENT, ISSUER)
ADHOC = ["--issuer", ISSUER, "--client-id", CLIENT]
REGISTRY_URL = "https://registry.example.test"
#: ToolHive's scope of registry secrets: `__thv_registry_<key>` (DESIGN, Release 2).
REG = "__thv_registry_"
GATEWAY_URL = "https://llm.example.test"
HEAVY = ("httpx", "requests", "authlib", "joserfc")


def _at(token: str, seconds: float) -> str:
    when = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return f"{token}|{format_rfc3339(when)}"


pytestmark = pytest.mark.usefixtures("isolated_config")


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, fake_idp: FakeProvider) -> MemorySecrets:
    """The CLI's secrets store and provider transport, injected for in-process runs."""
    secrets = MemorySecrets()
    monkeypatch.setattr(cli_module, "_session_options", {
        "secrets_provider": secrets, "transport": fake_idp.transport(), "max_retries": 0,
    })
    return secrets


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("oauth-auth: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------ token


def test_token_cache_hit_prints_exactly_the_token(
    capsys: pytest.CaptureFixture[str], store: MemorySecrets, fake_idp: FakeProvider
) -> None:
    store.set_secret(ADHOC_KEY + "_AT", _at("cached-at", 3600))
    code, out, err = run(capsys, "token", *ADHOC)
    assert (code, out, err) == (0, "cached-at\n", "")
    assert sum(fake_idp.counts.values()) == 0


def test_token_refreshes_with_the_stored_refresh_token(
    capsys: pytest.CaptureFixture[str], store: MemorySecrets, fake_idp: FakeProvider
) -> None:
    store.set_secret(ADHOC_KEY, fake_idp.seed("rt-0"))
    code, out, err = run(capsys, "token", *ADHOC)
    assert (code, out, err) == (0, "at-1\n", "")
    assert fake_idp.counts["refresh"] == 1
    assert store.get_secret(ADHOC_KEY) == "rt-1"
    # A second run is served from the shared cache: no second refresh.
    assert run(capsys, "token", *ADHOC) == (0, "at-1\n", "")
    assert fake_idp.counts["refresh"] == 1


def test_token_nothing_stored_exits_4_with_the_login_command(
    capsys: pytest.CaptureFixture[str], store: MemorySecrets, fake_idp: FakeProvider
) -> None:
    code, out, err = run(capsys, "token", *ADHOC)
    assert code == 4
    assert out == ""
    line = _one_error_line(err)
    assert line.endswith(f"run: oauth-auth login --issuer {ISSUER} --client-id {CLIENT}")
    assert sum(fake_idp.counts.values()) == 0


def test_token_dead_session_exits_4(
    capsys: pytest.CaptureFixture[str], store: MemorySecrets, fake_idp: FakeProvider
) -> None:
    store.set_secret(ADHOC_KEY, "rt-revoked")
    code, out, err = run(capsys, "token", *ADHOC)
    assert (code, out) == (4, "")
    line = _one_error_line(err)
    assert "invalid_grant" in line
    assert "run: oauth-auth login" in line
    assert "rt-revoked" not in err
    assert fake_idp.counts["invalid_grant"] == 1
    assert store.get_secret(ADHOC_KEY) is None


def test_token_provider_down_exits_1(
    capsys: pytest.CaptureFixture[str], store: MemorySecrets, fake_idp: FakeProvider
) -> None:
    store.set_secret(ADHOC_KEY, fake_idp.seed("rt-0"))
    fake_idp.faults.append((503, {"error": "temporarily_unavailable"}, {}))
    code, out, err = run(capsys, "token", *ADHOC)
    assert (code, out) == (1, "")
    _one_error_line(err)
    assert store.get_secret(ADHOC_KEY) == "rt-0"  # nothing deleted on a transient failure


def test_token_secrets_failure_exits_1_with_the_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.test_profiles import BrokenStore

    monkeypatch.setattr(cli_module, "_session_options", {"secrets_provider": BrokenStore()})
    code, out, err = run(capsys, "token", *ADHOC)
    assert (code, out) == (1, "")
    assert "no usable keyring backend" in _one_error_line(err)


def test_debug_shows_the_traceback(
    capsys: pytest.CaptureFixture[str], store: MemorySecrets
) -> None:
    code, _, err = run(capsys, "--debug", "token", *ADHOC)
    assert code == 4
    assert "Traceback" in err
    code, _, err = run(capsys, "token", *ADHOC, "--debug")
    assert code == 4
    assert "Traceback" in err


def test_unexpected_error_is_one_line_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, store: MemorySecrets
) -> None:
    def boom(self: OAuthTokenSource) -> str:
        raise RuntimeError("kaput")

    monkeypatch.setattr(OAuthTokenSource, "token", boom)
    code, out, err = run(capsys, "token", *ADHOC)
    assert (code, out) == (1, "")
    assert "unexpected RuntimeError: kaput" in _one_error_line(err)


# ------------------------------------------------------------------------------ usage


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["token"],
        ["token", "--issuer", ISSUER],
        ["token", "--bogus"],
        ["frobnicate"],
        ["registry"],
        ["registry", "token"],
        ["llm", "token", "--issuer", ISSUER, "--client-id", CLIENT],
        ["token", *ADHOC, "--callback-port", "http"],
        ["token", *ADHOC, "--callback-port", "70000"],
        ["login", *ADHOC, "--device", "--no-browser"],
        ["login"],
        ["status", "--json", "--extra"],
    ],
)
def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str], store: MemorySecrets,
                           argv: list[str]) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert "error:" in err


@pytest.mark.parametrize(
    "argv",
    [[], ["login"], ["token"], ["logout"], ["status"], ["registry"], ["registry", "login"],
     ["registry", "token"], ["registry", "logout"], ["registry", "status"], ["llm"],
     ["llm", "login"], ["llm", "token"], ["llm", "logout"], ["llm", "status"]],
)
def test_help_for_every_command_has_examples(capsys: pytest.CaptureFixture[str],
                                             argv: list[str]) -> None:
    code, out, _ = run(capsys, *argv, "--help")
    assert code == 0
    assert "examples:" in out
    assert "usage: oauth-auth" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from oauth_auth import __version__

    assert run(capsys, "--version") == (0, f"oauth-auth {__version__}\n", "")


# ------------------------------------------------------------------------------ status


def test_status_reports_tiers_without_secrets(
    capsys: pytest.CaptureFixture[str], store: MemorySecrets, fake_idp: FakeProvider
) -> None:
    store.set_secret(ADHOC_KEY, "refresh-secret-value")
    store.set_secret(ADHOC_KEY + "_AT", _at("access-secret-value", 1800))
    code, out, err = run(capsys, "status", *ADHOC)
    assert code == 0
    assert "secret-value" not in out + err
    assert f"issuer:        {ISSUER}" in out
    assert f"client id:     {CLIENT}" in out
    assert "refresh token: stored" in out
    assert "access token:  cached, valid until" in out
    assert "usable:        yes" in out
    assert sum(fake_idp.counts.values()) == 0

    code, out, err = run(capsys, "status", *ADHOC, "--json")
    assert code == 0
    assert "secret-value" not in out + err
    info = json.loads(out)
    assert info["usable"] is True
    assert info["access_token"]["present"] is True
    assert info["access_token"]["usable"] is True
    assert info["refresh_token"]["present"] is True
    assert info["key"] == ADHOC_KEY
    assert info["secrets_backend"] == "MemorySecrets"


def test_status_nothing_usable_exits_4(
    capsys: pytest.CaptureFixture[str], store: MemorySecrets
) -> None:
    code, out, err = run(capsys, "status", *ADHOC)
    assert code == 4
    assert "access token:  none" in out
    assert "refresh token: none" in out
    assert f"run: oauth-auth login --issuer {ISSUER} --client-id {CLIENT}" in err
    # An expired access token alone is not usable either.
    store.set_secret(ADHOC_KEY + "_AT", _at("old-secret-value", -60))
    code, out, err = run(capsys, "status", *ADHOC, "--json")
    assert code == 4
    assert "old-secret-value" not in out + err
    info = json.loads(out)
    assert info["access_token"]["present"] is True
    assert info["access_token"]["usable"] is False


def test_status_refresh_token_alone_is_usable(
    capsys: pytest.CaptureFixture[str], store: MemorySecrets
) -> None:
    store.set_secret(ADHOC_KEY, "refresh-secret-value")
    code, out, err = run(capsys, "status", *ADHOC)
    assert code == 0
    assert "refresh-secret-value" not in out + err


# ------------------------------------------------------------------------------ logout


def test_logout_revokes_deletes_and_clears_the_config_ref(
    capsys: pytest.CaptureFixture[str], store: MemorySecrets, fake_idp: FakeProvider,
) -> None:
    key = derive_secret_key("REGISTRY_OAUTH_", REGISTRY_URL, ISSUER)
    Config().set_entry("registries", REGISTRY_URL, {
        "issuer": ISSUER, "client_id": CLIENT, "cached_refresh_token_ref": key,
        "cached_token_expiry": "2099-01-01T00:00:00Z"})
    store.set_secret(REG + key, fake_idp.seed("rt-0"))
    store.set_secret(REG + key + "_AT", _at("at-0", 3600))
    code, out, err = run(capsys, "registry", "logout", "--registry", REGISTRY_URL)
    assert (code, out) == (0, "")
    assert "revoked" in err
    assert fake_idp.revoked == ["rt-0"]
    assert len(store) == 0
    assert Config().entry("registries", REGISTRY_URL) == {"issuer": ISSUER,
                                                          "client_id": CLIENT}
    # Nothing stored: still a success, and the provider is not called.
    code, out, err = run(capsys, "registry", "logout", "--registry", REGISTRY_URL)
    assert (code, out) == (0, "")
    assert "no session was stored" in err
    assert fake_idp.counts["revocation"] == 1


def test_logout_with_nothing_stored_is_0(
    capsys: pytest.CaptureFixture[str], store: MemorySecrets, fake_idp: FakeProvider,
    cfg_file: Path,
) -> None:
    code, out, _ = run(capsys, "logout", *ADHOC)
    assert (code, out) == (0, "")
    assert sum(fake_idp.counts.values()) == 0
    assert not cfg_file.exists()


def test_logout_when_revocation_fails_still_deletes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    fake_idp: FakeProvider,
) -> None:
    import httpx

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/revoke":
            return httpx.Response(400, json={"error": "unsupported_token_type"})
        return fake_idp.handle(request)

    secrets = MemorySecrets({ADHOC_KEY: fake_idp.seed(), ADHOC_KEY + "_AT": _at("a", 60)})
    monkeypatch.setattr(cli_module, "_session_options", {
        "secrets_provider": secrets, "transport": httpx.MockTransport(handle),
        "max_retries": 0})
    code, out, err = run(capsys, "logout", *ADHOC)
    assert (code, out) == (0, "")
    assert "not revoked" in err
    assert len(err.strip().splitlines()) == 1
    assert len(secrets) == 0


# ------------------------------------------------------------------------------ config


def test_corrupt_config_exits_1_naming_the_file_and_leaves_it(
    capsys: pytest.CaptureFixture[str], store: MemorySecrets, cfg_file: Path
) -> None:
    cfg_file.parent.mkdir(parents=True)
    cfg_file.write_text('{"profiles": {"work": ')
    for argv in (["token", "--profile", "work"],
                 ["login", "--profile", "work", *ADHOC],
                 ["registry", "token", "--registry", REGISTRY_URL, *ADHOC],
                 ["status", "--profile", "work"]):
        code, out, err = run(capsys, *argv)
        assert (code, out) == (1, ""), argv
        assert str(cfg_file) in _one_error_line(err)
    assert cfg_file.read_text() == '{"profiles": {"work": '


def test_unknown_profile_or_registry_is_login_required(
    capsys: pytest.CaptureFixture[str], store: MemorySecrets
) -> None:
    code, _, err = run(capsys, "token", "--profile", "nope")
    assert code == 4
    assert "run: oauth-auth login --profile nope --issuer ISSUER --client-id CLIENT_ID" in err
    code, _, err = run(capsys, "registry", "token", "--registry", REGISTRY_URL)
    assert code == 4
    assert f"run: oauth-auth registry login --registry {REGISTRY_URL} --issuer" in err


def test_registry_token_uses_the_config_entry_and_persists(
    capsys: pytest.CaptureFixture[str], store: MemorySecrets, fake_idp: FakeProvider
) -> None:
    Config().set_entry("registries", REGISTRY_URL, {"issuer": ISSUER, "client_id": CLIENT})
    key = derive_secret_key("REGISTRY_OAUTH_", REGISTRY_URL, ISSUER)
    store.set_secret(REG + key, fake_idp.seed())
    assert run(capsys, "registry", "token", "--registry", REGISTRY_URL) == (0, "at-1\n", "")
    entry = Config().entry("registries", REGISTRY_URL)
    assert entry is not None
    assert entry["cached_refresh_token_ref"] == key
    # The library's registry_auth shares the session: served with no provider call.
    auth = registry_auth(REGISTRY_URL, interactive=False, secrets_provider=store,
                         transport=fake_idp.transport())
    assert auth.source.token() == "at-1"
    assert fake_idp.counts["refresh"] == 1


def test_llm_token_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    store: MemorySecrets, fake_idp: FakeProvider,
) -> None:
    monkeypatch.setenv(llm_access_token_env_var(GATEWAY_URL, ISSUER), _at("env-at", 3600))
    argv = ["--gateway", GATEWAY_URL, *ADHOC]
    assert run(capsys, "llm", "token", *argv) == (0, "env-at\n", "")
    code, out, err = run(capsys, "llm", "status", *argv)
    assert code == 0
    assert "env-at" not in out + err
    assert "environment variable TOOLHIVE_SECRET___thv_llm_LLM_OAUTH_" in out
    assert len(store) == 0
    assert sum(fake_idp.counts.values()) == 0


class PlaintextMemoryKeyring(KeyringBackend):
    """A keyring backend whose name says plaintext (like keyrings.alt's), kept in memory."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.data: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.data.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.data[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.data.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


def test_plaintext_backend_is_honoured_with_a_warning(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    backend = PlaintextMemoryKeyring()
    keyring = KeyringSecrets(service="oauth-auth", backend=backend, lock_dir=tmp_path)
    monkeypatch.setattr(cli_module, "_session_options", {"secrets_provider": keyring})
    keyring.set_secret(ADHOC_KEY + "_AT", _at("plain-at", 3600))
    code, out, err = run(capsys, "token", *ADHOC)
    assert (code, out) == (0, "plain-at\n")
    assert "warning: the keyring backend" in err
    assert "unencrypted" in err
    code, out, err = run(capsys, "status", *ADHOC)
    assert code == 0
    assert "WARNING: plaintext" in out
    assert "PlaintextMemoryKeyring" in out
    assert "plain-at" not in out + err


# ------------------------------------------------------------------------------ login (real IdP)



def test_login_profile_round_trip_in_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, real_idp: IdP,
    cfg_file: Path,
) -> None:
    from tests.support.browser import Background, http_browser_login

    secrets = MemorySecrets()
    browser = Background(http_browser_login)
    monkeypatch.setattr(cli_module, "_session_options",
                        {"secrets_provider": secrets, "open_browser": browser})
    port = free_port()
    code, out, err = run(capsys, "login", "--profile", "work", "--issuer", real_idp.issuer,
                         "--client-id", real_idp.client_id, "--scope", "email",
                         "--callback-port", str(port))
    assert (code, out) == (0, "")
    assert f"Logged in to {real_idp.issuer}" in err
    browser.wait()
    assert real_idp.token_requests("authorization_code") == 1
    key = derive_secret_key("OAUTH_AUTH_WORK_", real_idp.client_id, real_idp.issuer)
    assert secrets.names() == [key, key + "_AT"]
    refresh_token = secrets.get_secret(key)
    access = (secrets.get_secret(key + "_AT") or "").rpartition("|")[0]
    assert refresh_token
    assert access
    assert refresh_token not in err
    assert access not in err
    # The profile is saved, mode 0600.
    assert stat.S_IMODE(cfg_file.stat().st_mode) == 0o600
    entry = Config().entry("profiles", "work")
    assert entry is not None
    assert entry["issuer"] == real_idp.issuer
    assert entry["client_id"] == real_idp.client_id
    assert entry["scopes"] == ["email"]
    assert entry["callback_port"] == port
    assert entry["cached_refresh_token_ref"] == key
    # The profile serves tokens from the shared cache: no token request.
    assert run(capsys, "token", "--profile", "work") == (0, access + "\n", "")
    code, out, err = run(capsys, "status", "--profile", "work")
    assert code == 0
    assert "profile:       work\n" in out
    assert refresh_token not in out + err
    assert access not in out + err
    assert refresh_count(real_idp.counts(), "ok") == 0
    # Logout revokes at the provider and deletes; then token needs a login again.
    code, out, err = run(capsys, "logout", "--profile", "work")
    assert (code, out) == (0, "")
    assert "revoked" in err
    assert real_idp.counts()["revocation"] == 1
    assert secrets.names() == []
    assert "cached_refresh_token_ref" not in (Config().entry("profiles", "work") or {})
    code, out, err = run(capsys, "token", "--profile", "work")
    assert (code, out) == (4, "")
    assert "run: oauth-auth login --profile work" in err


def test_login_runs_a_new_login_even_when_logged_in(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, real_idp: IdP
) -> None:
    from tests.support.browser import Background, http_browser_login

    key = derive_secret_key("REGISTRY_OAUTH_", REGISTRY_URL, real_idp.issuer)
    secrets = MemorySecrets({REG + key: "old-refresh",
                             REG + key + "_AT": _at("old-access", 3600)})
    browser = Background(http_browser_login)
    monkeypatch.setattr(cli_module, "_session_options",
                        {"secrets_provider": secrets, "open_browser": browser})
    code, _, err = run(capsys, "registry", "login", "--registry", REGISTRY_URL,
                       "--issuer", real_idp.issuer, "--client-id", real_idp.client_id,
                       "--callback-port", str(free_port()))
    assert code == 0, err
    browser.wait()
    assert real_idp.token_requests("authorization_code") == 1
    assert secrets.get_secret(REG + key) not in (None, "old-refresh")
    assert not (secrets.get_secret(REG + key + "_AT") or "").startswith("old-access|")
    entry = Config().entry("registries", REGISTRY_URL)
    assert entry is not None
    assert entry["issuer"] == real_idp.issuer
    assert entry["cached_refresh_token_ref"] == key
    # Registry token needs no flags now.
    code, out, _ = run(capsys, "registry", "token", "--registry", REGISTRY_URL)
    assert code == 0
    assert out.strip() == (secrets.get_secret(REG + key + "_AT") or "").rpartition("|")[0]


def test_llm_login_status_token_logout_round_trip(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, real_idp: IdP
) -> None:
    """The LLM group against the real provider: entries live under the `llm` scope
    (`__thv_llm_<key>`), the gateway's settings are saved, logout revokes and deletes."""
    from tests.support.browser import Background, http_browser_login

    secrets = MemorySecrets()
    browser = Background(http_browser_login)
    monkeypatch.setattr(cli_module, "_session_options",
                        {"secrets_provider": secrets, "open_browser": browser})
    code, out, err = run(capsys, "llm", "login", "--gateway", GATEWAY_URL,
                         "--issuer", real_idp.issuer, "--client-id", real_idp.client_id,
                         "--callback-port", str(free_port()))
    assert (code, out) == (0, ""), err
    browser.wait()
    assert real_idp.token_requests("authorization_code") == 1
    key = derive_secret_key("LLM_OAUTH_", GATEWAY_URL, real_idp.issuer)
    assert secrets.names() == [f"__thv_llm_{key}", f"__thv_llm_{key}_AT"]
    access = (secrets.get_secret(f"__thv_llm_{key}_AT") or "").rpartition("|")[0]
    entry = Config().entry("llm_gateways", GATEWAY_URL)
    assert entry is not None
    assert entry["issuer"] == real_idp.issuer
    assert entry["cached_refresh_token_ref"] == key

    assert run(capsys, "llm", "token", "--gateway", GATEWAY_URL) == (0, access + "\n", "")
    code, out, err = run(capsys, "llm", "status", "--gateway", GATEWAY_URL)
    assert code == 0
    assert f"LLM gateway:   {GATEWAY_URL}\n" in out
    assert access not in out + err
    code, out, err = run(capsys, "llm", "logout", "--gateway", GATEWAY_URL)
    assert (code, out) == (0, "")
    assert "revoked" in err
    assert real_idp.counts()["revocation"] == 1
    assert secrets.names() == []
    code, out, err = run(capsys, "llm", "token", "--gateway", GATEWAY_URL)
    assert (code, out) == (4, "")
    assert f"oauth-auth llm login --gateway {GATEWAY_URL}" in err


# ------------------------------------------------------------------------------ console script


def _script() -> list[str]:
    script = Path(sys.executable).parent / "oauth-auth"
    return [str(script)] if script.exists() else [sys.executable, "-m", "oauth_auth"]


def _env(tmp_path: Path, base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update({CONFIG_ENV: str(tmp_path / "cfg" / "config.json"),
                "OAUTH_AUTH_LOCK_DIR": str(tmp_path / "locks")})
    env.update(extra)
    return env


def _sh(argv: list[str], env: dict[str, str],
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, check=False)


PROBE = """
import json, sys
from oauth_auth.cli import main
code = main(sys.argv[2:])
loaded = sorted(m for m in ("httpx", "requests", "authlib", "joserfc", "keyring", "filelock")
                if m in sys.modules)
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "loaded": loaded}, f)
raise SystemExit(code)
"""


def _probe(tmp_path: Path, env: dict[str, str],
           *argv: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    report = tmp_path / "probe.json"
    result = _sh([sys.executable, "-c", PROBE, str(report), *argv], env)
    return result, json.loads(report.read_text())


def test_console_script_usage_version_and_module(tmp_path: Path) -> None:
    env = _env(tmp_path, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    result = _sh([*_script(), "--version"], env)
    assert (result.returncode, result.stdout.startswith("oauth-auth ")) == (0, True)
    result = _sh([*_script(), "token"], env)
    assert (result.returncode, result.stdout) == (2, "")
    result = _sh([sys.executable, "-m", "oauth_auth", "token", "--help"], env)
    assert result.returncode == 0
    assert "examples:" in result.stdout


def test_console_script_llm_env_token_with_no_keyring_at_all(tmp_path: Path) -> None:
    issuer = "https://idp.example.test"
    env = _env(tmp_path, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    env[llm_access_token_env_var(GATEWAY_URL, issuer)] = _at("ci-injected-token", 3600)
    argv = ["llm", "token", "--gateway", GATEWAY_URL, "--issuer", issuer,
            "--client-id", "llm-cli"]
    result = _sh([*_script(), *argv], env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ci-injected-token\n", "")
    # Neither the HTTP stack nor keyring was imported on that path.
    result, report = _probe(tmp_path, env, *argv)
    assert report == {"code": 0, "loaded": []}
    # Without the variable: the keyring is needed, and there is none -> exit 1 with the hint.
    del env[llm_access_token_env_var(GATEWAY_URL, issuer)]
    result = _sh([*_script(), *argv], env)
    assert (result.returncode, result.stdout) == (1, "")
    assert "PYTHON_KEYRING_BACKEND" in _one_error_line(result.stderr)


def test_console_script_fail_backend_status_and_logout(tmp_path: Path) -> None:
    env = _env(tmp_path, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    for command in ("token", "status", "logout"):
        result = _sh([*_script(), command, *ADHOC], env)
        assert result.returncode == 1, (command, result.stderr)
        assert "no usable keyring backend" in _one_error_line(result.stderr)
        if command == "status":  # what it could find out, then the error
            assert "refresh token: unknown" in result.stdout
            assert result.stdout.count("error:") == 1
        else:
            assert result.stdout == ""


@pytest.fixture
def keyring_env(secret_service: Any, tmp_path: Path, real_idp: IdP) -> Iterator[dict[str, str]]:
    """The Secret Service bench's environment, with this test's config, and the ad-hoc
    key's entries removed before and after."""
    store = KeyringSecrets(service="oauth-auth")
    key = derive_secret_key("OAUTH_AUTH_", real_idp.client_id, real_idp.issuer)
    for name in (key, key + "_AT"):
        store.delete_secret(name)
    yield _env(tmp_path, secret_service.subprocess_env())
    for name in (key, key + "_AT"):
        store.delete_secret(name)


def test_console_script_end_to_end(real_idp: IdP, keyring_env: dict[str, str],
                                   tmp_path: Path) -> None:
    flags = ["--issuer", real_idp.issuer, "--client-id", real_idp.client_id]
    key = derive_secret_key("OAUTH_AUTH_", real_idp.client_id, real_idp.issuer)
    store = KeyringSecrets(service="oauth-auth")
    script = _script()

    # Nothing stored: 4 for token and status, 0 for logout.
    result = _sh([*script, "token", *flags], keyring_env)
    assert (result.returncode, result.stdout) == (4, "")
    assert _one_error_line(result.stderr).endswith(
        f"run: oauth-auth login --issuer {real_idp.issuer} --client-id {real_idp.client_id}")
    assert _sh([*script, "status", *flags], keyring_env).returncode == 4
    assert _sh([*script, "logout", *flags], keyring_env).returncode == 0

    # A session in the keyring (as a login would leave it): token refreshes once.
    tokens = obtain_tokens(real_idp)
    store.set_secret(key, tokens["refresh_token"])
    real_idp.reset_counts()
    result = _sh([*script, "token", *flags], keyring_env)
    assert result.returncode == 0, result.stderr
    access = result.stdout[:-1]
    assert result.stdout == access + "\n"
    assert access
    assert "\n" not in access
    assert refresh_count(real_idp.counts()) == 1
    rotated = store.get_secret(key)
    assert rotated
    assert rotated != tokens["refresh_token"]

    # Another process: served from the shared cache, no token request, no HTTP stack.
    result, report = _probe(tmp_path, keyring_env, "token", *flags)
    assert result.stdout == access + "\n"
    assert report["code"] == 0
    assert not set(report["loaded"]) & set(HEAVY), report
    assert refresh_count(real_idp.counts()) == 1

    # status: usable, and no secret anywhere in its output.
    result = _sh([*script, "status", *flags], keyring_env)
    assert result.returncode == 0
    for secret in (access, rotated, tokens["refresh_token"]):
        assert secret not in result.stdout + result.stderr
    assert "SecretService" in result.stdout
    assert "refresh token: stored" in result.stdout

    # logout: revoked at the provider, both entries gone; then login required.
    result = _sh([*script, "logout", *flags], keyring_env)
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    assert "revoked" in result.stderr
    assert real_idp.counts()["revocation"] == 1
    assert store.get_secret(key) is None
    assert store.get_secret(key + "_AT") is None
    assert _sh([*script, "token", *flags], keyring_env).returncode == 4
    assert _sh([*script, "logout", *flags], keyring_env).returncode == 0


def test_console_script_login_with_a_browser_command(
    real_idp: IdP, keyring_env: dict[str, str], tmp_path: Path, cfg_file: Path
) -> None:
    browser = tmp_path / "browser"
    browser.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.support.browser import http_browser_login\n"
        "http_browser_login(sys.argv[1])\n"
    )
    browser.chmod(0o755)
    env = {**keyring_env, "BROWSER": str(browser)}
    env.pop("DISPLAY", None)
    result = _sh([*_script(), "login", "--profile", "e2e", "--issuer", real_idp.issuer,
                  "--client-id", real_idp.client_id, "--callback-port", str(free_port())], env)
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    assert "Logged in" in result.stderr
    assert real_idp.token_requests("authorization_code") == 1
    assert stat.S_IMODE(cfg_file.stat().st_mode) == 0o600
    entry = Config(cfg_file).entry("profiles", "e2e")
    assert entry is not None
    assert entry["issuer"] == real_idp.issuer
    result = _sh([*_script(), "token", "--profile", "e2e"], env)
    assert result.returncode == 0
    assert result.stdout.strip()
    assert result.stdout.strip() not in result.stderr
    assert refresh_count(real_idp.counts()) == 0  # served from the shared cache


def test_examples_are_present_and_runnable(tmp_path: Path) -> None:
    env = _env(tmp_path, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
               OAUTH_AUTH=" ".join(_script()))
    helper = ROOT / "examples" / "credential_helper.sh"
    client = ROOT / "examples" / "registry_client.py"
    assert os.access(helper, os.X_OK)
    result = _sh([sys.executable, str(client), REGISTRY_URL], env)
    assert result.returncode == 4
    assert "oauth-auth registry login --registry" in result.stderr
    sh = shutil.which("sh")
    if sh is None:
        return
    # Not logged in (and no keyring): the helper fails and prints nothing on stdout.
    result = _sh([sh, str(helper), "--issuer", ISSUER, "--client-id", CLIENT], env)
    assert (result.returncode, result.stdout) == (1, "")
    # A token injected for the LLM gateway comes out alone.
    env[llm_access_token_env_var(GATEWAY_URL, ISSUER)] = _at("helper-token", 3600)
    result = _sh([sh, str(helper), "llm", "--gateway", GATEWAY_URL, *ADHOC], env)
    assert (result.returncode, result.stdout) == (0, "helper-token\n"), result.stderr


def test_registry_client_example_calls_the_api_with_the_stored_session(
    secret_service: Any, api_factory: Any, tmp_path: Path
) -> None:
    token = "registry-example-access-token-0123456789"
    api = api_factory(lambda t: t == token)
    registry = api.url
    env = _env(tmp_path, secret_service.subprocess_env())
    Config(tmp_path / "cfg" / "config.json").set_entry(
        "registries", registry, {"issuer": ISSUER, "client_id": CLIENT})
    key = REG + derive_secret_key("REGISTRY_OAUTH_", registry, ISSUER)
    store = KeyringSecrets(service="oauth-auth")
    store.set_secret(key + "_AT", _at(token, 3600))
    try:
        result = _sh([sys.executable, str(ROOT / "examples" / "registry_client.py"),
                      registry, "/v0/servers"], env)
        assert result.returncode == 0, result.stderr
        assert api.count("/v0/servers") == 1
        assert api.seen[-1].authorization == f"Bearer {token}"
        assert token not in result.stdout + result.stderr
    finally:
        store.delete_secret(key + "_AT")


def test_console_script_ctrl_c_during_a_login_exits_1_and_frees_the_port(
    real_idp: IdP, keyring_env: dict[str, str]
) -> None:
    """A user who gives up on the browser presses Ctrl-C: the command ends at once with
    exit 1 (the contract has no other failure code) and the callback port is free again."""
    import signal
    import threading
    import time

    port = free_port()
    proc = subprocess.Popen(
        [*_script(), "login", "--issuer", real_idp.issuer, "--client-id", real_idp.client_id,
         "--no-browser", "--callback-port", str(port)],
        env=keyring_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    url_shown = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if f"localhost%3A{port}%2Fcallback" in line:
                url_shown.set()  # listening and the URL printed: the login is waiting

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert url_shown.wait(60), "".join(lines)
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        proc.wait(timeout=30)  # (stderr is the reader thread's; stdout stays tiny)
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.stdout.close()
    proc.stderr.close()
    err = "".join(lines)
    assert (proc.returncode, out) == (1, ""), err
    assert "interrupted" in err
    with socket.socket() as again:  # free: a new login can listen there at once
        # (SO_REUSEADDR only ignores TIME_WAIT leftovers of the probe; a listener that
        # still held the port would make bind fail all the same)
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()
    assert real_idp.counts()["token"] == {}


class _RefusesSessions(MemorySecrets):
    """A store that passes the login's check but refuses to keep the session itself."""

    def set_secret(self, name: str, value: str) -> None:
        if not name.endswith("_LOGIN_CHECK"):
            from oauth_auth import SecretsError

            raise SecretsError("the keyring refused the write")
        super().set_secret(name, value)


def test_login_exits_1_when_the_session_was_not_stored(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, real_idp: IdP
) -> None:
    """Issue 14, item 1: `login` said "The session is stored" and exited 0 when the store
    refused it; now it exits 0 only when the session reached the store."""
    from tests.support.browser import Background, http_browser_login

    browser = Background(http_browser_login)
    monkeypatch.setattr(cli_module, "_session_options",
                        {"secrets_provider": _RefusesSessions(), "open_browser": browser})
    code, out, err = run(capsys, "login", "--issuer", real_idp.issuer, "--client-id",
                         real_idp.client_id, "--callback-port", str(free_port()))
    browser.wait()
    assert (code, out) == (1, "")
    assert "the login succeeded, but the session could not be stored" in err
    assert "Logged in" not in err
    assert real_idp.token_requests("authorization_code") == 1


def test_llm_login_says_where_the_session_is_stored(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, real_idp: IdP
) -> None:
    """Issue 14, item 6: `llm login` said the session was stored "in the environment
    (TOOLHIVE_SECRET_*), then the keyring"; the environment is read-only."""
    from tests.support.browser import Background, http_browser_login

    browser = Background(http_browser_login)
    monkeypatch.setattr(cli_module, "_session_options",
                        {"secrets_provider": MemorySecrets(), "open_browser": browser})
    code, _, err = run(capsys, "llm", "login", "--gateway", GATEWAY_URL, "--issuer",
                       real_idp.issuer, "--client-id", real_idp.client_id,
                       "--callback-port", str(free_port()))
    browser.wait()
    assert code == 0, err
    stored = next(line for line in err.splitlines() if "The session is stored in" in line)
    assert "environment" not in stored
    assert "MemorySecrets" in stored
