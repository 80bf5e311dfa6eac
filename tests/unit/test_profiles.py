"""The config file and the turnkey profiles (registry_auth, llm_gateway_auth), with fakes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import urllib.parse
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oauth_auth import (
    ConfigError,
    InvalidGrantError,
    LoginError,
    LoginRequiredError,
    MemorySecrets,
    OIDCAuth,
    SecretsError,
    derive_secret_key,
    llm_access_token_env_var,
    llm_gateway_auth,
    registry_auth,
)
from oauth_auth._config import CONFIG_ENV, Config, config_path
from oauth_auth._token import format_rfc3339
from oauth_auth.profiles import (
    ADHOC,
    LLM,
    PROFILE,
    REGISTRY,
    NotConfiguredError,
    default_interactive,
    open_session,
)
from oauth_auth.source import OAuthTokenSource
from tests.support.fakes import ISSUER, CountingSecrets, FakeClock, FakeProvider

REGISTRY_URL = "https://registry.example.test"
#: ToolHive's scope of registry secrets: `__thv_registry_<key>` (DESIGN, Release 2).
REG = "__thv_registry_"
GATEWAY_URL = "https://llm.example.test"
CLIENT = "registry-cli"
ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("isolated_config")


def _opts(provider: FakeProvider, secrets: Any, **more: Any) -> dict[str, Any]:
    return {"secrets_provider": secrets, "transport": provider.transport(), "max_retries": 0,
            **more}


def _source(auth: OIDCAuth) -> OAuthTokenSource:
    source = auth.source
    assert isinstance(source, OAuthTokenSource)
    return source


def _at(token: str, seconds: float) -> str:
    when = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return f"{token}|{format_rfc3339(when)}"


class BrokenStore:
    """A store whose every call fails, like a keyring with no usable backend."""

    writable = True

    def __init__(self) -> None:
        self.calls = 0

    def get_secret(self, name: str) -> str | None:
        self.calls += 1
        raise SecretsError("no usable keyring backend (test)")

    def set_secret(self, name: str, value: str) -> None:
        self.calls += 1
        raise SecretsError("no usable keyring backend (test)")

    def delete_secret(self, name: str) -> None:
        self.calls += 1
        raise SecretsError("no usable keyring backend (test)")


# ------------------------------------------------------------------------------ config file


def test_config_path_env_override_and_platform_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert config_path() == tmp_path / "cfg" / "config.json"
    monkeypatch.delenv(CONFIG_ENV)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert config_path() == tmp_path / "xdg" / "oauth-auth" / "config.json"
    assert config_path().name == "config.json"


def test_missing_file_reads_as_empty_and_is_not_created(cfg_file: Path) -> None:
    config = Config()
    assert config.load() == {"version": 1, "profiles": {}, "registries": {},
                             "llm_gateways": {}, "resources": {}}
    assert config.entry("registries", REGISTRY_URL) is None
    config.forget_session("registries", REGISTRY_URL)
    assert not cfg_file.exists()


def test_round_trip_modes_and_atomicity(cfg_file: Path) -> None:
    config = Config()
    config.set_entry("profiles", "work", {"issuer": ISSUER, "client_id": "cli",
                                          "scopes": ["email"], "callback_port": 9000})
    assert stat.S_IMODE(cfg_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg_file.parent.stat().st_mode) == 0o700
    doc = json.loads(cfg_file.read_text())
    assert doc["version"] == 1
    assert doc["profiles"]["work"] == {"issuer": ISSUER, "client_id": "cli",
                                       "scopes": ["email"], "callback_port": 9000}
    # Merge, and None removes a field; unknown keys survive.
    doc["future"] = {"kept": True}
    cfg_file.write_text(json.dumps(doc))
    config.set_entry("profiles", "work", {"audience": "api", "callback_port": None})
    again = Config().load()
    assert again["profiles"]["work"] == {"issuer": ISSUER, "client_id": "cli",
                                         "scopes": ["email"], "audience": "api"}
    assert again["future"] == {"kept": True}
    # No temporary files left behind, and no lock (it is in the lock directory).
    assert sorted(p.name for p in cfg_file.parent.iterdir()) == ["config.json"]


def test_a_toml_config_is_read_and_written_back_as_toml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_idp: FakeProvider
) -> None:
    """DESIGN: the config file is TOML or JSON. A `.toml` file stays TOML through the
    persister's write-back, and what the user wrote (comments aside) survives."""
    from oauth_auth._config import _parse_toml

    path = tmp_path / "cfg" / "config.toml"
    path.parent.mkdir()
    path.write_text(
        "# my settings\n"
        f'[registries."{REGISTRY_URL}"]\n'
        f'issuer = "{ISSUER}"\nclient_id = "{CLIENT}"\nscopes = ["registry:read"]\n'
        "callback_port = 9123\n"
        "[future]\nkept = true\nnested = {a = 1}\n"
    )
    monkeypatch.setenv(CONFIG_ENV, str(path))
    key = derive_secret_key("REGISTRY_OAUTH_", REGISTRY_URL, ISSUER)
    secrets = MemorySecrets({REG + key: fake_idp.seed("rt-0")})
    source = _source(registry_auth(REGISTRY_URL, interactive=False, **_opts(fake_idp, secrets)))
    assert source.oidc.callback_port == 9123
    assert source.oidc.scopes == ("openid", "registry:read")
    assert source.token() == "at-1"

    doc = _parse_toml(path.read_text())  # still TOML, with the session's ref added
    entry = doc["registries"][REGISTRY_URL]
    assert entry["cached_refresh_token_ref"] == key
    assert entry["cached_token_expiry"].endswith("Z")
    assert entry["scopes"] == ["registry:read"]
    assert doc["future"] == {"kept": True, "nested": {"a": 1}}
    assert doc["version"] == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_invalid_toml_config_is_named_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[profiles.work\nissuer = "x"\n')
    config = Config(path)
    with pytest.raises(ConfigError, match=r"is not valid TOML \(.*line 1") as info:
        config.set_entry("profiles", "p", {"issuer": ISSUER})
    assert str(path) in str(info.value)
    assert path.read_text() == '[profiles.work\nissuer = "x"\n'


@settings(max_examples=150, deadline=None)
@given(
    names=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=4, unique=True),
    value=st.text(max_size=60),
    scopes=st.lists(st.text(max_size=20), max_size=4),
    port=st.integers(min_value=0, max_value=65535),
)
def test_any_entry_round_trips_through_toml(
    names: list[str], value: str, scopes: list[str], port: int
) -> None:
    """Quotes, backslashes, newlines, control characters, DEL, non-BMP text, dots and
    brackets in names: whatever the JSON file can hold, the TOML file holds too."""
    from oauth_auth._config import _dump_toml, _parse_toml

    doc = {"version": 1, "profiles": {n: {"issuer": value, "scopes": scopes,
                                          "callback_port": port} for n in names},
           "registries": {}, "llm_gateways": {"x": {"audience": value}}}
    assert _parse_toml(_dump_toml(doc)) == doc


def test_the_default_path_is_config_toml_when_only_it_exists(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(CONFIG_ENV)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    directory = tmp_path / "xdg" / "oauth-auth"
    directory.mkdir(parents=True)
    if not sys.platform.startswith("linux"):
        pytest.skip("XDG_CONFIG_HOME is the Linux config root")
    assert config_path().name == "config.json"
    (directory / "config.toml").write_text("")
    assert config_path() == directory / "config.toml"
    (directory / "config.json").write_text("{}")
    assert config_path() == directory / "config.json"  # both: JSON, as before


def test_unchanged_entry_is_not_rewritten(cfg_file: Path) -> None:
    config = Config()
    config.set_entry("registries", REGISTRY_URL, {"issuer": ISSUER})
    before = cfg_file.stat().st_mtime_ns
    os.utime(cfg_file, ns=(before - 10**9, before - 10**9))
    config.set_entry("registries", REGISTRY_URL, {"issuer": ISSUER})
    assert cfg_file.stat().st_mtime_ns == before - 10**9


def test_trailing_slash_finds_the_same_entry() -> None:
    config = Config()
    config.set_entry("registries", REGISTRY_URL + "/", {"issuer": ISSUER})
    entry = config.entry("registries", REGISTRY_URL)
    assert entry == {"issuer": ISSUER}
    config.set_entry("registries", REGISTRY_URL, {"client_id": "x"})
    assert list(config.load()["registries"]) == [REGISTRY_URL + "/"]


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'{"profiles": []}', "'profiles' is not an object"),
        (b'{"registries": {"u": {"issuer": 3}}}', "issuer is not a string"),
        (b'{"registries": {"u": {"scopes": "a b"}}}', "scopes is not a list"),
        (b'{"profiles": {"p": {"callback_port": 70000}}}', "callback_port"),
        (b'{"version": "1"}', "version"),
    ],
)
def test_corrupt_file_is_named_and_never_overwritten(cfg_file: Path, content: bytes,
                                                     why: str) -> None:
    cfg_file.parent.mkdir(parents=True)
    cfg_file.write_bytes(content)
    config = Config()
    with pytest.raises(ConfigError) as info:
        config.load()
    assert str(cfg_file) in str(info.value)
    assert why in str(info.value)
    with pytest.raises(ConfigError):
        config.set_entry("profiles", "x", {"issuer": ISSUER})
    with pytest.raises(ConfigError):
        config.forget_session("registries", "u")
    assert cfg_file.read_bytes() == content


def test_newer_version_is_refused(cfg_file: Path) -> None:
    cfg_file.parent.mkdir(parents=True)
    cfg_file.write_text('{"version": 2}')
    with pytest.raises(ConfigError, match="newer"):
        Config().load()


def test_concurrent_writers_in_processes_all_keep_their_entries(cfg_file: Path) -> None:
    code = (
        "import sys\n"
        "from oauth_auth._config import Config\n"
        "n = sys.argv[1]\n"
        "for i in range(5):\n"
        "    Config().set_entry('registries', f'https://r{n}-{i}.test', {'issuer': n})\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(n)], cwd=ROOT)
        for n in range(6)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0] * 6
    entries = Config().load()["registries"]
    assert len(entries) == 30
    assert stat.S_IMODE(cfg_file.stat().st_mode) == 0o600


def test_format_expiry_is_rfc3339_utc() -> None:
    when = datetime(2026, 11, 28, 23, 15, 3, 999, tzinfo=timezone(timedelta(hours=1)))
    assert format_rfc3339(when) == "2026-11-28T22:15:03Z"
    assert format_rfc3339(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"


# ------------------------------------------------------------------------------ registry_auth


def test_registry_auth_needs_settings_and_names_the_command() -> None:
    with pytest.raises(NotConfiguredError) as info:
        registry_auth(REGISTRY_URL, secrets_provider=MemorySecrets())
    err = info.value
    assert isinstance(err, ConfigError)
    assert isinstance(err, LoginRequiredError)
    assert f"oauth-auth registry login --registry {REGISTRY_URL}" in err.hint
    assert "--issuer" in err.hint
    assert "--client-id" in err.hint


def test_registry_auth_from_arguments_refreshes_and_persists_to_config(
    fake_idp: FakeProvider, cfg_file: Path
) -> None:
    secrets = MemorySecrets()
    key = derive_secret_key("REGISTRY_OAUTH_", REGISTRY_URL, ISSUER)
    secrets.set_secret(REG + key, fake_idp.seed("rt-0"))
    auth = registry_auth(REGISTRY_URL, issuer=ISSUER, client_id=CLIENT, interactive=False,
                         **_opts(fake_idp, secrets))
    assert isinstance(auth, OIDCAuth)
    source = _source(auth)
    assert source.oidc.scopes == ("openid",)
    assert source.token() == "at-1"
    assert fake_idp.counts["refresh"] == 1
    assert secrets.get_secret(REG + key) == "rt-1"
    assert secrets.get_secret(REG + key + "_AT", ).startswith("at-1|")  # type: ignore[union-attr]
    entry = Config().entry("registries", REGISTRY_URL)
    assert entry is not None
    assert entry["cached_refresh_token_ref"] == key
    assert entry["issuer"] == ISSUER
    assert entry["client_id"] == CLIENT
    expiry = datetime.fromisoformat(entry["cached_token_expiry"].replace("Z", "+00:00"))
    assert abs(expiry.timestamp() - (datetime.now(timezone.utc).timestamp() + 3600)) < 60
    assert entry["cached_token_expiry"].endswith("Z")
    assert stat.S_IMODE(cfg_file.stat().st_mode) == 0o600


def _cancelling_browser(urls: list[str]) -> Any:
    """An `open_browser` that records the authorization URL, then cancels as the user
    would (error=access_denied at the callback): the login ends at once."""

    def open_browser(url: str) -> bool:
        urls.append(url)
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        callback = (f"{query['redirect_uri']}?"
                    + urllib.parse.urlencode({"error": "access_denied", "state": query["state"]}))
        threading.Thread(target=httpx.get, args=(callback,),
                         kwargs={"trust_env": False, "timeout": 5}, daemon=True).start()
        return True

    return open_browser


@pytest.mark.parametrize(("supported", "asked"), [
    (["openid", "email"], False),  # Google, Cognito, GitLab: they refuse the scope
    (["openid", "offline_access"], True),
    (None, True),  # no scopes_supported at all: ask
])
def test_a_registry_login_asks_for_offline_access_by_the_providers_scopes(
    fake_idp: FakeProvider, supported: list[str] | None, asked: bool
) -> None:
    """Regression: the profiles added offline_access themselves, so a registry on a
    provider that refuses it (invalid_scope) could never log in; the OIDCParams rule
    (offline_access=None) decides, and prompt=consent follows it."""
    if supported is not None:
        fake_idp.metadata_overrides["scopes_supported"] = supported
    urls: list[str] = []
    auth = registry_auth(REGISTRY_URL, issuer=ISSUER, client_id=CLIENT, scopes=["email"],
                         interactive=True, open_browser=_cancelling_browser(urls),
                         login_timeout=10, **_opts(fake_idp, MemorySecrets()))
    assert _source(auth).oidc.scopes == ("openid", "email")
    with pytest.raises(LoginError):
        _source(auth).token()
    (url,) = urls
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert ("offline_access" in query["scope"].split()) is asked
    assert query["scope"].split()[:2] == ["openid", "email"]
    assert (query.get("prompt") == "consent") is asked


@pytest.mark.parametrize("written", [["email,profile"], ["email profile"], ["email", "profile"]])
def test_a_profile_normalizes_scopes_as_the_cli_does(
    fake_idp: FakeProvider, written: list[str]
) -> None:
    """Regression (issue 12): the profiles split on spaces only, the CLI on commas too, so
    `scopes = ["email,profile"]` in the config file reached the provider as one scope."""
    urls: list[str] = []
    Config().set_entry("registries", REGISTRY_URL, {
        "issuer": ISSUER, "client_id": CLIENT, "scopes": written})
    auth = registry_auth(REGISTRY_URL, interactive=True, open_browser=_cancelling_browser(urls),
                         login_timeout=10, **_opts(fake_idp, MemorySecrets()))
    assert _source(auth).oidc.scopes == ("openid", "email", "profile")
    with pytest.raises(LoginError):
        _source(auth).token()
    (url,) = urls
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert query["scope"].split()[:3] == ["openid", "email", "profile"]


def test_registry_auth_reads_config_and_uses_cached_ref(fake_idp: FakeProvider) -> None:
    Config().set_entry("registries", REGISTRY_URL, {
        "issuer": ISSUER, "client_id": CLIENT, "scopes": ["registry:read"],
        "audience": "https://api.example.test", "callback_port": 9123,
        "cached_refresh_token_ref": "REGISTRY_OAUTH_custom0",
    })
    secrets = MemorySecrets({REG + "REGISTRY_OAUTH_custom0": fake_idp.seed("rt-0")})
    source = _source(registry_auth(REGISTRY_URL, interactive=False,
                                   **_opts(fake_idp, secrets)))
    assert source.oidc.issuer == ISSUER
    assert source.oidc.client_id == CLIENT
    assert source.oidc.audience == "https://api.example.test"
    assert source.oidc.callback_port == 9123
    assert source.oidc.scopes == ("openid", "registry:read")
    assert source.token() == "at-1"
    assert fake_idp.requests[0]["resource"] == "https://api.example.test"
    assert secrets.get_secret(REG + "REGISTRY_OAUTH_custom0") == "rt-1"


def test_cached_ref_of_another_issuer_is_ignored(fake_idp: FakeProvider) -> None:
    Config().set_entry("registries", REGISTRY_URL, {
        "issuer": "https://old-idp.example.test", "client_id": CLIENT,
        "cached_refresh_token_ref": "REGISTRY_OAUTH_0ld00000",
    })
    session = open_session(REGISTRY, REGISTRY_URL, issuer=ISSUER,
                           **_opts(fake_idp, MemorySecrets()))
    assert session.key == derive_secret_key("REGISTRY_OAUTH_", REGISTRY_URL, ISSUER)


def test_registry_fallback_error_names_the_command(fake_idp: FakeProvider) -> None:
    Config().set_entry("registries", REGISTRY_URL, {"issuer": ISSUER, "client_id": CLIENT})
    source = _source(registry_auth(REGISTRY_URL, interactive=False,
                                   **_opts(fake_idp, MemorySecrets())))
    with pytest.raises(LoginRequiredError) as info:
        source.token()
    assert "run: oauth-auth registry login --registry https://registry.example.test" in str(
        info.value)
    assert fake_idp.counts["refresh"] == 0


def test_dead_refresh_token_is_invalid_grant(fake_idp: FakeProvider) -> None:
    key = derive_secret_key("REGISTRY_OAUTH_", REGISTRY_URL, ISSUER)
    secrets = MemorySecrets({REG + key: "rt-dead"})
    source = _source(registry_auth(REGISTRY_URL, issuer=ISSUER, client_id=CLIENT,
                                   interactive=False, **_opts(fake_idp, secrets)))
    with pytest.raises(InvalidGrantError):
        source.token()
    assert secrets.get_secret(REG + key) is None


def test_interactive_defaults_to_terminals(monkeypatch: pytest.MonkeyPatch,
                                           fake_idp: FakeProvider) -> None:
    class Tty:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.setattr(sys, "stdin", Tty(True))
    monkeypatch.setattr(sys, "stderr", Tty(True))
    assert default_interactive() is True
    auth = registry_auth(REGISTRY_URL, issuer=ISSUER, client_id=CLIENT,
                         **_opts(fake_idp, MemorySecrets()))
    assert _source(auth).interactive is True
    monkeypatch.setattr(sys, "stderr", Tty(False))
    assert default_interactive() is False
    monkeypatch.setattr(sys, "stdin", None)
    assert default_interactive() is False
    auth = registry_auth(REGISTRY_URL, issuer=ISSUER, client_id=CLIENT,
                         **_opts(fake_idp, MemorySecrets()))
    assert _source(auth).interactive is False


def test_extra_options_pass_through(fake_idp: FakeProvider) -> None:
    clock = FakeClock()
    opened: list[str] = []
    auth = registry_auth(REGISTRY_URL, issuer=ISSUER, client_id=CLIENT, interactive=False,
                         clock=clock, open_browser=opened.append, skip_browser=True,
                         login_method="device", preemptive_refresh_window=5,
                         **_opts(fake_idp, MemorySecrets()))
    source = _source(auth)
    assert source.skip_browser is True
    assert source.login_method == "device"
    assert source.preemptive_refresh_window == 5.0


def test_default_store_is_the_shared_keyring_service() -> None:
    from oauth_auth import KeyringSecrets, ScopedSecrets

    session = open_session(REGISTRY, REGISTRY_URL, issuer=ISSUER, client_id=CLIENT)
    assert isinstance(session.store, KeyringSecrets)
    assert session.store.service == "oauth-auth"
    # ToolHive scopes registry tokens as __thv_registry_<key> (DESIGN, Release 2)
    assert isinstance(session.secrets, ScopedSecrets)
    assert session.secrets.inner is session.store
    assert session.secrets.scoped_name("k") == "__thv_registry_k"
    assert session.source.preemptive_refresh_window == 30.0


# ------------------------------------------------------------------------------ llm_gateway_auth


def test_llm_key_scope_and_window() -> None:
    from oauth_auth import ChainSecrets, EnvironmentSecrets, KeyringSecrets, ScopedSecrets

    session = open_session(LLM, GATEWAY_URL, issuer=ISSUER, client_id="llm-cli")
    assert session.key == derive_secret_key("LLM_OAUTH_", GATEWAY_URL, ISSUER)
    assert session.source.preemptive_refresh_window == 600.0
    secrets = session.secrets
    assert isinstance(secrets, ScopedSecrets)
    assert secrets.scope == "llm"
    assert isinstance(secrets.inner, ChainSecrets)
    env, store = secrets.inner.providers
    assert isinstance(env, EnvironmentSecrets)
    assert isinstance(store, KeyringSecrets)
    # The env var the docs promise is the one this chain reads.
    assert env.variable(secrets.scoped_name(session.key + "_AT")) == llm_access_token_env_var(
        GATEWAY_URL, ISSUER)


def test_llm_env_token_is_served_without_touching_the_store(
    monkeypatch: pytest.MonkeyPatch, fake_idp: FakeProvider
) -> None:
    monkeypatch.setenv(llm_access_token_env_var(GATEWAY_URL, ISSUER), _at("env-token", 3600))
    store = BrokenStore()
    auth = llm_gateway_auth(GATEWAY_URL, issuer=ISSUER, client_id="llm-cli",
                            interactive=False, **_opts(fake_idp, store))
    assert _source(auth).token() == "env-token"
    assert store.calls == 0
    assert sum(fake_idp.counts.values()) == 0


def test_llm_env_token_inside_the_ten_minute_window_is_not_served(
    monkeypatch: pytest.MonkeyPatch, fake_idp: FakeProvider
) -> None:
    monkeypatch.setenv(llm_access_token_env_var(GATEWAY_URL, ISSUER), _at("env-token", 300))
    auth = llm_gateway_auth(GATEWAY_URL, issuer=ISSUER, client_id="llm-cli",
                            interactive=False, **_opts(fake_idp, MemorySecrets()))
    with pytest.raises(LoginRequiredError, match="oauth-auth llm login --gateway"):
        _source(auth).token()


def test_llm_writes_scoped_names_and_persists(fake_idp: FakeProvider) -> None:
    key = derive_secret_key("LLM_OAUTH_", GATEWAY_URL, ISSUER)
    store = CountingSecrets(MemorySecrets({f"__thv_llm_{key}": fake_idp.seed()}))
    auth = llm_gateway_auth(GATEWAY_URL, issuer=ISSUER, client_id="llm-cli",
                            interactive=False, **_opts(fake_idp, store))
    assert _source(auth).token() == "at-1"
    assert store.inner.names() == [f"__thv_llm_{key}", f"__thv_llm_{key}_AT"]
    entry = Config().entry("llm_gateways", GATEWAY_URL)
    assert entry is not None
    assert entry["cached_refresh_token_ref"] == key


def test_llm_no_keyring_and_no_env_is_the_backend_error(fake_idp: FakeProvider) -> None:
    auth = llm_gateway_auth(GATEWAY_URL, issuer=ISSUER, client_id="llm-cli",
                            interactive=False, **_opts(fake_idp, BrokenStore()))
    with pytest.raises(SecretsError, match="no usable keyring"):
        _source(auth).token()


# ------------------------------------------------------------------------------ other kinds


def test_profile_and_adhoc_keys_use_audience_or_client_id() -> None:
    adhoc = open_session(ADHOC, None, issuer=ISSUER, client_id="cli",
                         secrets_provider=MemorySecrets())
    assert adhoc.key == derive_secret_key("OAUTH_AUTH_", "cli", ISSUER)
    with_aud = open_session(ADHOC, None, issuer=ISSUER, client_id="cli", audience="api",
                            secrets_provider=MemorySecrets())
    assert with_aud.key == derive_secret_key("OAUTH_AUTH_", "api", ISSUER)
    Config().set_entry("profiles", "work", {"issuer": ISSUER, "client_id": "cli"})
    profile = open_session(PROFILE, "work", secrets_provider=MemorySecrets())
    # a named profile's key carries its name (DESIGN, Release 2): never the ad-hoc one
    assert profile.key == derive_secret_key("OAUTH_AUTH_WORK_", "cli", ISSUER)
    assert "oauth-auth login --profile work" in profile.login_command
    assert adhoc.login_command == f"oauth-auth login --issuer {ISSUER} --client-id cli"


def test_fresh_login_hides_stored_session_but_writes_through() -> None:
    secrets = MemorySecrets({"K": "old"})
    session = open_session(ADHOC, None, issuer=ISSUER, client_id="cli",
                           secrets_provider=secrets, fresh_login=True,
                           key_provider=lambda: "K")
    inner = session.source._secrets
    assert inner is not None
    assert inner.get_secret("K") is None
    inner.set_secret("K", "new")
    assert secrets.get_secret("K") == "new"


def test_profiles_import_no_http_stack_until_called() -> None:
    code = (
        "import sys, oauth_auth\n"
        "f = oauth_auth.registry_auth, oauth_auth.llm_gateway_auth\n"
        "import oauth_auth.cli\n"
        "heavy = [m for m in ('httpx', 'requests', 'authlib', 'joserfc', 'keyring',"
        " 'filelock') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout == "[]\n"


def test_adhoc_login_command_reproduces_the_settings() -> None:
    session = open_session(ADHOC, None, issuer=ISSUER, client_id="cli", audience="api",
                           scopes=["email"], callback_port=9001,
                           secrets_provider=MemorySecrets())
    assert session.login_command == (
        f"oauth-auth login --issuer {ISSUER} --client-id cli --audience api --scope email"
        " --callback-port 9001"
    )


def test_a_fresh_login_holds_the_fleet_lease_but_replaces_without_compare_and_set() -> None:
    """`oauth-auth login` on a Redis or PostgreSQL store takes the same lease as a refresh
    on another host; its write replaces the stored session (a compare-and-set against the
    empty read it makes would refuse the new login)."""
    import contextlib

    from oauth_auth._store import SecretsSessionStore
    from oauth_auth._token import Token
    from oauth_auth.profiles import _FreshLogin

    taken: list[str] = []

    class Leased(MemorySecrets):
        def lock(self, name: str, *, timeout: float, done: object = None
                 ) -> contextlib.AbstractContextManager[None]:
            taken.append(name)
            return contextlib.nullcontext()

        def compare_and_set(self, name: str, expected: str | None, value: str) -> bool:
            raise AssertionError("a fresh login must not compare-and-set")

    inner = Leased()
    inner.set_secret("K", "rt-of-the-old-session")
    fresh = _FreshLogin(inner)
    assert fresh.get_secret("K") is None
    assert getattr(fresh, "compare_and_set", None) is None
    store = SecretsSessionStore(fresh, "K")
    with store.lock(5):
        held = store.read_refresh_token().held
        assert store.save(Token("at-new", 2_000_000_000.0, "rt-new"), held) is True
    assert taken == ["K"]
    assert inner.get_secret("K") == "rt-new"
    assert _FreshLogin(MemorySecrets()).lock is None
