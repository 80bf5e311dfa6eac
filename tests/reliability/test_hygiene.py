"""Secret hygiene: the session-wide check proves itself, and the places it cannot see
(another process's stderr, the files left on disk) are checked here directly.

The session-wide check itself lives in tests/support/hygiene.py: every token, refresh
token, code and verifier of the whole run against every log record (DEBUG), exception,
repr and in-process CLI stderr; it fails the run at the end if one leaked.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from oauth_auth import KeyringSecrets, MemorySecrets, derive_secret_key
from tests.reliability.conftest import Figures, seed
from tests.support.hygiene import LEDGER, Ledger, fingerprint
from tests.support.idp import IdP

ROOT = Path(__file__).resolve().parents[2]


def test_ledger_finds_a_leak_and_reports_only_its_fingerprint() -> None:
    ledger = Ledger()
    secret = "rt-" + uuid.uuid4().hex
    ledger.secret(secret, "test")
    ledger.secret("short", "test")  # below MIN_SECRET: ignored
    ledger.text("log:oauth_auth:DEBUG", f"refreshing with {secret} now")
    ledger.text("exception:OAuthError", "nothing to see, short")
    leaks = ledger.leaks()
    assert len(leaks) == 1
    assert leaks[0].secret_fp == fingerprint(secret)
    assert secret not in leaks[0].excerpt
    assert f"<secret {fingerprint(secret)}>" in leaks[0].excerpt


def test_the_session_check_is_live() -> None:
    """The hooks are installed in this very run (the plugin is loaded by conftest)."""
    import logging

    assert LEDGER.current_test.endswith("test_the_session_check_is_live")

    logger = logging.getLogger("oauth_auth")
    assert logger.isEnabledFor(logging.DEBUG)
    assert any(type(h).__name__ == "_LogTap" for h in logger.handlers)


LEAKY_TEST = textwrap.dedent('''
    import logging
    import httpx
    import pytest
    from oauth_auth import OAuthError
    from oauth_auth._http import IdPHttp

    TOKEN = "leaky-access-token-0123456789abcdef"

    def test_leak():
        body = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 60}
        http = IdPHttp(transport=httpx.MockTransport(
            lambda r: httpx.Response(200, json=body)))
        _, doc = http.post_form("https://idp.example.test/token", {"grant_type": "x"})
        logging.getLogger("oauth_auth").debug("got %s", doc["access_token"])
        with pytest.raises(OAuthError):
            raise OAuthError("invalid_request", "echoing " + doc["access_token"])
''')


def test_the_session_check_fails_a_run_that_leaks(tmp_path: Path) -> None:
    """A run whose code logs a token and puts one in an exception fails, and the report
    names the fingerprint, never the token."""
    (tmp_path / "test_leaky.py").write_text(LEAKY_TEST)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OAUTH_AUTH_NO_HYGIENE", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.hygiene", "-q",
         "-p", "no:cacheprovider", "test_leaky.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "1 passed" in out  # the test itself passed: the hygiene check failed the run
    assert "secret hygiene: FAILED" in out
    token = "leaky-access-token-0123456789abcdef"
    assert token not in out
    assert fingerprint(token) in out
    assert "log:oauth_auth:DEBUG" in out
    assert "exception:OAuthError" in out


# ------------------------------------------------------------------ the command, as a process


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oauth_auth", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.keyring
def test_cli_stderr_holds_no_secret_even_with_debug(
    real_idp: IdP, tmp_path: Path, secret_service: Any, figures: Figures
) -> None:
    """`oauth-auth registry token|status|logout --debug` as a real process, on the real
    Secret Service and provider: the token goes to stdout alone; stderr (debug logs
    included) and the config file hold no token; the files are private."""
    registry = f"https://registry-{uuid.uuid4().hex[:8]}.example.test"
    # the registry scope of ToolHive (`__thv_registry_<key>`, DESIGN Release 2)
    key = "__thv_registry_" + derive_secret_key("REGISTRY_OAUTH_", registry, real_idp.issuer)
    store = KeyringSecrets(service="oauth-auth")
    session = seed(real_idp, store, tmp_path, key=key)
    config = tmp_path / "cfg" / "config.json"
    env = {**secret_service.subprocess_env(), "PYTHONPATH": str(ROOT),
           "OAUTH_AUTH_CONFIG": str(config), "OAUTH_AUTH_LOCK_DIR": str(tmp_path / "locks")}
    common = ["--registry", registry, "--issuer", real_idp.issuer,
              "--client-id", real_idp.client_id, "--debug"]
    secrets_seen = [session.refresh_token]

    token = run_cli(["registry", "token", *common], env)
    assert token.returncode == 0, token.stderr
    access = token.stdout.strip()
    assert token.stdout == access + "\n"
    rotated = store.get_secret(key)
    assert rotated is not None
    assert rotated != session.refresh_token
    secrets_seen += [access, rotated]
    assert "oauth-auth: debug:" in token.stderr  # debug logging really was on

    status = run_cli(["registry", "status", *common], env)
    assert status.returncode == 0, status.stderr
    logout = run_cli(["registry", "logout", *common], env)
    assert logout.returncode == 0, logout.stderr
    failed = run_cli(["registry", "token", *common], env)  # nothing stored any more
    assert failed.returncode == 4

    texts = {"token stderr": token.stderr, "status stdout": status.stdout,
             "status stderr": status.stderr, "logout stdout": logout.stdout,
             "logout stderr": logout.stderr, "failed stderr": failed.stderr}
    for where, text in texts.items():
        for secret in secrets_seen:
            assert secret not in text, f"a secret ({fingerprint(secret)}) is in the {where}"

    assert config.exists()
    entry = json.loads(config.read_text())["registries"][registry]
    assert entry.get("cached_refresh_token_ref", key) == key
    for secret in secrets_seen:
        assert secret not in config.read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    locks = list((tmp_path / "locks").glob("*.lock"))
    assert locks
    for lock in locks:
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        assert lock.read_bytes() == b""
    figures.add("secret hygiene: CLI process stderr, config and lock files (--debug)",
                f"{len(texts)} outputs and 2 kinds of files checked against"
                f" {len(secrets_seen)} secrets: none leaked; files 0600")


def test_library_files_are_private_and_hold_no_token(real_idp: IdP, tmp_path: Path,
                                                     figures: Figures) -> None:
    from oauth_auth.profiles import REGISTRY, open_session

    store = MemorySecrets()
    registry = "https://registry.example.test"
    config = tmp_path / "conf" / "config.json"
    opened = open_session(REGISTRY, registry, issuer=real_idp.issuer, client_id=real_idp.client_id,
                          config_path=str(config), secrets_provider=store,
                          interactive=False, lock_dir=tmp_path / "locks")
    scoped = opened.secrets  # `__thv_registry_<key>` (DESIGN, Release 2)
    assert scoped is not None
    session = seed(real_idp, scoped, tmp_path, key=opened.key)
    access = opened.source.token()
    refresh = scoped.get_secret(opened.key)
    assert refresh
    text = config.read_text()
    for secret in (access, refresh, session.refresh_token):
        assert secret not in text
    assert json.loads(text)["registries"][registry]["cached_refresh_token_ref"] == opened.key
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    lock = opened.source.lock_file
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert stat.S_IMODE(lock.parent.stat().st_mode) == 0o700
    assert lock.read_bytes() == b""
    for obj in (opened.source, opened, opened.source._memory, store):
        for secret in (access, refresh, session.refresh_token):
            assert secret not in repr(obj)
    figures.add("secret hygiene: files and reprs (library)",
                "config 0600 with the key name only; lock file 0600, empty, dir 0700;"
                " no secret in any repr")
