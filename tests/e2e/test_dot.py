"""End to end against a second, independently written server: django-oauth-toolkit 3.x.

The server (tests/dot, started by tests/support/dot.py) is real DOT with OIDC on, refresh
token rotation and no grace period; its own middleware counts every answer per endpoint,
grant type and outcome, which is what these tests assert on. The user is played at HTTP
level through Django's login form and DOT's consent form (`dot_browser_login`), plugged in
as the library's `open_browser`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from oauth_auth import (
    ConfigError,
    InvalidGrantError,
    LoginError,
    MemorySecrets,
    OAuthTokenSource,
    OIDCParams,
    TransportError,
    registry_auth,
)
from oauth_auth._idtoken import clear_jwks_cache
from tests.support.browser import Background
from tests.support.children import start_together
from tests.support.dot import (
    DEVICE_GRANT,
    DOT,
    bench_login,
    dot_browser_deny,
    dot_browser_login,
    dot_device_approve,
    free_port,
)
from tests.support.fakes import FakeClock
from tests.support.filesecrets import FileSecrets
from tests.support.hygiene import LEDGER
from tests.support.idp import refresh_count

ROOT = Path(__file__).resolve().parent.parent.parent


def source_for(dot: DOT, store: Any, key: str, tmp_path: Path, *, host: str = "127.0.0.1",
               client_id: str | None = None, oidc: dict[str, Any] | None = None,
               **kw: Any) -> OAuthTokenSource:
    """A token source for one of DOT's clients (the public one unless `client_id`), its
    loopback callback on `host`; `oidc` holds further OIDCParams fields."""
    # 127.0.0.1 takes any port (RFC 8252 section 7.3), localhost only the registered one.
    port = dot.localhost_port if host == "localhost" else free_port()
    params = OIDCParams(dot.issuer, client_id or dot.client_id, scopes=kw.pop("scopes", ()),
                        callback_port=port, **(oidc or {}))
    kw.setdefault("login_timeout", 60)
    return OAuthTokenSource(params, key_provider=lambda: key, secrets_provider=store,
                            lock_dir=str(tmp_path / "locks"), callback_host=host, **kw)


def seeded(dot: DOT, store: Any, key: str, *, expired_at: bool = False) -> dict[str, Any]:
    """A session logged in by the bench's own client, stored as the library stores it.

    With `expired_at`, its access token is in tier 2 too, already expired: the state every
    process finds when the shared access token has just run out.
    """
    tokens = bench_login(dot)
    store.set_secret(key, tokens["refresh_token"])
    if expired_at:
        past = (datetime.now(timezone.utc) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        store.set_secret(f"{key}_AT", f"{tokens['access_token']}|{past}")
    dot.reset_counts()
    return tokens


# ------------------------------------------------------------------------------------ login


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_login_through_dots_login_and_consent_pages(dot: DOT, tmp_path: Path,
                                                      host: str) -> None:
    store = MemorySecrets()
    persisted: list[tuple[str, datetime]] = []
    browser = Background(dot_browser_login, username="bob")
    source = source_for(dot, store, "DL", tmp_path, host=host, interactive=True,
                        open_browser=browser, scopes=["email"],
                        config_persister=lambda k, e: persisted.append((k, e)))

    token = source.token()
    callback = browser.wait(30)

    (url,) = browser.urls
    request = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert url.startswith(f"{dot.issuer}/authorize/?")
    assert request["redirect_uri"].startswith(f"http://{host}:")
    assert request["scope"].split() == ["email", "openid", "offline_access"]
    assert request["code_challenge_method"] == "S256"
    answer = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
    assert answer["state"] == request["state"]
    # DOT says who it issued the token to; the session is stored as DESIGN's tiers say.
    info = dot.introspect(token)
    assert info["active"] is True
    assert info["username"] == "bob"
    assert info["client_id"] == dot.client_id
    refresh_token = store.get_secret("DL")
    assert refresh_token
    assert dot.refresh(refresh_token).status_code == 200  # the stored one is DOT's
    assert (store.get_secret("DL_AT") or "").startswith(f"{token}|")
    assert [k for k, _ in persisted] == ["DL"]
    assert persisted[0][1] > datetime.now(timezone.utc) + timedelta(minutes=50)
    counts = dot.counts()
    assert counts["token"]["authorization_code"] == {"ok": 1}
    assert counts["authorization"]["ok"] == 1  # one consent page shown, then approved


def test_the_id_token_is_checked_against_dots_own_keys(dot: DOT, tmp_path: Path) -> None:
    """DOT's RS256 ID token is verified with its JWKS: served keys that are not DOT's make
    the login fail, and nothing is stored."""
    from joserfc.jwk import RSAKey

    clear_jwks_cache()  # an earlier login in this process cached DOT's real keys
    stranger = RSAKey.generate_key(2048).as_dict(private=False)
    dot.inject_fault("/o/.well-known/jwks.json", status=200, body={"keys": [stranger]})
    store = MemorySecrets()
    browser = Background(dot_browser_login)
    source = source_for(dot, store, "DI", tmp_path, interactive=True, open_browser=browser)
    with pytest.raises(LoginError) as info:
        source.token()
    browser.wait(30)
    assert "ID token" in str(info.value) or "signature" in str(info.value).lower(), info.value
    assert store.get_secret("DI") is None
    counts = dot.counts()
    assert counts["token"]["authorization_code"] == {"ok": 1}
    assert counts["faults"] == {"/o/.well-known/jwks.json": 1}


def test_cancel_at_consent_is_a_login_error_and_stores_nothing(dot: DOT, tmp_path: Path) -> None:
    store = MemorySecrets()
    browser = Background(dot_browser_deny)
    source = source_for(dot, store, "DD", tmp_path, interactive=True, open_browser=browser)
    with pytest.raises(LoginError) as info:
        source.token()
    browser.wait(30)
    assert info.value.error == "access_denied"
    assert store.get_secret("DD") is None
    assert store.get_secret("DD_AT") is None
    assert dot.counts().get("token", {}) == {}


# ---------------------------------------------------------------------------- tiers 2 and 3


def test_tier2_serves_a_second_process_without_a_token_request(dot: DOT, tmp_path: Path) -> None:
    store = FileSecrets(tmp_path / "store")
    browser = Background(dot_browser_login)
    first = source_for(dot, store, "D2", tmp_path, interactive=True, open_browser=browser)
    token = first.token()
    browser.wait(30)
    before = dot.counts()["token"]
    assert before == {"authorization_code": {"ok": 1}}

    outputs = run_children(dot, store, "D2", tmp_path, n=1)

    assert outputs == [f"TOKEN {token}"]
    assert dot.counts()["token"] == before  # no token request at all: tier 2 served it


def test_refresh_rotates_and_the_spent_refresh_token_is_refused(dot: DOT, tmp_path: Path) -> None:
    store = MemorySecrets()
    seed = seeded(dot, store, "DR")
    clock = FakeClock(time.time())
    source = source_for(dot, store, "DR", tmp_path, clock=clock)

    first = source.token()  # tier 3: the stored refresh token, rotated at once
    rotated = store.get_secret("DR")
    assert refresh_count(dot.counts()) == 1
    assert rotated
    assert rotated != seed["refresh_token"]
    assert dot.active(first)
    clock.advance(3600 - 31)  # still outside the 30 s window: memory
    assert source.token() == first
    clock.advance(2)  # inside it: one refresh for any number of calls
    second = {source.token() for _ in range(20)}
    assert len(second) == 1
    assert second != {first}
    newest = store.get_secret("DR")
    assert newest
    assert newest not in (rotated, seed["refresh_token"])
    counts = dot.counts()
    assert refresh_count(counts) == 2
    assert refresh_count(counts, "invalid_grant") == 0
    # DOT rotated for real: both spent refresh tokens are refused, the stored one works.
    for spent in (seed["refresh_token"], rotated):
        answer = dot.refresh(spent)
        assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")
    assert dot.refresh(newest).status_code == 200


def test_a_dead_refresh_token_is_invalid_grant_and_deleted(dot: DOT, tmp_path: Path) -> None:
    store = MemorySecrets()
    seeded(dot, store, "DX")
    assert dot.revoke_all() >= 1
    source = source_for(dot, store, "DX", tmp_path)
    with pytest.raises(InvalidGrantError):
        source.token()
    assert store.get_secret("DX") is None
    assert refresh_count(dot.counts(), "invalid_grant") == 1


def test_a_server_error_on_refresh_keeps_the_refresh_token(dot: DOT, tmp_path: Path) -> None:
    store = MemorySecrets()
    seed = seeded(dot, store, "DT")
    dot.inject_fault("/o/token/", count=10, status=503, grant_type="refresh_token")
    source = source_for(dot, store, "DT", tmp_path, max_retries=0)
    with pytest.raises(TransportError):
        source.token()
    assert store.get_secret("DT") == seed["refresh_token"]
    assert dot.counts()["token"] == {"refresh_token": {"fault": 1}}
    dot.reset()
    assert dot.active(source.token())  # the kept refresh token still works


# --------------------------------------------------------------------------------- processes


def run_children(dot: DOT, store: FileSecrets, key: str, tmp_path: Path, *, n: int,
                 lock: bool = True,
                 modes: tuple[tuple[str, int], ...] = (("sync", 1),)) -> list[str]:
    """Start `n` tests.support.child_token processes on the file store, release them at
    once, and return one line per caller ("TOKEN <t>" or "ERROR <type> <message>")."""
    base = {"issuer": dot.issuer, "client_id": dot.client_id, "key": key,
            "store": f"file:{store.dir}", "lock": lock}
    env = dict(os.environ, OAUTH_AUTH_LOCK_DIR=str(tmp_path / "locks"), PYTHONPATH=str(ROOT))
    configs = [{**base, "mode": modes[i % len(modes)][0], "callers": modes[i % len(modes)][1]}
               for i in range(n)]
    procs = start_together("tests.support.child_token", configs, tmp_path, env=env, cwd=ROOT)
    lines: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=150)
        LEDGER.text("child-log", err)
        got = [line for line in out.splitlines() if line.strip()]
        lines.extend(got or [f"ERROR no output: {err[-500:]}"])
        for line in got:
            if line.startswith("TOKEN "):
                LEDGER.secret(line[6:], "child process token")
    LEDGER.secret(store.get_secret(key), "refresh token the children left")
    return lines


def test_8_processes_at_expiry_make_1_refresh_and_no_invalid_grant(dot: DOT,
                                                                  tmp_path: Path) -> None:
    """8 processes (32 callers: plain calls, threads, asyncio tasks) find the shared access
    token just expired: DOT sees one refresh of the rotating grant, no invalid_grant."""
    store = FileSecrets(tmp_path / "store")
    seed = seeded(dot, store, "DH", expired_at=True)

    outputs = run_children(dot, store, "DH", tmp_path, n=8,
                           modes=(("sync", 1), ("threads", 8), ("async", 8), ("sync", 1)))

    assert len(outputs) == 2 * (1 + 8 + 8 + 1), outputs
    assert all(o.startswith("TOKEN ") for o in outputs), outputs
    tokens = {o.split()[1] for o in outputs}
    assert len(tokens) == 1
    assert tokens != {seed["access_token"]}
    counts = dot.counts()
    print(f"\nDOT herd: {counts['token']}")
    assert refresh_count(counts) == 1
    assert refresh_count(counts, "invalid_grant") == 0
    assert counts["token"] == {"refresh_token": {"ok": 1}}
    assert dot.active(tokens.pop())
    stored = store.get_secret("DH")
    assert stored
    assert stored != seed["refresh_token"]
    assert dot.refresh(stored).status_code == 200  # the newest refresh token was kept


def test_without_the_lock_dot_sees_the_race(dot: DOT, tmp_path: Path) -> None:
    """The control of the test above: the same herd with the cross-process lock switched
    off makes DOT answer invalid_grant (or refresh more than once)."""
    store = FileSecrets(tmp_path / "store")
    seeded(dot, store, "DN", expired_at=True)
    outputs = run_children(dot, store, "DN", tmp_path, n=8, lock=False)
    counts = dot.counts()
    print(f"\nDOT herd without the lock: {counts['token']}")
    assert refresh_count(counts) + refresh_count(counts, "invalid_grant") >= 2, outputs



# ------------------------------------------------------------------------- logout (RFC 7009)


def test_logout_revokes_at_dot_through_its_rfc_8414_revocation_endpoint(
        dot: DOT, tmp_path: Path) -> None:
    """DOT names its revocation endpoint only in its RFC 8414 document: logout finds it
    there, DOT revokes the refresh token (and with it the access token), and both
    secrets entries are gone."""
    assert "revocation_endpoint" not in dot.metadata("openid")
    store = MemorySecrets()
    seeded(dot, store, "DO")
    source = source_for(dot, store, "DO", tmp_path)
    access = source.token()  # a refresh: the session's live tokens are these
    live = store.get_secret("DO")
    assert live
    assert dot.active(access)
    dot.reset_counts()

    result = source.logout_result()

    assert (result.had_refresh_token, result.revoked, result.revocation_error,
            result.deleted) == (True, True, "", True)
    counts = dot.counts()
    assert counts["revocation"] == {"ok": 1}
    assert counts["oauth_metadata"] == {"ok": 1}  # where the endpoint was found
    assert dot.client_auth()["revocation:none"] == 1
    # Revoked at DOT, not only forgotten here: the refresh token is refused, and DOT
    # dropped the access token it had issued with it.
    answer = dot.refresh(live)
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")
    assert dot.introspect(access)["active"] is False
    assert store.get_secret("DO") is None
    assert store.get_secret("DO_AT") is None


# ------------------------------------------------------------------------ the device grant


def test_the_device_grant_through_endpoints(dot: DOT, tmp_path: Path) -> None:
    """DOT serves the device grant but advertises its endpoint nowhere: `endpoints`
    names it. The user approves on DOT's own device pages (played at HTTP level); the
    library polls at DOT's interval and stores the session."""
    store = MemorySecrets()
    oidc = {"endpoints": {"device_authorization_endpoint": dot.device_authorization_endpoint}}
    browser = Background(dot_device_approve, username="bob")
    source = source_for(dot, store, "DV", tmp_path, client_id=dot.device_client_id, oidc=oidc,
                        interactive=True, login_method="device", open_browser=browser)

    token = source.token()
    page = browser.wait(30)

    assert "Authorized" in page
    (url,) = browser.urls  # the opener got verification_uri_complete
    assert url.startswith(f"{dot.issuer}/device/?user_code=")
    info = dot.introspect(token)
    assert (info["active"], info["username"], info["client_id"]) == (
        True, "bob", dot.device_client_id)
    assert set(info["scope"].split()) == {"openid", "offline_access"}
    counts = dot.counts()
    assert counts["device_authorization"] == {"ok": 1}
    polls = counts["token"][DEVICE_GRANT]
    assert polls["ok"] == 1
    assert set(polls) <= {"ok", "authorization_pending"}
    assert "authorization" not in counts  # no browser login
    refresh_token = store.get_secret("DV")
    assert refresh_token
    answer = dot.refresh(refresh_token, client_id=dot.device_client_id)
    assert answer.status_code == 200, answer.text  # the stored session is DOT's


def test_without_endpoints_the_device_grant_is_a_clear_login_error(dot: DOT,
                                                                  tmp_path: Path) -> None:
    """The control: from discovery alone there is no device endpoint to use."""
    source = source_for(dot, MemorySecrets(), "DW", tmp_path, client_id=dot.device_client_id,
                        interactive=True, login_method="device",
                        open_browser=lambda url: True)
    with pytest.raises((LoginError, ConfigError)) as info:
        source.token()
    assert "device" in str(info.value)
    assert "device_authorization" not in dot.counts()


# ------------------------------------------------------------------ a confidential client


@pytest.mark.parametrize("methods", [None, ["client_secret_post"]])
def test_a_confidential_client_authenticates_as_dot_advertises(
        dot: DOT, tmp_path: Path, methods: list[str] | None) -> None:
    """With a client secret: client_secret_basic when DOT lists both methods, _post when
    it lists only that (and refuses the other), on the code exchange, the refresh and
    the revocation alike. The secret is in no repr."""
    if methods is not None:
        dot.configure(auth_methods=methods)
    expected = "client_secret_post" if methods else "client_secret_basic"
    store = MemorySecrets()
    clock = FakeClock(time.time())
    browser = Background(dot_browser_login)
    source = source_for(dot, store, "DC", tmp_path, client_id=dot.confidential_client_id,
                        oidc={"client_secret": dot.confidential_client_secret},
                        interactive=True, open_browser=browser, clock=clock)
    assert dot.confidential_client_secret not in repr(source.oidc)

    first = source.token()
    browser.wait(30)
    clock.advance(3600)
    second = source.token()  # a refresh
    assert second != first
    info = dot.introspect(second)
    assert (info["active"], info["client_id"]) == (True, dot.confidential_client_id)
    result = source.logout_result()
    assert result.revoked is True

    counts = dot.counts()
    assert counts["token"] == {"authorization_code": {"ok": 1}, "refresh_token": {"ok": 1}}
    assert counts["revocation"] == {"ok": 1}
    auth = dot.client_auth()
    assert auth[f"token:{expected}"] == 2
    assert auth[f"revocation:{expected}"] == 1
    assert "token:none" not in auth
    assert not dot.active(second)


def test_a_confidential_client_with_a_wrong_secret_is_refused(dot: DOT, tmp_path: Path) -> None:
    browser = Background(dot_browser_login)
    store = MemorySecrets()
    source = source_for(dot, store, "DF", tmp_path, client_id=dot.confidential_client_id,
                        oidc={"client_secret": "not-the-secret"}, interactive=True,
                        open_browser=browser)
    with pytest.raises(LoginError) as info:
        source.token()
    browser.wait(30)
    assert info.value.error == "invalid_client"
    assert store.get_secret("DF") is None
    assert dot.counts()["token"] == {"authorization_code": {"invalid_client": 1}}


# --------------------------------------------------------- a server without offline_access


def test_a_server_without_offline_access_logs_in_and_still_refreshes(dot: DOT,
                                                                      tmp_path: Path) -> None:
    """DOT configured without the offline_access scope refuses any request for it; the
    offline_access=None rule leaves it out (and prompt=consent with it), and DOT issues
    a refresh token anyway, which the next process uses."""
    dot.configure(offline_access=False)
    assert "offline_access" not in dot.metadata("openid")["scopes_supported"]
    store = MemorySecrets()
    clock = FakeClock(time.time())
    browser = Background(dot_browser_login)
    source = source_for(dot, store, "DA", tmp_path, interactive=True, open_browser=browser,
                        clock=clock, scopes=["email"])

    token = source.token()
    browser.wait(30)

    (url,) = browser.urls
    request = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert request["scope"].split() == ["email", "openid"]
    assert "prompt" not in request
    assert dot.active(token)
    assert store.get_secret("DA")
    clock.advance(3600)
    assert dot.active(source.token())  # the refresh token DOT gave anyway
    assert dot.counts()["token"] == {"authorization_code": {"ok": 1}, "refresh_token": {"ok": 1}}


def test_asking_a_server_without_offline_access_for_it_is_refused(dot: DOT,
                                                                   tmp_path: Path) -> None:
    """The control: offline_access=True (ToolHive's rule) gets DOT's invalid_scope."""
    dot.configure(offline_access=False)
    browser = Background(dot_browser_login)
    source = source_for(dot, MemorySecrets(), "DB", tmp_path, interactive=True,
                        open_browser=browser, oidc={"offline_access": True})
    with pytest.raises(LoginError) as info:
        source.token()
    browser.wait(30)
    assert info.value.error == "invalid_scope"
    assert dot.counts().get("token", {}) == {}


def test_a_registry_profile_on_a_server_without_offline_access(dot: DOT, tmp_path: Path) -> None:
    """The same through registry_auth, whose profile once added offline_access itself."""
    dot.configure(offline_access=False)
    browser = Background(dot_browser_login, username="bob")
    store = MemorySecrets()
    auth = registry_auth("https://registry.example.test", issuer=dot.issuer,
                         client_id=dot.client_id, callback_port=dot.localhost_port,
                         interactive=True, open_browser=browser, secrets_provider=store,
                         config_path=str(tmp_path / "config.toml"), login_timeout=60)
    source = auth.source
    assert isinstance(source, OAuthTokenSource)
    token = source.token()
    browser.wait(30)
    (url,) = browser.urls
    request = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert request["scope"].split() == ["openid"]
    assert dot.introspect(token)["username"] == "bob"


def test_an_hs256_id_token_from_dot_is_checked_with_the_client_secret(dot: DOT,
                                                                       tmp_path: Path) -> None:
    """DOT signs this client's ID tokens HS256 with its secret: the login checks them with
    the secret (DOT's JWKS is not fetched for it) and stores the session."""
    store = MemorySecrets()
    browser = Background(dot_browser_login)
    source = source_for(dot, store, "DH2", tmp_path, client_id=dot.hs256_client_id,
                        oidc={"client_secret": dot.hs256_client_secret}, interactive=True,
                        open_browser=browser)
    token = source.token()
    browser.wait(30)
    assert dot.introspect(token)["client_id"] == dot.hs256_client_id
    assert store.get_secret("DH2")
    counts = dot.counts()
    assert counts["token"] == {"authorization_code": {"ok": 1}}
    assert "jwks" not in counts


# -------------------------------------------------- RFC 8252 registration: 127.0.0.1, any port


def test_oidcparams_callback_host_uses_a_client_registered_on_127_0_0_1(
        dot: DOT, tmp_path: Path) -> None:
    """DOT's public client is registered the RFC 8252 way, `http://127.0.0.1/callback`
    on any port (and `localhost` on one port only): OIDCParams(callback_host="127.0.0.1")
    logs in on a port of its own choosing; `localhost` on that port is refused by DOT."""
    port = free_port()
    refused = Background(dot_browser_login)
    wrong = OAuthTokenSource(OIDCParams(dot.issuer, dot.client_id, callback_port=port),
                             key_provider=lambda: "DL0", secrets_provider=MemorySecrets(),
                             interactive=True, open_browser=refused, login_timeout=1,
                             lock_dir=str(tmp_path / "locks"))
    with pytest.raises(LoginError):
        wrong.token()  # DOT shows an error page and never redirects
    assert "redirect" in str(refused.failure()).lower(), refused.failure()

    store = MemorySecrets()
    browser = Background(dot_browser_login)
    params = OIDCParams(dot.issuer, dot.client_id, callback_port=port,
                        callback_host="127.0.0.1")
    source = OAuthTokenSource(params, key_provider=lambda: "DL1", secrets_provider=store,
                              interactive=True, open_browser=browser, login_timeout=60,
                              lock_dir=str(tmp_path / "locks"))
    token = source.token()
    browser.wait(30)
    (url,) = browser.urls
    request = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert request["redirect_uri"] == f"http://127.0.0.1:{port}/callback"
    assert dot.active(token)
    assert store.get_secret("DL1")
    assert dot.counts()["token"] == {"authorization_code": {"ok": 1}}


# ------------------------------------------------------------ the CLI, --callback-host 127.0.0.1


def test_the_cli_logs_in_with_callback_host_127_0_0_1(dot: DOT, secret_service: Any,
                                                       tmp_path: Path) -> None:
    """`oauth-auth login --callback-host 127.0.0.1` with DOT's client registered the RFC
    8252 way (`http://127.0.0.1/callback`, any port): the user (a `$BROWSER` command
    playing DOT's pages) comes back to 127.0.0.1, the session is in the keyring, the
    setting in the profile; `token` then serves it, `logout` revokes it at DOT."""
    from oauth_auth._config import CONFIG_ENV, Config

    seen = tmp_path / "callback.txt"
    browser = tmp_path / "browser"
    browser.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.support.dot import dot_browser_login\n"
        "callback = dot_browser_login(sys.argv[1])\n"
        f"open({str(seen)!r}, 'w').write(callback.split('?')[0])\n"
    )
    browser.chmod(0o755)
    cfg = tmp_path / "cfg" / "config.json"
    env = {k: v for k, v in secret_service.subprocess_env().items()
           if not k.startswith(("DISPLAY", "WAYLAND_DISPLAY", "OAUTH_AUTH_"))}
    env.update({"BROWSER": str(browser), CONFIG_ENV: str(cfg),
                "OAUTH_AUTH_LOCK_DIR": str(tmp_path / "locks"), "PYTHONPATH": str(ROOT)})
    port = free_port()
    cli = [sys.executable, "-m", "oauth_auth"]
    profile = ["--profile", "dotcli"]

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*cli, *argv], env=env, cwd=ROOT, capture_output=True,
                                text=True, timeout=90, check=False)
        LEDGER.text("cli-stderr", result.stderr)
        return result

    login = run("login", *profile, "--issuer", dot.issuer, "--client-id", dot.client_id,
                "--callback-host", "127.0.0.1", "--callback-port", str(port))
    assert (login.returncode, login.stdout) == (0, ""), login.stderr
    assert seen.read_text() == f"http://127.0.0.1:{port}/callback"
    assert dot.counts()["token"] == {"authorization_code": {"ok": 1}}
    entry = Config(cfg).entry("profiles", "dotcli")
    assert entry is not None
    assert entry["callback_host"] == "127.0.0.1"

    try:
        token = run("token", *profile)
        assert token.returncode == 0, token.stderr
        access = token.stdout.strip()
        LEDGER.secret(access, "CLI token")
        assert dot.active(access)
        assert dot.counts()["token"] == {"authorization_code": {"ok": 1}}  # tier 2
    finally:
        logout = run("logout", *profile)
    assert logout.returncode == 0, logout.stderr
    assert dot.counts()["revocation"] == {"ok": 1}
    assert not dot.active(access)
