"""End to end against the real oidc-provider: the tiers, rotation, OIDCAuth, processes.

A refresh token is seeded by logging in through the bench's own test client; then the
library takes over. The provider's admin counts are the referee.
"""

from __future__ import annotations

import contextlib
import os
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    derive_secret_key,
)
from tests.support.api import ProtectedAPI
from tests.support.browser import chromium_login, require_chromium
from tests.support.children import start_together
from tests.support.fakes import FakeClock
from tests.support.filesecrets import FileSecrets
from tests.support.hygiene import LEDGER
from tests.support.idp import IdP, obtain_tokens, refresh_count
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def seeded(idp: IdP, store: Any, key: str) -> str:
    """Log in with the bench client and store the refresh token under `key`."""
    tokens = obtain_tokens(idp)
    store.set_secret(key, tokens["refresh_token"])
    idp.reset_counts()
    return str(tokens["refresh_token"])


def make(idp: IdP, store: Any, key: str, tmp_path: Path, **kw: Any) -> OAuthTokenSource:
    return OAuthTokenSource(OIDCParams(idp.issuer, idp.client_id, audience=kw.pop("audience", "")),
                            key_provider=lambda: key, secrets_provider=store,
                            lock_dir=str(tmp_path / "locks"), **kw)


def test_tier3_restores_session_and_rotation_is_persisted(real_idp: IdP, tmp_path: Path) -> None:
    store = MemorySecrets()
    key = derive_secret_key("E2E_", "https://api.example.test", real_idp.issuer)
    old = seeded(real_idp, store, key)
    persisted: list[str] = []
    source = make(real_idp, store, key, tmp_path, config_persister=lambda k, e: persisted.append(k))

    token = source.token()

    assert refresh_count(real_idp.counts()) == 1
    new = store.get_secret(key)
    assert new is not None
    assert new != old
    assert persisted == [key]
    assert real_idp.active(token)
    assert not real_idp.active(old)  # the spent refresh token is refused...
    assert real_idp.active(new)  # ...and the stored one works
    # the same source serves from memory: no more token requests
    for _ in range(100):
        assert source.token() == token
    assert refresh_count(real_idp.counts()) == 1


def test_tier2_serves_a_second_source_without_any_token_request(
    real_idp: IdP, tmp_path: Path,
) -> None:
    store = MemorySecrets()
    seeded(real_idp, store, "K2")
    first = make(real_idp, store, "K2", tmp_path).token()
    before = real_idp.counts()
    second = make(real_idp, store, "K2", tmp_path)
    assert second.token() == first
    assert real_idp.counts().get("token", {}) == before.get("token", {})


def test_expiry_moves_through_the_tiers_with_one_refresh_per_window(
    real_idp: IdP, tmp_path: Path
) -> None:
    store = MemorySecrets()
    seeded(real_idp, store, "K3")
    clock = FakeClock(time.time())
    source = make(real_idp, store, "K3", tmp_path, clock=clock)
    first = source.token()
    assert refresh_count(real_idp.counts()) == 1
    clock.advance(3600 - 31)  # outside the 30 s window: memory
    assert source.token() == first
    clock.advance(2)  # inside the window: one refresh, however many calls
    tokens = {source.token() for _ in range(50)}
    assert len(tokens) == 1
    assert tokens != {first}
    assert refresh_count(real_idp.counts()) == 2
    assert refresh_count(real_idp.counts(), "invalid_grant") == 0
    # a new process (new source, same clock) finds the new token in tier 2
    other = make(real_idp, store, "K3", tmp_path, clock=clock)
    assert other.token() == tokens.pop()
    assert refresh_count(real_idp.counts()) == 2


def test_dead_refresh_token_is_invalid_grant_and_deleted(real_idp: IdP, tmp_path: Path) -> None:
    store = MemorySecrets()
    rt = seeded(real_idp, store, "K4")
    real_idp.revoke_all()
    source = make(real_idp, store, "K4", tmp_path)
    with pytest.raises(InvalidGrantError):
        source.token()
    assert store.get_secret("K4") is None
    assert rt not in repr(source)


def test_transient_provider_failure_keeps_the_refresh_token(real_idp: IdP, tmp_path: Path) -> None:
    store = MemorySecrets()
    rt = seeded(real_idp, store, "K5")
    real_idp.inject_fault("/token", count=3, status=503)
    source = make(real_idp, store, "K5", tmp_path, max_retries=0)
    with pytest.raises(Exception, match="503"):
        source.token()
    assert store.get_secret("K5") == rt
    real_idp.clear_faults()
    assert real_idp.active(source.token())


def test_resource_indicator_gives_an_audience_bound_jwt(real_idp: IdP, tmp_path: Path) -> None:
    resource = "https://api.example.test"
    tokens = obtain_tokens(real_idp, resource=resource)
    store = MemorySecrets({"K6": tokens["refresh_token"]})
    source = make(real_idp, store, "K6", tmp_path, audience=resource)
    token = source.token()
    from tests.support.idp import decode_jwt_payload

    assert decode_jwt_payload(token)["aud"] == resource


@pytest.fixture
def introspecting_api(api_factory: Callable[..., ProtectedAPI], real_idp: IdP) -> ProtectedAPI:
    return api_factory(real_idp.active)


CLIENTS = ["requests", "httpx", "httpx-async"]


def call(client: str, auth: OIDCAuth, url: str) -> int:
    if client == "requests":
        with requests.Session() as s:
            s.auth = auth
            return s.get(url, timeout=10).status_code
    if client == "httpx":
        with httpx.Client(auth=auth, timeout=10) as c:
            return c.get(url).status_code
    import asyncio

    async def go() -> int:
        async with httpx.AsyncClient(auth=auth, timeout=10) as c:
            return (await c.get(url)).status_code

    return asyncio.run(go())


@pytest.mark.parametrize("client", CLIENTS)
def test_oidcauth_recovers_from_a_rejected_token_with_one_retry(
    client: str, real_idp: IdP, introspecting_api: ProtectedAPI, tmp_path: Path
) -> None:
    store = MemorySecrets()
    seeded(real_idp, store, "K7")
    source = make(real_idp, store, "K7", tmp_path)
    first = source.token()
    real_idp.reset_counts()
    introspecting_api.rejected_tokens.add(first)  # the API is told to refuse it
    assert call(client, OIDCAuth(source), introspecting_api.url + "/data") == 200
    assert introspecting_api.count() == 2
    assert introspecting_api.seen[0].authorization == f"Bearer {first}"
    assert introspecting_api.seen[1].authorization != f"Bearer {first}"
    assert refresh_count(real_idp.counts()) == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_foreign_token_in_tier2_is_replaced_after_one_401(
    client: str, real_idp: IdP, introspecting_api: ProtectedAPI, tmp_path: Path
) -> None:
    store = MemorySecrets()
    seeded(real_idp, store, "K8")
    store.set_secret("K8_AT", "forged-token|2099-01-01T00:00:00Z")
    source = make(real_idp, store, "K8", tmp_path)
    assert call(client, OIDCAuth(source), introspecting_api.url + "/data") == 200
    assert next(s.authorization for s in introspecting_api.seen) == "Bearer forged-token"
    assert introspecting_api.count() == 2
    assert refresh_count(real_idp.counts()) == 1
    assert not (store.get_secret("K8_AT") or "").startswith("forged-token")


# --------------------------------------------------------------------- processes


def run_children(idp: IdP, store: str, key: str, tmp_path: Path, n: int = 16,
                 lock: bool = True, env: dict[str, str] | None = None,
                 modes: tuple[tuple[str, int], ...] = (("sync", 1),)) -> list[str]:
    """Start n children (cycling through `modes`: (mode, callers)); one line per caller."""
    base = {"issuer": idp.issuer, "client_id": idp.client_id, "key": key, "store": store,
            "lock": lock}
    child_env = dict(env or os.environ)
    child_env["OAUTH_AUTH_LOCK_DIR"] = str(tmp_path / "locks")
    child_env["PYTHONPATH"] = str(ROOT)
    configs = [{**base, "mode": modes[i % len(modes)][0], "callers": modes[i % len(modes)][1]}
               for i in range(n)]
    procs = start_together("tests.support.child_token", configs, tmp_path, env=child_env, cwd=ROOT)
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        outputs.extend(out.split("\n") if out.strip() else [f"ERROR no output: {err[-500:]}"])
        # The children's DEBUG logs join the run's secret-hygiene check, against every
        # token they printed (and the refresh tokens the tests record).
        LEDGER.text("child-log", err)
        for line in out.split("\n"):
            if line.startswith("TOKEN "):
                LEDGER.secret(line[6:], "child process token")
    if store.startswith("file:"):
        LEDGER.secret(FileSecrets(store[5:]).get_secret(key), "refresh token the children left")
    return [o for o in outputs if o.strip()]


def test_16_processes_make_one_refresh_and_no_invalid_grant(real_idp: IdP, tmp_path: Path) -> None:
    store = FileSecrets(tmp_path / "store")
    seeded(real_idp, store, "KP")
    outputs = run_children(real_idp, f"file:{tmp_path / 'store'}", "KP", tmp_path)
    assert all(o.startswith("TOKEN ") for o in outputs), outputs
    tokens = {o.split()[1] for o in outputs}
    counts = real_idp.counts()
    assert refresh_count(counts) == 1
    assert refresh_count(counts, "invalid_grant") == 0
    assert len(tokens) == 1
    assert all(real_idp.active(t) for t in tokens)
    stored = store.get_secret("KP")
    assert stored is not None
    assert real_idp.active(stored)  # the stored refresh token is the newest one


def test_threads_tasks_and_processes_mixed_make_one_refresh(real_idp: IdP, tmp_path: Path) -> None:
    """8 processes at expiry, half with 8 threads calling token(), half with 8 asyncio tasks
    calling atoken(): 64 callers, one refresh, no invalid_grant, one token for all."""
    store = FileSecrets(tmp_path / "store")
    seeded(real_idp, store, "KM")
    outputs = run_children(real_idp, f"file:{tmp_path / 'store'}", "KM", tmp_path, n=8,
                           modes=(("threads", 8), ("async", 8)))
    assert len(outputs) == 64, outputs
    assert all(o.startswith("TOKEN ") for o in outputs), outputs
    assert len({o.split()[1] for o in outputs}) == 1
    counts = real_idp.counts()
    assert refresh_count(counts) == 1
    assert refresh_count(counts, "invalid_grant") == 0
    stored = store.get_secret("KM")
    assert stored is not None
    assert real_idp.active(stored)


def test_without_the_lock_the_race_is_real(real_idp: IdP, tmp_path: Path) -> None:
    store = FileSecrets(tmp_path / "store")
    seeded(real_idp, store, "KR")
    outputs = run_children(real_idp, f"file:{tmp_path / 'store'}", "KR", tmp_path, lock=False)
    counts = real_idp.counts()
    assert refresh_count(counts, "invalid_grant") >= 1, (counts, outputs)
    assert any(o.startswith("ERROR InvalidGrantError") for o in outputs) or (
        refresh_count(counts) > 1
    )


@pytest.mark.keyring
def test_16_processes_on_the_real_secret_service(real_idp: IdP, tmp_path: Path,
                                                 secret_service: Any) -> None:
    from oauth_auth import KeyringSecrets

    store = KeyringSecrets()
    key = f"KPK_{time.monotonic_ns()}"
    seeded(real_idp, store, key)
    outputs = run_children(real_idp, "keyring", key, tmp_path, env=secret_service.subprocess_env())
    assert all(o.startswith("TOKEN ") for o in outputs), outputs
    counts = real_idp.counts()
    assert refresh_count(counts) == 1
    assert refresh_count(counts, "invalid_grant") == 0
    assert len({o.split()[1] for o in outputs}) == 1
    assert secret_service.daemon_alive()
    stored = store.get_secret(key)
    assert stored is not None
    assert real_idp.active(stored)


@pytest.mark.parametrize("which", ["http", pytest.param("chromium", marks=pytest.mark.browser)])
def test_login_then_a_new_process_needs_no_login(real_idp: IdP, tmp_path: Path, which: str,
                                                 background_browser: Any) -> None:
    """Issue 4: after one interactive login (HTTP-level browser, and headless Chromium),
    another process is served from tier 2 (and, once the access token is gone, tier 3)
    without logging in again."""
    store = FileSecrets(tmp_path / "store")
    persisted: list[str] = []
    if which == "chromium":
        require_chromium()
        browser = background_browser(chromium_login, login="dave", timeout=90)
    else:
        browser = background_browser()
    source = OAuthTokenSource(
        OIDCParams(real_idp.issuer, real_idp.client_id, callback_port=free_port()),
        key_provider=lambda: "KL", secrets_provider=store, interactive=True,
        open_browser=browser, lock_dir=str(tmp_path / "locks"),
        config_persister=lambda k, e: persisted.append(k), login_timeout=120,
    )
    token = source.token()
    browser.wait(30)
    assert real_idp.active(token)
    assert persisted == ["KL"]
    assert store.get_secret("KL")  # the refresh token was stored
    outputs = run_children(real_idp, f"file:{tmp_path / 'store'}", "KL", tmp_path, n=1)
    assert outputs == [f"TOKEN {token}"]  # tier 2
    store.delete_secret("KL_AT")
    outputs = run_children(real_idp, f"file:{tmp_path / 'store'}", "KL", tmp_path, n=1)
    assert outputs[0].startswith("TOKEN ")  # tier 3
    assert outputs[0] != f"TOKEN {token}"
    counts = real_idp.counts()["token"]
    assert counts["authorization_code"] == {"ok": 1}
    assert counts["refresh_token"] == {"ok": 1}



# ------------------------------------------------------------- a failed login stores nothing


def _callback_with(query: Callable[[dict[str, str]], dict[str, str]]) -> Callable[[str], None]:
    """A "browser" that answers the loopback callback itself with a crafted query, built
    from the authorization request's parameters (it knows the real state, as an attacker
    who raced the browser might not; `query` decides)."""

    def open_url(url: str) -> None:
        params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        target = params["redirect_uri"] + "?" + urllib.parse.urlencode(query(params))
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(target, timeout=5)

    return open_url


FAILED_LOGINS = {
    "access_denied": (lambda p, iss: {"error": "access_denied", "error_description": "no",
                                      "state": p["state"], "iss": iss}, "access_denied"),
    "iss mismatch": (lambda p, iss: {"code": "c", "state": p["state"],
                                     "iss": "http://127.0.0.1:1/evil"}, "iss"),
    "missing code": (lambda p, iss: {"state": p["state"], "iss": iss}, "code"),
    "forged code": (lambda p, iss: {"code": "forged-code", "state": p["state"], "iss": iss},
                    "invalid_grant"),
}


@pytest.mark.parametrize("case", sorted(FAILED_LOGINS))
def test_a_failed_login_is_a_login_error_and_stores_nothing(
    real_idp: IdP, tmp_path: Path, case: str
) -> None:
    make_query, fragment = FAILED_LOGINS[case]
    store = MemorySecrets()
    persisted: list[str] = []
    source = OAuthTokenSource(
        OIDCParams(real_idp.issuer, real_idp.client_id, callback_port=free_port()),
        key_provider=lambda: "KF", secrets_provider=store, interactive=True,
        open_browser=_callback_with(lambda p: make_query(p, real_idp.issuer)),
        lock_dir=str(tmp_path / "locks"), login_timeout=20,
        config_persister=lambda k, e: persisted.append(k),
    )
    with pytest.raises(LoginError) as info:
        source.token()
    assert fragment in str(info.value)
    assert info.value.hint
    assert store.get_secret("KF") is None
    assert store.get_secret("KF_AT") is None
    assert persisted == []
    assert "ok" not in str(real_idp.counts()["token"])  # no token was ever issued


def test_a_login_without_a_refresh_token_warns_once_and_names_offline_access(
    real_idp: IdP, tmp_path: Path, background_browser: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller overrode the scopes without offline_access: the provider issues no refresh
    token, so the session cannot outlive the process; one warning says so and why."""
    store = MemorySecrets()
    source = OAuthTokenSource(
        OIDCParams(real_idp.issuer, real_idp.client_id, callback_port=free_port()),
        key_provider=lambda: "KN", secrets_provider=store, interactive=True,
        open_browser=background_browser(), lock_dir=str(tmp_path / "locks"),
        auth_params={"scope": "openid", "prompt": "login"},
    )
    with caplog.at_level("WARNING", logger="oauth_auth"):
        token = source.token()
        assert source.token() == token  # served from memory: no second warning
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert "no refresh token" in warnings[0]
    assert "offline_access" in warnings[0]
    assert store.get_secret("KN") is None
    assert (store.get_secret("KN_AT") or "").startswith(token + "|")
