"""The examples stay runnable: each one runs here as a user would run it, end to end.

`make demo` (tests/demo.py, on the test bench's provider) is the README's main job. The
three adapter examples run as a user runs them with their own provider: examples/_local.py
reads OAUTH_ISSUER, OAUTH_CLIENT_ID and API_URL and logs in through the real `webbrowser`,
here a $BROWSER program that plays the user; no example imports anything from tests/. The
registry client and the credential helper are run against their documented failure and
success paths. Figures printed by the demo are checked, not just its exit code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from oauth_auth import llm_access_token_env_var
from tests.support.cli import browser_program
from tests.support.idp import IdP, require_idp
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _run(argv: list[str], tmp_path: Path, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("OAUTH_ISSUER", "OAUTH_CLIENT_ID", "API_URL")}
    base.update({"OAUTH_AUTH_CONFIG": str(tmp_path / "cfg" / "config.json"),
                 "OAUTH_AUTH_LOCK_DIR": str(tmp_path / "locks")})
    base.update(env or {})
    return subprocess.run(argv, cwd=ROOT, env=base, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _cli() -> str:
    script = Path(sys.executable).parent / "oauth-auth"
    return str(script) if script.exists() else f"{sys.executable} -m oauth_auth"


@pytest.mark.idp
def test_the_demo_runs_every_tier_end_to_end(tmp_path: Path) -> None:
    require_idp()
    result = _run([sys.executable, str(ROOT / "tests" / "demo.py"), "--auto"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"logged in in [0-9.]+ s; requests -> API: HTTP 200", out)
    assert "httpx.AsyncClient, 5 concurrent -> [200, 200, 200, 200, 200]" in out
    assert "child process got the same token: True; new refreshes: 0" in out
    assert "refreshes in total: 1; refresh token rotated and stored: True" in out
    assert "final status 200 after 2 API requests (1 retried)" in out
    assert "revoked: True; deleted locally: True; stored refresh token now: None" in out
    assert "authorization_code: {'ok': 1}; refresh_token: {'ok': 2}" in out
    assert "== Stopped the provider and the API." in out


@pytest.mark.idp
@pytest.mark.parametrize("name", ["requests_example.py", "httpx_example.py",
                                  "httpx_async_example.py"])
def test_the_adapter_examples_run(name: str, tmp_path: Path, real_idp: IdP,
                                  api_factory: Any) -> None:
    api = api_factory(real_idp.active)
    env = {"OAUTH_ISSUER": real_idp.issuer, "OAUTH_CLIENT_ID": real_idp.client_id,
           "API_URL": api.url, "OAUTH_CALLBACK_PORT": str(free_port()),
           "BROWSER": str(browser_program(tmp_path / "browser")), "DISPLAY": ""}
    result = _run([sys.executable, str(EXAMPLES / name)], tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    statuses: list[str] = []  # "GET /x -> 200 {...}" or "10 concurrent GETs -> [200, ...]"
    for answer in re.findall(r"-> (\[[\d, ]+\]|\d{3}\b)", result.stdout):
        statuses.extend(re.findall(r"\d{3}", answer))
    assert statuses, result.stdout
    assert set(statuses) == {"200"}, result.stdout
    assert real_idp.token_requests("authorization_code") == 1


def test_the_adapter_examples_say_what_they_need(tmp_path: Path) -> None:
    result = _run([sys.executable, str(EXAMPLES / "requests_example.py")], tmp_path)
    assert result.returncode == 2
    assert "OAUTH_ISSUER, OAUTH_CLIENT_ID, API_URL" in result.stderr


def test_no_example_imports_the_tests() -> None:
    """examples/ run from an installed package: nothing there may import tests/ (the
    demo, which runs against the bundled provider of the test bench, is tests/demo.py)."""
    for path in sorted(EXAMPLES.glob("*.py")):
        text = path.read_text()
        assert "tests.support" not in text, path.name
        assert "from tests" not in text, path.name


def test_the_registry_client_says_which_login_to_run(tmp_path: Path) -> None:
    registry = "https://registry.example.test"
    result = _run([sys.executable, str(EXAMPLES / "registry_client.py"), registry, "/v0/x"],
                  tmp_path)
    assert result.returncode == 4, result.stderr
    assert result.stdout == ""
    assert f"oauth-auth registry login --registry {registry}" in result.stderr

    usage = _run([sys.executable, str(EXAMPLES / "registry_client.py")], tmp_path)
    assert usage.returncode == 2
    assert "registry login" in usage.stderr


def test_the_credential_helper_prints_the_token_alone(tmp_path: Path) -> None:
    gateway, issuer = "https://llm.example.test", "https://idp.example.test"
    token = "eyJhbGciOiJSUzI1NiJ9.credential-helper-token.sig"
    env = {"OAUTH_AUTH": _cli(),
           llm_access_token_env_var(gateway, issuer): f"{token}|2999-01-01T00:00:00Z"}
    result = _run(["sh", str(EXAMPLES / "credential_helper.sh"), "llm", "--gateway", gateway,
                   "--issuer", issuer, "--client-id", "llm-cli"], tmp_path, env)
    assert (result.returncode, result.stdout) == (0, token + "\n"), result.stderr
    assert token not in result.stderr


@pytest.mark.keyring
def test_the_credential_helper_stops_and_names_the_login(
    secret_service: Any, tmp_path: Path
) -> None:
    """Not logged in: exit 4, nothing on stdout (so `$(...)` sends no empty token), and the
    command to run on stderr."""
    args = ["--issuer", "https://idp.example.test", "--client-id", "helper-cli"]
    result = _run(["sh", str(EXAMPLES / "credential_helper.sh"), *args], tmp_path,
                  {**secret_service.env, "OAUTH_AUTH": _cli()})
    assert result.returncode == 4, result.stderr
    assert result.stdout == ""
    assert f"credential_helper: not logged in; run: {_cli()}  login {' '.join(args)}" in (
        result.stderr)


def test_the_machine_example_uses_client_credentials(
    real_idp: Any, api_factory: Any, tmp_path: Path
) -> None:
    api = api_factory(real_idp.active)
    env = {"OAUTH_ISSUER": real_idp.issuer, "OAUTH_CLIENT_ID": real_idp.machine_client_id,
           "OAUTH_CLIENT_SECRET": real_idp.machine_client_secret, "API_URL": api.url}
    result = _run([sys.executable, str(EXAMPLES / "machine_client.py")], tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("-> 200") == 3, result.stdout
    assert real_idp.token_requests("client_credentials") == 1
    assert api.count() == 3


def test_the_credential_helper_gives_curl_the_header_on_stdin(tmp_path: Path,
                                                             api_factory: Any) -> None:
    """API_URL set: curl gets the Authorization header as a config line on its stdin
    (`-K -`), so the token is on no command line (issue 15, item 3)."""
    import shutil

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    gateway, issuer = "https://llm.example.test", "https://idp.example.test"
    token = "credential-helper-curl-token-0123456789"
    api = api_factory(lambda t: t == token)
    env = {"OAUTH_AUTH": _cli(), "API_URL": api.url + "/me",
           llm_access_token_env_var(gateway, issuer): f"{token}|2999-01-01T00:00:00Z"}
    result = _run(["sh", str(EXAMPLES / "credential_helper.sh"), "llm", "--gateway", gateway,
                   "--issuer", issuer, "--client-id", "llm-cli"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert token not in result.stdout + result.stderr
    assert [s.authorization for s in api.seen] == [f"Bearer {token}"]
    script = (EXAMPLES / "credential_helper.sh").read_text()
    assert "curl -fsS -K -" in script
    assert "-H " not in script.replace('`curl -H "Authorization', "")
