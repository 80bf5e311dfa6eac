"""`resource_auth` against the MCP Python SDK's own server and client (RFC 9728, 7591, 8707).

The server is the SDK's `MCPServer` with its authorization routes (tests/support/mcp_app.py):
the client starts from the MCP endpoint's URL alone, finds the authorization server through
the 401's `resource_metadata`, registers itself, logs in, and calls a tool through the
SDK's streamable-HTTP client built on httpx2. Other processes start from the config file:
no registration, no login, one refresh among sixteen at expiry.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from oauth_auth import LoginRequiredError, derive_secret_key, resource_auth
from oauth_auth._config import RESOURCES, Config
from tests.support.children import start_together
from tests.support.cli import ROOT, browser_program
from tests.support.filesecrets import FileSecrets
from tests.support.mcp import MCPServer, call_add, play_browser
from tests.support.servers import free_port

pytestmark = pytest.mark.usefixtures("isolated_config")


def _login(server: MCPServer, store: Path) -> Any:
    auth = resource_auth(server.url, interactive=True, open_browser=play_browser,
                         secrets_provider=FileSecrets(store), callback_port=free_port(),
                         login_timeout=60)
    assert call_add(server.url, auth) == 5
    return auth


def _children(server: MCPServer, store: Path, tmp: Path, count: int) -> list[str]:
    import os

    cfg = {"url": server.url, "store": str(store)}
    procs = start_together("tests.support.mcp_child", [cfg] * count, tmp, env=os.environ,
                           cwd=ROOT)
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        outputs.append(out.strip() or f"ERROR no output: {err[-2000:]}")
    return outputs


def test_a_tool_call_from_the_url_alone(mcp_server: MCPServer, tmp_path: Path,
                                        cfg_file: Path) -> None:
    _login(mcp_server, tmp_path / "store")
    stats = mcp_server.stats()
    assert (stats["register"], stats["authorize"], stats["code"]) == (1, 1, 1)
    # RFC 8707: the canonical resource URI on the authorization and token requests
    assert stats["resources"] == [mcp_server.url, mcp_server.url]
    entry = Config(cfg_file).entry(RESOURCES, mcp_server.url)
    assert entry is not None
    assert entry["issuer"] == mcp_server.issuer
    assert entry["registered"] is True
    assert entry["client_id"]


def test_another_process_registers_and_logs_in_no_more(mcp_server: MCPServer,
                                                       tmp_path: Path) -> None:
    store = tmp_path / "store"
    _login(mcp_server, store)
    [out] = _children(mcp_server, store, tmp_path, 1)
    assert out == "SUM 42"
    stats = mcp_server.stats()
    assert (stats["register"], stats["authorize"], stats["code"]) == (1, 1, 1)
    assert stats["refresh"] == 0  # the shared access token served it


def test_sixteen_processes_at_expiry_make_one_refresh(mcp_server: MCPServer,
                                                      tmp_path: Path) -> None:
    store = tmp_path / "store"
    _login(mcp_server, store)
    # Expire the shared access token as every process sees it: all sixteen must refresh.
    key = derive_secret_key("RESOURCE_OAUTH_", mcp_server.url, mcp_server.issuer)
    secrets = FileSecrets(store)
    entry = secrets.get_secret(key + "_AT")
    assert entry is not None
    secrets.set_secret(key + "_AT", entry.split("|")[0] + "|2000-01-01T00:00:00Z")
    outputs = _children(mcp_server, store, tmp_path, 16)
    assert outputs == ["SUM 42"] * 16
    stats = mcp_server.stats()
    assert (stats["refresh"], stats["invalid_grant"]) == (1, 0)
    assert (stats["register"], stats["authorize"]) == (1, 1)
    assert stats["resources"][-1] == mcp_server.url  # the refresh carried the resource too


def test_without_a_session_a_noninteractive_process_is_told_to_log_in(
    mcp_server: MCPServer, tmp_path: Path
) -> None:
    auth = resource_auth(mcp_server.url, interactive=False,
                         secrets_provider=FileSecrets(tmp_path / "store"))
    with pytest.raises(LoginRequiredError) as info:
        auth.source.token()
    assert "--resource" in (info.value.hint or "")
    assert mcp_server.stats()["register"] == 1  # registered once, kept for the login


def test_a_403_naming_more_scopes_steps_up_once_when_interactive(
    mcp_step_up_server: MCPServer, tmp_path: Path, cfg_file: Path
) -> None:
    server, store = mcp_step_up_server, tmp_path / "store"
    logins: list[str] = []

    def browser(url: str) -> None:
        logins.append(url)
        play_browser(url)

    auth = resource_auth(server.url, interactive=True, open_browser=browser,
                         secrets_provider=FileSecrets(store), callback_port=free_port(),
                         login_timeout=60)
    assert call_add(server.url, auth) == 5
    assert call_add(server.url, auth, 20, 22, tool="admin_add") == 42  # stepped up
    stats = server.stats()
    assert stats["step_up_challenge"] == 1
    assert (stats["register"], stats["authorize"], stats["code"]) == (1, 2, 2)
    assert stats["scopes"] == ["mcp:tools", "mcp:tools mcp:admin"]  # the union, once
    assert len(logins) == 2
    entry = Config(cfg_file).entry(RESOURCES, server.url)
    assert entry is not None
    assert entry["scopes"] == ["mcp:tools", "mcp:admin"]
    # The stepped-up session is the one stored: another process uses it, logs in no more.
    assert call_add(server.url, auth, 1, 1, tool="admin_add") == 2
    [out] = _children(server, store, tmp_path, 1)
    assert out == "SUM 42"
    assert server.stats()["authorize"] == 2


def test_a_403_naming_more_scopes_is_final_when_not_interactive(
    mcp_step_up_server: MCPServer, tmp_path: Path
) -> None:
    server, store = mcp_step_up_server, tmp_path / "store"
    auth = resource_auth(server.url, interactive=True, open_browser=play_browser,
                         secrets_provider=FileSecrets(store), callback_port=free_port(),
                         login_timeout=60)
    assert call_add(server.url, auth) == 5
    quiet = resource_auth(server.url, interactive=False, secrets_provider=FileSecrets(store))
    import httpx

    with httpx.Client(auth=quiet, timeout=30) as client:
        answer = client.post(server.url, json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "admin_add", "arguments": {"a": 1, "b": 2}}},
            headers={"Accept": "application/json, text/event-stream"})
    assert answer.status_code == 403
    assert 'scope="mcp:tools mcp:admin"' in answer.headers["www-authenticate"]
    stats = server.stats()
    assert (stats["authorize"], stats["step_up_challenge"]) == (1, 1)


@pytest.mark.keyring
def test_the_mcp_example_runs_from_the_url_alone(
    mcp_server: MCPServer, secret_service: Any, tmp_path: Path
) -> None:
    """examples/mcp_client.py as a user runs it: the keyring, the config file, a browser
    (`$BROWSER`: a command that follows the page it is given, as a tab would)."""
    import os

    root = ROOT
    follow = str(browser_program(tmp_path / "browser", follow=True))
    env = {**os.environ, **secret_service.env, "BROWSER": follow,
           "OAUTH_AUTH_CONFIG": str(tmp_path / "cfg.json"),
           "OAUTH_AUTH_LOCK_DIR": str(tmp_path / "locks")}
    argv = [sys.executable, str(root / "examples" / "mcp_client.py"), mcp_server.url, "add",
            '{"a": 20, "b": 22}']
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                           check=False)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"result": 42}
    assert "tools: add" in first.stderr
    # A second run: no browser at all, no registration, no login.
    env["BROWSER"] = "false"
    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                            check=False)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == {"result": 42}
    stats = mcp_server.stats()
    assert (stats["register"], stats["authorize"], stats["code"]) == (1, 1, 1)


def test_a_restarted_server_that_forgot_the_client_gets_one_new_registration(
    mcp_server: MCPServer, tmp_path: Path, cfg_file: Path
) -> None:
    """The SDK's server keeps clients in memory: restarted, it answers the kept client's
    refresh with `invalid_client`. The next interactive process registers once more,
    logs in once and calls the tool; a process that is not interactive is told to log
    in; a later one takes the new registration without registering again."""
    store, port = tmp_path / "store", free_port()

    def auth(interactive: bool = True) -> Any:
        return resource_auth(mcp_server.url, interactive=interactive,
                             open_browser=play_browser, secrets_provider=FileSecrets(store),
                             callback_port=port, login_timeout=60)

    assert call_add(mcp_server.url, auth()) == 5
    first = Config(cfg_file).entry(RESOURCES, mcp_server.url)
    assert first is not None
    assert mcp_server.stats()["register"] == 1
    mcp_server.restart()  # every client, code and token forgotten
    # The shared access token is unknown now too: expire it, so the next token refreshes.
    key = derive_secret_key("RESOURCE_OAUTH_", mcp_server.url, mcp_server.issuer)
    secrets = FileSecrets(store)
    held = secrets.get_secret(key + "_AT")
    assert held is not None
    secrets.set_secret(key + "_AT", held.split("|")[0] + "|2000-01-01T00:00:00Z")

    with pytest.raises(LoginRequiredError, match="no longer knows the client") as info:
        auth(interactive=False).source.token()
    assert f"oauth-auth login --resource {mcp_server.url}" in (info.value.hint or "")
    assert mcp_server.stats()["register"] == 0  # it cannot log in: it registers nothing

    assert call_add(mcp_server.url, auth(), 20, 22) == 42
    stats = mcp_server.stats()
    # One registration, one login: its preflight (a login with a kept registration asks
    # the authorization endpoint once without a browser first) and the browser's request.
    assert (stats["register"], stats["authorize"], stats["code"]) == (1, 2, 1)
    renewed = Config(cfg_file).entry(RESOURCES, mcp_server.url)
    assert renewed is not None
    assert renewed["registered"] is True
    assert renewed["client_id"] != first["client_id"]
    assert renewed["registered_client_id"] == renewed["client_id"]
    # The new client (and that it is ours), the new session's expiry; nothing else.
    changed = {"client_id", "registered_client_id", "cached_token_expiry"}
    assert {k: v for k, v in renewed.items() if k not in changed} == {
        k: v for k, v in first.items() if k not in changed}
    # Another process: the new registration from the config file, no login, no refresh.
    [out] = _children(mcp_server, store, tmp_path, 1)
    assert out == "SUM 42"
    stats = mcp_server.stats()
    assert (stats["register"], stats["authorize"], stats["code"]) == (1, 2, 1)
