"""End to end against the real oidc-provider: the hardening rules that need a real
provider to show (its counts are the referee)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import requests

from oauth_auth import (
    InvalidGrantError,
    LoginError,
    MemorySecrets,
    OAuthTokenSource,
    OIDCAuth,
    OIDCParams,
)
from tests.support.api import ProtectedAPI
from tests.support.browser import http_browser_login, http_device_approve
from tests.support.fake_browser import cmdlines_holding, write_browser_script
from tests.support.idp import IdP, obtain_tokens, refresh_count
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_an_always_401_api_costs_one_refresh_not_one_per_request(
    real_idp: IdP, tmp_path: Path, api_factory: Callable[..., ProtectedAPI]
) -> None:
    tokens = obtain_tokens(real_idp)
    store = MemorySecrets()
    store.set_secret("KH", tokens["refresh_token"])
    expiry = datetime.fromtimestamp(time.time() + int(tokens["expires_in"]), tz=timezone.utc)
    store.set_secret("KH_AT", f"{tokens['access_token']}|{expiry:%Y-%m-%dT%H:%M:%SZ}")
    real_idp.reset_counts()
    api = api_factory(lambda token: True)
    api.mode = "always_401"
    source = OAuthTokenSource(OIDCParams(real_idp.issuer, real_idp.client_id),
                              key_provider=lambda: "KH", secrets_provider=store,
                              lock_dir=str(tmp_path / "locks"))
    auth = OIDCAuth(source)
    with requests.Session() as s, httpx.Client(auth=auth, timeout=10) as c:
        s.auth = auth
        statuses = [s.get(api.url + "/data", timeout=10).status_code for _ in range(10)]
        statuses += [c.get(api.url + "/data").status_code for _ in range(10)]
    assert statuses == [401] * 20
    # The first request was retried with a fresh token, which got 401 too; the other 19
    # were not retried (before reauth_interval this was 20 refresh grants).
    assert refresh_count(real_idp.counts()) == 1
    assert api.count() == 21
    assert store.get_secret("KH") != tokens["refresh_token"]  # the rotation was stored


# --- issue 15, item 1: nothing of the login on any command line -----------------------------


def _login_child(idp: IdP, tmp_path: Path, mode: str, **cfg: Any) -> subprocess.Popen[str]:
    """A process logging in with the default opener, `BROWSER` being the fake browser."""
    browser = write_browser_script(tmp_path / "browser")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BROWSER", "DISPLAY", "WAYLAND_DISPLAY", "SSH_"))}
    env.update(BROWSER=str(browser), FAKE_BROWSER_MODE=mode,
               FAKE_BROWSER_RECORD=str(tmp_path / "record.json"), PYTHONPATH=str(ROOT))
    settings = {"issuer": idp.issuer, "client_id": idp.client_id, "scopes": ["email"],
                "callback_port": free_port(), "lock_dir": str(tmp_path / "locks"), **cfg}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.login_child", json.dumps(settings)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _finish(child: subprocess.Popen[str], timeout: float = 90) -> tuple[dict[str, Any], str]:
    out, err = child.communicate(timeout=timeout)
    lines = out.strip().splitlines()
    assert lines, err
    return json.loads(lines[-1]), err


def test_the_default_browser_gets_a_one_time_start_page_and_no_argv_holds_the_login(
    real_idp: IdP, tmp_path: Path
) -> None:
    result, err = _finish(_login_child(real_idp, tmp_path, "login"))
    record = json.loads((tmp_path / "record.json").read_text())
    assert result["ok"], (result, err, record)
    # The browser command got the start page, on the callback server, and nothing else.
    (given,) = record["argv"]
    assert record["start_page"], given
    assert urlsplit(given).path.startswith("/start/")
    assert "state" not in given
    assert real_idp.issuer not in given
    assert record["first"]["status"] == 302
    assert record["first"]["location"].startswith(real_idp.authorization_endpoint)
    # While the login ran, no process's command line held the authorization URL, its
    # state, nonce or code challenge (the browser looked at every /proc/<pid>/cmdline).
    assert record["secrets_found"] == 3
    assert record["cmdlines_with_secrets"] == {}
    assert record["callback_status"] == 200
    assert real_idp.token_requests("authorization_code") == 1
    # The identity the login stored is exposed (the CLI prints it).
    assert result["stored"]
    assert result["identity"]["sub"] == "alice"
    assert result["identity"]["email"] == "alice@example.test"


def test_a_second_fetch_of_the_start_page_ends_the_login(real_idp: IdP, tmp_path: Path) -> None:
    result, _ = _finish(_login_child(real_idp, tmp_path, "twice"))
    record = json.loads((tmp_path / "record.json").read_text())
    assert not result["ok"], (result, record)
    assert result["code"] == "start_page_reused"
    assert "opened a second time" in result["error"]
    assert record["first"]["status"] == 302
    # The second fetcher got no redirect and no state; the code delivered later was refused.
    assert record["second"] == {"status": 400, "location": None, "body_has_state": False}
    assert record["callback_status"] == 409
    assert real_idp.token_requests("authorization_code", outcome=None) == 0


def test_device_login_gives_the_default_browser_no_user_code(
    real_idp: IdP, tmp_path: Path
) -> None:
    child = _login_child(real_idp, tmp_path, "record", method="device")
    assert child.stderr is not None
    code = uri = ""
    for line in child.stderr:
        found = re.search(r"open (\S+) in a browser on any device and enter the code: (\S+)",
                          line)
        if found:
            uri, code = found.groups()
            break
    assert code, "no device instructions on stderr"
    record_file = tmp_path / "record.json"
    deadline = time.monotonic() + 30
    while not record_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    record = json.loads(record_file.read_text())
    http_device_approve(uri, code)
    result, err = _finish(child)
    assert result["ok"], (result, err)
    assert record["argv"] == [uri]
    assert code not in " ".join(record["argv"])
    assert cmdlines_holding([code]) == {}


def test_an_open_browser_callable_gets_the_authorization_url_and_foreign_hosts_get_421(
    real_idp: IdP, tmp_path: Path
) -> None:
    seen: list[str] = []
    rebinding: list[int] = []

    def opener(url: str) -> bool:
        seen.append(url)
        callback = parse_qs(urlsplit(url).query)["redirect_uri"][0]
        port = urlsplit(callback).port
        # A page of evil.example, whose name was re-pointed at 127.0.0.1 (DNS rebinding).
        with httpx.Client(trust_env=False, timeout=5) as client:
            answer = client.get(f"http://127.0.0.1:{port}/callback?code=x&state=y",
                                headers={"Host": f"evil.example:{port}"})
        rebinding.append(answer.status_code)
        http_browser_login(url)
        return True

    source = OAuthTokenSource(
        OIDCParams(real_idp.issuer, real_idp.client_id, scopes=["email"],
                   callback_port=free_port()),
        key_provider=lambda: "KB", secrets_provider=MemorySecrets(), interactive=True,
        open_browser=opener, lock_dir=str(tmp_path / "locks"))
    assert source.token()
    (url,) = seen
    assert url.startswith(real_idp.authorization_endpoint)
    assert "state=" in url
    assert "code_challenge=" in url
    assert rebinding == [421]
    assert real_idp.token_requests("authorization_code") == 1
    identity = source.status(read_store=False).identity
    assert identity == {"sub": "alice", "email": "alice@example.test"}


# --- issue 15, item 12 ---------------------------------------------------------------------


def test_logout_revokes_at_the_provider_and_the_access_token_dies_with_it(
    real_idp: IdP, tmp_path: Path
) -> None:
    active = real_idp.active

    def session(with_refresh: bool) -> tuple[OAuthTokenSource, dict[str, Any]]:
        tokens = obtain_tokens(real_idp)
        store = MemorySecrets()
        if with_refresh:
            store.set_secret("KL", tokens["refresh_token"])
        expiry = datetime.fromtimestamp(time.time() + int(tokens["expires_in"]),
                                        tz=timezone.utc)
        store.set_secret("KL_AT", f"{tokens['access_token']}|{expiry:%Y-%m-%dT%H:%M:%SZ}")
        return OAuthTokenSource(OIDCParams(real_idp.issuer, real_idp.client_id),
                                key_provider=lambda: "KL", secrets_provider=store,
                                lock_dir=str(tmp_path / "locks")), tokens

    # With a refresh token: one revocation, and the provider revokes the grant's access
    # tokens with it (RFC 7009 section 2.1).
    source, tokens = session(with_refresh=True)
    real_idp.reset_counts()
    result = source.logout_result()
    assert (result.revoked, result.access_token_revoked) == (True, False)
    assert real_idp.counts()["revocation"] == 1
    assert not active(tokens["refresh_token"])
    assert not active(tokens["access_token"])
    # Only an access token (a provider that gave no refresh token): it is revoked itself.
    source, tokens = session(with_refresh=False)
    assert active(tokens["access_token"])
    real_idp.reset_counts()
    result = source.logout_result()
    assert (result.had_refresh_token, result.access_token_revoked) == (False, True)
    assert real_idp.counts()["revocation"] == 1
    assert not active(tokens["access_token"])


def test_a_provider_echoing_the_refresh_token_or_the_code_has_them_redacted(
    real_idp: IdP, tmp_path: Path
) -> None:
    tokens = obtain_tokens(real_idp)
    store = MemorySecrets()
    store.set_secret("KE", tokens["refresh_token"])
    echo = {"error": "invalid_grant",
            "error_description": "refresh token {form:refresh_token} is unknown"}
    real_idp.inject_fault("/token", status=400, body=echo)
    source = OAuthTokenSource(OIDCParams(real_idp.issuer, real_idp.client_id),
                              key_provider=lambda: "KE", secrets_provider=store,
                              lock_dir=str(tmp_path / "locks"))
    with pytest.raises(InvalidGrantError) as info:
        source.token()
    assert info.value.description == "refresh token [redacted] is unknown"
    assert tokens["refresh_token"] not in str(info.value)
    assert real_idp.counts()["faults"] == {"/token": 1}  # the provider did echo it

    callbacks: list[str] = []

    def opener(url: str) -> bool:
        callbacks.append(http_browser_login(url))
        return True

    real_idp.inject_fault("/token", status=400, body={
        "error": "invalid_grant",
        "error_description": "code {form:code} with verifier {form:code_verifier} refused"})
    login = OAuthTokenSource(
        OIDCParams(real_idp.issuer, real_idp.client_id, callback_port=free_port()),
        key_provider=lambda: "KC", secrets_provider=MemorySecrets(), interactive=True,
        open_browser=opener, lock_dir=str(tmp_path / "locks"))
    with pytest.raises(LoginError) as failed:
        login.token()
    (callback,) = callbacks
    code = parse_qs(urlsplit(callback).query)["code"][0]
    assert "code [redacted] with verifier [redacted] refused" in str(failed.value)
    assert code not in str(failed.value)
    assert code not in repr(failed.value.__cause__)


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.getuid() != 0,
                    reason="another local user needs root to play (CI runs as root)")
def test_another_local_user_who_fetches_the_start_page_first_gets_403_and_nothing_else(
    real_idp: IdP, tmp_path: Path
) -> None:
    """The race the start page leaves: a user watching for browser commands fetches the
    page before the browser starts. A request from another user's socket counts for
    nothing, so the user's own browser still logs in."""
    result, err = _finish(_login_child(real_idp, tmp_path, "attacker_first"))
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["attacker_status"] == 403
    assert result["ok"], (result, err, record)
    assert record["first"]["status"] == 302  # the start page was still unused
    assert record["callback_status"] == 200
    assert "another local user (uid 65534)" in err
    assert real_idp.token_requests("authorization_code") == 1
