"""Black-box tests of the public contract (the design document the README's API follows).

Only public names of `oauth_auth` are used; the command runs as `python -m oauth_auth` in
subprocesses. The identity provider is a small OAuth server on 127.0.0.1 written here
(discovery, refresh grant, revocation), except for the interactive logins, which use the
bench's real oidc-provider (`real_idp`). The keyring is a file-backed keyring backend whose
module this file writes into the test's temporary directory and selects the documented
way, with PYTHON_KEYRING_BACKEND, so the command and the library share it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib
import inspect
import json
import os
import re
import secrets
import stat
import subprocess
import sys
import threading
import time
import typing
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import oauth_auth
from oauth_auth import (
    ChainSecrets,
    EnvironmentSecrets,
    InvalidGrantError,
    KeyringSecrets,
    LoginError,
    LoginRequiredError,
    MemorySecrets,
    OAuthAuthError,
    OAuthError,
    OAuthTokenSource,
    OIDCParams,
    ScopedSecrets,
    SecretsError,
    SecretsProvider,
    TransportError,
    derive_secret_key,
    ensure_offline_access,
    llm_access_token_env_var,
    llm_gateway_auth,
    registry_auth,
)
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
RFC3339_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
REGISTRY = "https://registry.example.test"
GATEWAY = "https://llm.example.test"
CLIENT = "contract-cli"
SERVICE = "oauth-auth"

#: The error tree of DESIGN.md, each drawn in the errors module's docstring.
ERROR_NAMES = (
    "OAuthAuthError",
    "LoginRequiredError",
    "OAuthError",
    "InvalidGrantError",
    "SecretsError",
    "TransportError",
    "LoginError",
)

PUBLIC_NAMES = (
    "OIDCParams",
    "OAuthTokenSource",
    "derive_secret_key",
    "ensure_offline_access",
    "llm_access_token_env_var",
    "OIDCAuth",
    "SecretsProvider",
    "KeyringSecrets",
    "EnvironmentSecrets",
    "MemorySecrets",
    "ScopedSecrets",
    "ChainSecrets",
    "registry_auth",
    "llm_gateway_auth",
    "LogoutResult",
    "TokenSourceLike",
    *ERROR_NAMES,
)


# ------------------------------------------------------------------------------ helpers


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def at_entry(token: str, seconds_left: float) -> str:
    """A `<key>_AT` value in ToolHive's format, expiring `seconds_left` from now."""
    return f"{token}|{rfc3339(time.time() + seconds_left)}"


def long_token(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(16)}"



class RecordingSecrets:
    """A plain secrets provider (no `writable` attribute) that records every write."""

    def __init__(self, initial: dict[str, str] | None = None) -> None:
        self.data: dict[str, str] = dict(initial or {})
        self.events: list[tuple[str, ...]] = []
        self.reads = 0

    def get_secret(self, name: str) -> str | None:
        self.reads += 1
        return self.data.get(name)

    def set_secret(self, name: str, value: str) -> None:
        self.events.append(("set", name, value))
        self.data[name] = value

    def delete_secret(self, name: str) -> None:
        self.events.append(("delete", name))
        self.data.pop(name, None)


class _Served:
    """A threaded HTTP server on 127.0.0.1 for one of the fakes below; `close` stops it."""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> str:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class FakeIdP(_Served):
    """An OAuth provider on 127.0.0.1 in a thread: discovery, refresh grant, revocation."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.valid: set[str] = set()
        self.rotate = True
        self.expires_in = 3600
        self.error = ""  # when set, every token request gets this OAuth error
        self.token_forms: list[dict[str, str]] = []
        self.issued: list[str] = []
        self.revoked: list[str] = []
        self.issuer = self._serve(self._handler())

    def seed(self) -> str:
        refresh = long_token("refresh")
        with self.lock:
            self.valid.add(refresh)
        return refresh

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/auth",
            "token_endpoint": f"{self.issuer}/token",
            "revocation_endpoint": f"{self.issuer}/revoke",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
        }

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.token_forms.append(form)
            if self.error:
                return 400, {"error": self.error, "error_description": "contract test"}
            if form.get("grant_type") != "refresh_token":
                return 400, {"error": "unsupported_grant_type"}
            refresh = form.get("refresh_token", "")
            if refresh not in self.valid:
                return 400, {"error": "invalid_grant", "error_description": "grant not found"}
            access = long_token("access")
            self.issued.append(access)
            body: dict[str, Any] = {
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": self.expires_in,
            }
            if self.rotate:
                self.valid.discard(refresh)
                new = long_token("refresh")
                self.valid.add(new)
                body["refresh_token"] = new
            return 200, body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any] | None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    self._answer(200, idp.metadata())
                else:
                    self._answer(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                form = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
                if self.path == "/token":
                    self._answer(*idp.token(form))
                elif self.path == "/revoke":
                    with idp.lock:
                        idp.revoked.append(form.get("token", ""))
                        idp.valid.discard(form.get("token", ""))
                    self._answer(200, None)
                else:
                    self._answer(404, {"error": "not_found"})

        return Handler


class FakeAPI(_Served):
    """A resource server on 127.0.0.1 answering scripted statuses; records the headers."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.seen: list[str] = []
        self.url = self._serve(self._handler())

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                api.seen.append(self.headers.get("Authorization") or "")
                status, headers = api.script.pop(0) if api.script else (200, {})
                body = b"ok"
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


@pytest.fixture
def fake_idp() -> Iterator[FakeIdP]:
    idp = FakeIdP()
    try:
        yield idp
    finally:
        idp.close()


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    server = FakeAPI()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def sources() -> Iterator[list[OAuthTokenSource]]:
    """Token sources to close after the test (their provider connections)."""
    made: list[OAuthTokenSource] = []
    yield made
    for source in made:
        close = getattr(source, "close", None)
        if callable(close):
            close()


def make_source(
    made: list[OAuthTokenSource], idp: FakeIdP | None, key: str = "CONTRACT_KEY", **kw: Any
) -> OAuthTokenSource:
    oidc = OIDCParams(idp.issuer if idp else "https://idp.example.test", CLIENT)
    source = OAuthTokenSource(oidc, key_provider=lambda: key, **kw)
    made.append(source)
    return source


# A keyring backend in a JSON file, written as a module into the test's directory so the
# command (a subprocess) can select it with PYTHON_KEYRING_BACKEND, as keyring documents.
KEYRING_MODULE = '''
import json
import os

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class FileKeyring(KeyringBackend):
    priority = 1

    def _path(self):
        return os.environ["CONTRACT_KEYRING_FILE"]

    def _load(self):
        try:
            with open(self._path(), encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def _save(self, data):
        tmp = self._path() + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, self._path())

    def get_password(self, service, username):
        return self._load().get(service, {}).get(username)

    def set_password(self, service, username, password):
        data = self._load()
        data.setdefault(service, {})[username] = password
        self._save(data)

    def delete_password(self, service, username):
        data = self._load()
        if username not in data.get(service, {}):
            raise PasswordDeleteError("No such password!")
        del data[service][username]
        self._save(data)


class PlaintextKeyring(FileKeyring):
    """Unencrypted on disk, like keyrings.alt's PlaintextKeyring."""
'''


class KeyringFile:
    """The JSON file behind the test keyring backend."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self, service: str = SERVICE) -> dict[str, str]:
        try:
            data: dict[str, dict[str, str]] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return data.get(service, {})

    def set(self, name: str, value: str, service: str = SERVICE) -> None:
        try:
            data: dict[str, dict[str, str]] = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = {}
        data.setdefault(service, {})[name] = value
        self.path.write_text(json.dumps(data))


def write_keyring_module(tmp_path: Path) -> Path:
    moddir = tmp_path / "keyring_module"
    moddir.mkdir(exist_ok=True)
    (moddir / "contract_keyring.py").write_text(KEYRING_MODULE)
    return moddir


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "cfg" / "config.json"


@pytest.fixture
def file_keyring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config_file: Path
) -> Iterator[KeyringFile]:
    """In this process: keyring's backend is the file keyring; config and locks private."""
    import keyring
    import keyring.core

    moddir = write_keyring_module(tmp_path)
    store = tmp_path / "keyring.json"
    monkeypatch.setenv("CONTRACT_KEYRING_FILE", str(store))
    monkeypatch.setenv("OAUTH_AUTH_CONFIG", str(config_file))
    monkeypatch.setenv("OAUTH_AUTH_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(private_dir(tmp_path / "run")))
    monkeypatch.syspath_prepend(str(moddir))
    module = importlib.import_module("contract_keyring")
    saved = keyring.core._keyring_backend
    keyring.set_keyring(module.FileKeyring())
    try:
        yield KeyringFile(store)
    finally:
        keyring.core._keyring_backend = saved


def cli_env(tmp_path: Path, backend: str = "contract_keyring.FileKeyring") -> dict[str, str]:
    moddir = write_keyring_module(tmp_path)
    drop = (
        "TOOLHIVE_SECRET_",
        "OAUTH_AUTH_",
        "PYTHON_KEYRING",
        "BROWSER",
        "DISPLAY",
        "WAYLAND_DISPLAY",
        "SSH_",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        OAUTH_AUTH_CONFIG=str(tmp_path / "cfg" / "config.json"),
        OAUTH_AUTH_LOCK_DIR=str(tmp_path / "locks"),
        PYTHON_KEYRING_BACKEND=backend,
        PYTHONPATH=os.pathsep.join([str(moddir), str(ROOT)]),
        CONTRACT_KEYRING_FILE=str(tmp_path / "keyring.json"),
        XDG_RUNTIME_DIR=str(private_dir(tmp_path / "run")),
        XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
        XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
        XDG_DATA_HOME=str(tmp_path / "xdg-data"),
    )
    return env


def cli(env: dict[str, str], *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oauth_auth", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=env.get("CONTRACT_CWD", str(ROOT)),
        check=False,
    )


# ------------------------------------------------------------------------------ public names


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        cwd=str(ROOT),
    )


def test_import_loads_no_http_oauth_or_keyring_library() -> None:
    code = (
        "import sys, json\n"
        "import oauth_auth\n"
        "heavy = ('requests', 'httpx', 'authlib', 'keyring')\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_every_public_name_is_importable_from_the_package() -> None:
    code = (
        "import json\n"
        "import oauth_auth\n"
        f"names = {list(PUBLIC_NAMES)!r}\n"
        "missing = [n for n in names if not hasattr(oauth_auth, n)]\n"
        "ns = {}\n"
        "exec('from oauth_auth import ' + ', '.join(names), ns)\n"
        "print(json.dumps(missing))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert set(PUBLIC_NAMES) <= set(oauth_auth.__all__)


def test_all_is_sorted_complete_and_resolves() -> None:
    """`__all__` is the public namespace: sorted, every name resolves (lazily or not), and
    no other public name hangs off the package except its submodules."""
    import types

    assert list(oauth_auth.__all__) == sorted(oauth_auth.__all__)
    assert len(set(oauth_auth.__all__)) == len(oauth_auth.__all__)
    for name in oauth_auth.__all__:
        assert getattr(oauth_auth, name) is not None
    extra = [
        n
        for n in dir(oauth_auth)
        if not n.startswith("_")
        and n not in oauth_auth.__all__
        and not isinstance(getattr(oauth_auth, n), types.ModuleType)
    ]
    assert extra == []


def test_oidc_params_is_frozen_with_the_documented_defaults() -> None:
    params = OIDCParams("https://idp.example.test", "cid")
    assert dataclasses.is_dataclass(params)
    assert (params.issuer, params.client_id, params.audience) == (
        "https://idp.example.test",
        "cid",
        "",
    )
    assert list(params.scopes) == []
    assert params.callback_port == 8666  # 0 -> ToolHive's 8666
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.client_id = "other"  # type: ignore[misc]
    explicit = OIDCParams(
        issuer="https://idp.example.test",
        client_id="cid",
        scopes=["email", "profile"],
        audience="api://x",
        callback_port=9123,
    )
    assert explicit.callback_port == 9123
    assert list(explicit.scopes) == ["email", "profile"]
    assert explicit.audience == "api://x"
    assert OIDCParams("https://i", "c", callback_port=0).callback_port == 8666
    fields = [f.name for f in dataclasses.fields(OIDCParams)]
    assert fields == ["issuer", "client_id", "scopes", "audience", "callback_port",
                      # Release 2, keyword-only
                      "client_secret", "preset", "offline_access", "prompt", "audience_param",
                      "auth_params", "endpoints", "callback_host"]
    assert [f.name for f in dataclasses.fields(OIDCParams) if f.kw_only] == fields[5:]
    assert (params.client_secret, params.preset, params.offline_access, params.prompt,
            params.audience_param, dict(params.auth_params), dict(params.endpoints),
            params.callback_host) == ("", None, None, None, "resource", {}, {}, "localhost")
    hash(params)


def test_token_source_signature_is_keyword_only_with_the_documented_defaults() -> None:
    sig = inspect.signature(OAuthTokenSource)
    params = list(sig.parameters.values())
    assert params[0].name == "oidc"
    assert params[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    )
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:])
    defaults = {p.name: p.default for p in params[1:]}
    expected = {
        "secrets_provider": None,
        "interactive": False,
        "skip_browser": False,
        "config_persister": None,
        "fallback_error": None,
        "preemptive_refresh_window": None,
        "login_method": "auto",
        "login_timeout": 300.0,
        "open_browser": None,
    }
    for name, value in expected.items():
        assert name in defaults, name
        assert defaults[name] == value, name
    assert "key_provider" in defaults


def test_token_source_requires_key_provider() -> None:
    oidc = OIDCParams("https://idp.example.test", CLIENT)
    with pytest.raises((TypeError, ValueError)):
        OAuthTokenSource(oidc)
    with pytest.raises(TypeError):
        OAuthTokenSource(oidc, lambda: "K")  # type: ignore[call-arg]


@pytest.mark.parametrize("window", [-1, -0.5, timedelta(seconds=-1)])
def test_negative_preemptive_window_is_a_value_error(window: timedelta | float) -> None:
    oidc = OIDCParams("https://idp.example.test", CLIENT)
    with pytest.raises(ValueError):
        OAuthTokenSource(oidc, key_provider=lambda: "K", preemptive_refresh_window=window)


@pytest.mark.parametrize(
    ("window", "seconds_left", "served"),
    [
        (None, 45, True),  # default 30 s
        (None, 20, False),
        (timedelta(seconds=60), 90, True),
        (timedelta(seconds=60), 50, False),
        (60.0, 90, True),
        (60.0, 50, False),
        (0, 5, True),
    ],
)
def test_shared_cache_is_served_only_while_more_than_the_window_remains(
    sources: list[OAuthTokenSource],
    window: timedelta | float | None,
    seconds_left: float,
    served: bool,
) -> None:
    token = long_token("cached")
    store = MemorySecrets()
    store.set_secret("K_AT", at_entry(token, seconds_left))
    source = make_source(
        sources, None, key="K", secrets_provider=store, preemptive_refresh_window=window
    )
    if served:
        assert source.token() == token
    else:
        with pytest.raises(LoginRequiredError):
            source.token()


def test_a_shared_cache_hit_is_kept_in_memory(sources: list[OAuthTokenSource]) -> None:
    token = long_token("cached")
    store = RecordingSecrets({"K_AT": at_entry(token, 3600)})
    source = make_source(sources, None, key="K", secrets_provider=store)
    assert source.token() == token
    reads = store.reads
    assert reads >= 1
    for _ in range(5):
        assert source.token() == token
    assert store.reads == reads  # tier 1: no more reads of the store


def test_refresh_writes_rt_then_at_then_persister_with_the_real_expiry(
    fake_idp: FakeIdP, sources: list[OAuthTokenSource]
) -> None:
    seeded = fake_idp.seed()
    store = RecordingSecrets({"K": seeded})
    persisted: list[tuple[str, datetime]] = []

    def persister(key: str, expiry: datetime) -> None:
        store.events.append(("persist", key))
        persisted.append((key, expiry))

    source = make_source(
        sources, fake_idp, key="K", secrets_provider=store, config_persister=persister
    )
    before = time.time()
    token = source.token()
    after = time.time()
    assert token == fake_idp.issued[-1]
    new_rt = store.data["K"]
    assert new_rt != seeded
    assert new_rt in fake_idp.valid
    calls = [e for e in store.events if e[0] != "delete"]
    assert [c[:2] for c in calls] == [("set", "K"), ("set", "K_AT"), ("persist", "K")]
    at_value = store.data["K_AT"]
    access, sep, stamp = at_value.partition("|")
    assert (access, sep) == (token, "|")
    assert RFC3339_Z.fullmatch(stamp), at_value
    expiry = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    # The real expiry (expires_in 3600), not expiry minus the window.
    assert before + 3600 - 2 <= expiry.timestamp() <= after + 3600 + 1
    key, when = persisted[0]
    assert key == "K"
    assert when.tzinfo is not None
    assert when.utcoffset() == timedelta(0)
    assert abs(when.timestamp() - expiry.timestamp()) < 2


def test_a_routine_refresh_writes_only_the_at_entry_and_never_calls_the_persister(
    fake_idp: FakeIdP, sources: list[OAuthTokenSource]
) -> None:
    fake_idp.rotate = False
    fake_idp.expires_in = 5  # inside the 30 s window: every token() past half-life refreshes
    seeded = fake_idp.seed()
    store = RecordingSecrets({"K": seeded})
    persisted: list[str] = []
    source = make_source(
        sources,
        fake_idp,
        key="K",
        secrets_provider=store,
        config_persister=lambda key, expiry: persisted.append(key),
    )
    first = source.token()
    source.invalidate(first)
    second = source.token()
    assert second != first
    assert store.data["K"] == seeded
    assert [e[:2] for e in store.events if e[0] == "set"] == [("set", "K_AT"), ("set", "K_AT")]
    assert persisted == []


def test_no_credentials_raises_the_fallback_or_login_required(
    sources: list[OAuthTokenSource],
) -> None:
    source = make_source(sources, None, secrets_provider=MemorySecrets())
    with pytest.raises(LoginRequiredError):
        source.token()

    class Custom(Exception):
        pass

    fallback = Custom("log in with `mytool login`")
    source = make_source(sources, None, secrets_provider=MemorySecrets(), fallback_error=fallback)
    with pytest.raises(Custom) as info:
        source.token()
    assert type(info.value) is Custom
    assert str(info.value) == str(fallback)


def test_without_a_secrets_provider_the_error_is_actionable_not_the_fallback(
    sources: list[OAuthTokenSource],
) -> None:
    class Custom(Exception):
        pass

    source = make_source(sources, None, secrets_provider=None, fallback_error=Custom("no"))
    with pytest.raises(SecretsError):
        source.token()


def test_invalid_grant_is_raised_instead_of_the_fallback(
    fake_idp: FakeIdP, sources: list[OAuthTokenSource]
) -> None:
    class Custom(Exception):
        pass

    store = MemorySecrets()
    store.set_secret("K", long_token("dead"))
    source = make_source(
        sources, fake_idp, key="K", secrets_provider=store, fallback_error=Custom("fallback")
    )
    with pytest.raises(InvalidGrantError) as info:
        source.token()
    assert isinstance(info.value, OAuthError)
    assert info.value.error == "invalid_grant"


def test_a_locked_store_is_raised_instead_of_the_fallback(
    sources: list[OAuthTokenSource],
) -> None:
    class Locked(RecordingSecrets):
        def get_secret(self, name: str) -> str | None:
            raise SecretsError("the keyring is locked (test)")

    class Custom(Exception):
        pass

    source = make_source(
        sources, None, key="K", secrets_provider=Locked(), fallback_error=Custom("fallback")
    )
    with pytest.raises(SecretsError):
        source.token()


def test_invalidate_and_logout(fake_idp: FakeIdP, sources: list[OAuthTokenSource]) -> None:
    seeded = fake_idp.seed()
    store = MemorySecrets()
    store.set_secret("K", seeded)
    source = make_source(sources, fake_idp, key="K", secrets_provider=store)
    first = source.token()
    assert store.get_secret("K_AT") is not None
    source.invalidate(first)
    assert store.get_secret("K_AT") is None  # tier 2 dropped
    second = source.token()  # tier 1 dropped too: a new token
    assert second != first
    rt = store.get_secret("K")
    assert rt
    source.logout()
    assert store.get_secret("K") is None
    assert store.get_secret("K_AT") is None
    assert fake_idp.revoked == [rt]
    with pytest.raises(LoginRequiredError):
        source.token()
    source.logout()  # nothing stored: still fine


def test_atoken_serves_the_same_tiers(fake_idp: FakeIdP, sources: list[OAuthTokenSource]) -> None:
    store = MemorySecrets()
    store.set_secret("K", fake_idp.seed())
    source = make_source(sources, fake_idp, key="K", secrets_provider=store)

    async def run() -> list[str]:
        return list(await asyncio.gather(*(source.atoken() for _ in range(5))))

    tokens = asyncio.run(run())
    assert len(set(tokens)) == 1
    assert tokens[0] == fake_idp.issued[-1]
    assert len(fake_idp.issued) == 1


def test_token_is_thread_safe_one_refresh(
    fake_idp: FakeIdP, sources: list[OAuthTokenSource]
) -> None:
    store = MemorySecrets()
    store.set_secret("K", fake_idp.seed())
    source = make_source(sources, fake_idp, key="K", secrets_provider=store)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(source.token())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 8
    assert set(results) == {fake_idp.issued[0]}
    assert len(fake_idp.issued) == 1


# ------------------------------------------------------------------------------ key helpers


def test_derive_secret_key_vectors() -> None:
    assert (
        derive_secret_key(
            "REGISTRY_OAUTH_", "https://reg.example.com", "https://issuer.example.com"
        )
        == "REGISTRY_OAUTH_7c17bd6d"
    )
    for prefix, resource, issuer in [
        ("LLM_OAUTH_", "https://llm.example.com", "https://issuer.example.com"),
        ("OAUTH_AUTH_", "my-client", "http://127.0.0.1:8080"),
        ("", "", ""),
    ]:
        digest = hashlib.sha256(f"{resource}\x00{issuer}".encode()).hexdigest()
        assert derive_secret_key(prefix, resource, issuer) == prefix + digest[:8]
    assert derive_secret_key("P_", "ab", "c") != derive_secret_key("P_", "a", "bc")


def test_ensure_offline_access_never_mutates() -> None:
    scopes = ["openid", "email"]
    result = ensure_offline_access(scopes)
    assert result == ["openid", "email", "offline_access"]
    assert scopes == ["openid", "email"]
    assert isinstance(result, list)
    present = ["offline_access", "openid"]
    again = ensure_offline_access(present)
    assert again == ["offline_access", "openid"]
    assert again is not present
    assert ensure_offline_access(("a",)) == ["a", "offline_access"]
    assert ensure_offline_access([]) == ["offline_access"]


def test_llm_access_token_env_var_format() -> None:
    name = llm_access_token_env_var("https://llm.example.com", "https://issuer.example.com")
    assert name == "TOOLHIVE_SECRET___thv_llm_LLM_OAUTH_af5fb975_AT"
    key = derive_secret_key("LLM_OAUTH_", GATEWAY, "https://i.example")
    assert llm_access_token_env_var(GATEWAY, "https://i.example") == (
        f"TOOLHIVE_SECRET___thv_llm_{key}_AT"
    )


# ------------------------------------------------------------------------------ OIDCAuth


def _auth_source(made: list[OAuthTokenSource], idp: FakeIdP) -> OAuthTokenSource:
    store = MemorySecrets()
    store.set_secret("K", idp.seed())
    return make_source(made, idp, key="K", secrets_provider=store)


def test_oidc_auth_is_a_requests_and_an_httpx_auth(
    fake_idp: FakeIdP, sources: list[OAuthTokenSource]
) -> None:
    import httpx
    import requests.auth

    from oauth_auth import OIDCAuth

    auth = OIDCAuth(_auth_source(sources, fake_idp))
    assert isinstance(auth, requests.auth.AuthBase)
    assert isinstance(auth, httpx.Auth)


@pytest.mark.parametrize(
    ("script", "requests_made", "fresh_on_retry"),
    [
        ([(200, {})], 1, False),
        ([(401, {})], 2, True),
        ([(401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})], 2, True),
        ([(401, {"WWW-Authenticate": 'Bearer realm="api", error="insufficient_scope"'})], 1, False),
        ([(403, {})], 1, False),
        ([(401, {}), (401, {})], 2, True),  # once, not twice
    ],
)
def test_oidc_auth_retries_a_401_once(
    fake_idp: FakeIdP,
    api: FakeAPI,
    sources: list[OAuthTokenSource],
    script: list[tuple[int, dict[str, str]]],
    requests_made: int,
    fresh_on_retry: bool,
) -> None:
    import httpx
    import requests

    from oauth_auth import OIDCAuth

    # One source per client: DESIGN's hardening rule keeps a source that a fresh token did
    # not cure from refreshing for another 401 within reauth_interval (10 s).
    def fresh() -> OIDCAuth:
        return OIDCAuth(_auth_source(sources, fake_idp))

    def check(status: int) -> None:
        assert len(api.seen) == requests_made
        assert api.seen[0] == f"Bearer {fake_idp.issued[-requests_made]}"
        if requests_made == 2:
            assert api.seen[1] == f"Bearer {fake_idp.issued[-1]}"
            assert api.seen[1] != api.seen[0]
        final = script[requests_made - 1][0] if requests_made <= len(script) else 200
        assert status == final

    # requests
    api.script, api.seen = list(script), []
    with requests.Session() as session:
        session.auth = fresh()
        response = session.get(api.url + "/r", timeout=10)
    check(response.status_code)

    # httpx, sync
    api.script, api.seen = list(script), []
    with httpx.Client(auth=fresh()) as client:
        check(client.get(api.url + "/s").status_code)

    # httpx, async
    api.script, api.seen = list(script), []

    auth = fresh()

    async def run() -> int:
        async with httpx.AsyncClient(auth=auth) as client:
            return (await client.get(api.url + "/a")).status_code

    check(asyncio.run(run()))


def test_oidc_auth_retries_a_401_with_another_error_than_insufficient_scope(
    fake_idp: FakeIdP, api: FakeAPI, sources: list[OAuthTokenSource]
) -> None:
    """DESIGN: retry once on a 401, except when the challenge says insufficient_scope (an
    RFC 6750 code that belongs in a 400, like invalid_request here, is still retried)."""
    import httpx

    from oauth_auth import OIDCAuth

    auth = OIDCAuth(_auth_source(sources, fake_idp))
    api.script = [(401, {"WWW-Authenticate": 'Bearer error="invalid_request"'})]
    with httpx.Client(auth=auth) as client:
        assert client.get(api.url + "/x").status_code == 200
    assert len(api.seen) == 2


# ------------------------------------------------------------------------------ secrets


def test_secrets_provider_is_a_protocol_with_the_three_methods() -> None:
    assert getattr(SecretsProvider, "_is_protocol", False) is True
    for method in ("get_secret", "set_secret", "delete_secret"):
        assert callable(getattr(SecretsProvider, method))
    hints = typing.get_type_hints(SecretsProvider.get_secret)
    assert hints["name"] is str
    assert hints["return"] == (str | None)


def test_memory_secrets_contract() -> None:
    store = MemorySecrets()
    assert store.get_secret("a") is None
    store.set_secret("a", "1")
    store.set_secret("a", "2")
    assert store.get_secret("a") == "2"
    store.delete_secret("a")
    store.delete_secret("a")  # idempotent
    assert store.get_secret("a") is None


def test_environment_secrets_default_prefix_and_read_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOOLHIVE_SECRET_some_name", "value-1")
    monkeypatch.setenv("OTHER_some_name", "value-2")
    env = EnvironmentSecrets()
    assert env.get_secret("some_name") == "value-1"
    assert env.get_secret("absent_name") is None
    assert EnvironmentSecrets(prefix="OTHER_").get_secret("some_name") == "value-2"
    assert inspect.signature(EnvironmentSecrets).parameters["prefix"].default == (
        "TOOLHIVE_SECRET_"
    )
    with pytest.raises(SecretsError):
        env.set_secret("x", "y")
    with pytest.raises(SecretsError):
        env.delete_secret("x")
    assert "TOOLHIVE_SECRET_x" not in os.environ


def test_scoped_secrets_naming() -> None:
    inner = MemorySecrets()
    scoped = ScopedSecrets(inner, "llm")
    scoped.set_secret("KEY_AT", "v")
    assert inner.get_secret("__thv_llm_KEY_AT") == "v"
    assert inner.get_secret("KEY_AT") is None
    assert scoped.get_secret("KEY_AT") == "v"
    inner.set_secret("__thv_llm_OTHER", "w")
    assert scoped.get_secret("OTHER") == "w"
    scoped.delete_secret("KEY_AT")
    assert inner.get_secret("__thv_llm_KEY_AT") is None
    scoped.delete_secret("KEY_AT")


def test_chain_secrets_first_hit_and_writes_to_every_writable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOOLHIVE_SECRET_k", "from-env")
    first, second = MemorySecrets(), MemorySecrets()
    second.set_secret("k", "from-second")
    second.set_secret("only2", "two")
    chain = ChainSecrets(EnvironmentSecrets(), first, second)
    assert chain.get_secret("k") == "from-env"
    assert chain.get_secret("only2") == "two"
    assert chain.get_secret("none") is None
    chain.set_secret("new", "v")  # the read-only environment is skipped, not an error
    assert first.get_secret("new") == "v"
    assert second.get_secret("new") == "v"
    chain.delete_secret("only2")
    assert second.get_secret("only2") is None
    chain.delete_secret("only2")
    assert chain.get_secret("only2") is None


def test_keyring_secrets_default_service() -> None:
    sig = inspect.signature(KeyringSecrets)
    assert sig.parameters["service"].default == "oauth-auth"


def test_keyring_secrets_through_the_configured_backend(file_keyring: KeyringFile) -> None:
    store = KeyringSecrets()
    assert store.get_secret("n") is None
    store.set_secret("n", "v")
    assert file_keyring.entries() == {"n": "v"}
    assert store.get_secret("n") == "v"
    store.delete_secret("n")
    store.delete_secret("n")
    assert file_keyring.entries() == {}


def test_keyring_placeholders_are_refused() -> None:
    for module in ("keyring.backends.fail", "keyring.backends.null"):
        backend: Any = importlib.import_module(module).Keyring()
        with pytest.raises(SecretsError):
            KeyringSecrets(backend=backend).get_secret("x")


# ------------------------------------------------------------------------------ errors


def test_error_tree() -> None:
    for cls in (
        LoginRequiredError,
        OAuthError,
        InvalidGrantError,
        SecretsError,
        TransportError,
        LoginError,
    ):
        assert issubclass(cls, OAuthAuthError), cls
    assert issubclass(InvalidGrantError, OAuthError)
    assert issubclass(OAuthAuthError, Exception)
    error = OAuthError("invalid_client", "the client is unknown")
    assert error.error == "invalid_client"
    assert "invalid_client" in str(error)
    grant = InvalidGrantError("invalid_grant", "refresh token expired")
    assert grant.error == "invalid_grant"
    assert isinstance(grant, OAuthAuthError)
    doc = oauth_auth.errors.__doc__ or ""
    for name in ERROR_NAMES:
        assert name in doc


# ------------------------------------------------------------------------------ profiles


def test_profile_signatures() -> None:
    for fn, first in ((registry_auth, "registry_url"), (llm_gateway_auth, "gateway_url")):
        params = inspect.signature(fn).parameters
        names = list(params)
        assert names[0] == first
        for name in ("issuer", "client_id", "scopes", "audience", "interactive", "config_path"):
            assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, (fn, name)
            assert params[name].default is None, (fn, name)


def _registry_config(path: Path, registry: str, issuer: str, **more: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"issuer": issuer, "client_id": CLIENT, **more}
    path.write_text(json.dumps({"registries": {registry: entry}}))


def test_registry_auth_reads_the_config_refreshes_and_persists(
    file_keyring: KeyringFile, fake_idp: FakeIdP, api: FakeAPI, config_file: Path
) -> None:
    import httpx

    _registry_config(config_file, REGISTRY, fake_idp.issuer)
    key = derive_secret_key("REGISTRY_OAUTH_", REGISTRY, fake_idp.issuer)
    scoped = "__thv_registry_" + key  # DESIGN, Release 2: ToolHive's registry scope
    seeded = fake_idp.seed()
    file_keyring.set(scoped, seeded)
    auth = registry_auth(REGISTRY, interactive=False)
    try:
        with httpx.Client(auth=auth) as client:
            assert client.get(api.url).status_code == 200
        access = fake_idp.issued[-1]
        assert api.seen == [f"Bearer {access}"]
        stored = file_keyring.entries()
        assert stored[scoped] != seeded
        assert stored[scoped + "_AT"].startswith(access + "|")
        entry = json.loads(config_file.read_text())["registries"][REGISTRY]
        assert entry["cached_refresh_token_ref"] == key
        assert RFC3339_Z.fullmatch(entry["cached_token_expiry"])
        assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    finally:
        close = getattr(getattr(auth, "source", None), "close", None)
        if callable(close):
            close()


def test_registry_auth_uses_the_cached_ref_as_key(
    file_keyring: KeyringFile, api: FakeAPI, config_file: Path
) -> None:
    import httpx

    issuer = "https://idp.example.test"
    _registry_config(config_file, REGISTRY, issuer, cached_refresh_token_ref="MY_REF")
    token = long_token("access")
    file_keyring.set("__thv_registry_MY_REF_AT", at_entry(token, 3600))  # DESIGN, Release 2
    with httpx.Client(auth=registry_auth(REGISTRY, interactive=False)) as client:
        client.get(api.url)
    assert api.seen == [f"Bearer {token}"]


def test_registry_auth_without_a_session_says_to_run_registry_login(
    file_keyring: KeyringFile, api: FakeAPI, config_file: Path
) -> None:
    import httpx

    _registry_config(config_file, REGISTRY, "https://idp.example.test")
    with httpx.Client(auth=registry_auth(REGISTRY, interactive=False)) as client:
        with pytest.raises(LoginRequiredError) as info:
            client.get(api.url)
    assert "oauth-auth registry login" in str(info.value)
    assert api.seen == []


def test_registry_auth_arguments_override_the_config(
    file_keyring: KeyringFile, api: FakeAPI, tmp_path: Path
) -> None:
    import httpx

    other = tmp_path / "other.json"
    _registry_config(other, REGISTRY, "https://wrong.example.test")
    issuer = "https://right.example.test"
    token = long_token("access")
    key = "__thv_registry_" + derive_secret_key("REGISTRY_OAUTH_", REGISTRY, issuer)
    file_keyring.set(key + "_AT", at_entry(token, 3600))
    auth = registry_auth(
        REGISTRY, issuer=issuer, client_id="x", config_path=str(other), interactive=False
    )
    with httpx.Client(auth=auth) as client:
        client.get(api.url)
    assert api.seen == [f"Bearer {token}"]


def test_llm_gateway_auth_env_injection_scope_and_ten_minute_window(
    file_keyring: KeyringFile,
    api: FakeAPI,
    fake_idp: FakeIdP,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import httpx

    from oauth_auth import OIDCAuth

    issuer = fake_idp.issuer
    key = derive_secret_key("LLM_OAUTH_", GATEWAY, issuer)
    variable = llm_access_token_env_var(GATEWAY, issuer)

    def call(auth: OIDCAuth) -> None:
        with httpx.Client(auth=auth) as client:
            client.get(api.url)

    # A token in the environment: no keyring entry, no provider call.
    injected = long_token("ci")
    monkeypatch.setenv(variable, at_entry(injected, 3600))
    call(llm_gateway_auth(GATEWAY, issuer=issuer, client_id=CLIENT, interactive=False))
    assert api.seen[-1] == f"Bearer {injected}"
    assert fake_idp.token_forms == []

    # 9 minutes left is inside the 10-minute window: not served; nothing else -> login.
    monkeypatch.setenv(variable, at_entry(long_token("ci"), 540))
    with pytest.raises(LoginRequiredError):
        call(llm_gateway_auth(GATEWAY, issuer=issuer, client_id=CLIENT, interactive=False))
    monkeypatch.delenv(variable)

    # The keyring entries are scoped "__thv_llm_".
    file_keyring.set(f"__thv_llm_{key}", fake_idp.seed())
    auth = llm_gateway_auth(GATEWAY, issuer=issuer, client_id=CLIENT, interactive=False)
    try:
        call(auth)
    finally:
        close = getattr(getattr(auth, "source", None), "close", None)
        if callable(close):
            close()
    access = fake_idp.issued[-1]
    assert api.seen[-1] == f"Bearer {access}"
    stored = file_keyring.entries()
    assert set(stored) == {f"__thv_llm_{key}", f"__thv_llm_{key}_AT"}
    assert stored[f"__thv_llm_{key}_AT"].startswith(access + "|")


# ------------------------------------------------------------------------------ interactive


def test_browser_login_stores_rt_then_at_then_persists(
    real_idp: Any, sources: list[OAuthTokenSource]
) -> None:
    from tests.support.browser import Background, http_browser_login

    port = free_port()
    store = RecordingSecrets()
    persisted: list[tuple[str, datetime]] = []

    def persister(key: str, expiry: datetime) -> None:
        store.events.append(("persist", key))
        persisted.append((key, expiry))

    browser = Background(http_browser_login)
    oidc = OIDCParams(real_idp.issuer, real_idp.client_id, callback_port=port)
    source = OAuthTokenSource(
        oidc,
        key_provider=lambda: "LOGIN_KEY",
        secrets_provider=store,
        interactive=True,
        config_persister=persister,
        open_browser=browser,
        login_timeout=30,
    )
    sources.append(source)
    token = source.token()
    browser.wait(10)
    url = urllib.parse.urlsplit(browser.urls[0])
    query = dict(urllib.parse.parse_qsl(url.query))
    assert query["redirect_uri"] == f"http://localhost:{port}/callback"
    assert query["code_challenge_method"] == "S256"
    assert query["response_type"] == "code"
    assert "offline_access" in query["scope"].split()
    assert [e[:2] for e in store.events] == [
        ("set", "LOGIN_KEY"),
        ("set", "LOGIN_KEY_AT"),
        ("persist", "LOGIN_KEY"),
    ]
    assert store.data["LOGIN_KEY_AT"].startswith(token + "|")
    assert persisted[0][1].utcoffset() == timedelta(0)


def test_device_login_opens_the_complete_verification_uri(
    real_idp: Any, sources: list[OAuthTokenSource]
) -> None:
    from tests.support.browser import Background
    from tests.support.idp import http_device_approve

    approver = Background(http_device_approve)
    store = MemorySecrets()
    oidc = OIDCParams(real_idp.issuer, real_idp.client_id)
    source = OAuthTokenSource(
        oidc,
        key_provider=lambda: "DEVICE_KEY",
        secrets_provider=store,
        interactive=True,
        login_method="device",
        open_browser=approver,
        login_timeout=30,
    )
    sources.append(source)
    token = source.token()
    approver.wait(10)
    assert "user_code=" in approver.urls[0]
    assert store.get_secret("DEVICE_KEY")
    assert (store.get_secret("DEVICE_KEY_AT") or "").startswith(token + "|")


# ------------------------------------------------------------------------------ command line


def _adhoc(idp: FakeIdP | str, client: str = CLIENT) -> list[str]:
    issuer = idp if isinstance(idp, str) else idp.issuer
    return ["--issuer", issuer, "--client-id", client]


def test_cli_nothing_stored(fake_idp: FakeIdP, tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    result = cli(env, "token", *_adhoc(fake_idp))
    assert (result.returncode, result.stdout) == (4, "")
    assert "login" in result.stderr
    result = cli(env, "status", *_adhoc(fake_idp))
    assert result.returncode == 4
    result = cli(env, "logout", *_adhoc(fake_idp))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_cli_token_refresh_cache_status_logout(fake_idp: FakeIdP, tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    keyring_file = KeyringFile(tmp_path / "keyring.json")
    key = derive_secret_key("OAUTH_AUTH_", CLIENT, fake_idp.issuer)
    seeded = fake_idp.seed()
    keyring_file.set(key, seeded)

    result = cli(env, "token", *_adhoc(fake_idp))
    assert result.returncode == 0, result.stderr
    access = fake_idp.issued[-1]
    assert result.stdout == access + "\n"
    assert access not in result.stderr
    stored = keyring_file.entries()
    assert stored[key] not in (seeded, "")
    value, _, stamp = stored[key + "_AT"].partition("|")
    assert value == access
    assert RFC3339_Z.fullmatch(stamp)

    # Another process: tier 2, no provider call.
    result = cli(env, "token", *_adhoc(fake_idp))
    assert (result.returncode, result.stdout) == (0, access + "\n")
    assert len(fake_idp.issued) == 1

    result = cli(env, "status", *_adhoc(fake_idp))
    assert result.returncode == 0, result.stderr
    everything = result.stdout + result.stderr
    for secret in (access, stored[key], seeded):
        assert secret not in everything
    assert fake_idp.issuer in everything

    rotated = stored[key]
    result = cli(env, "logout", *_adhoc(fake_idp))
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    assert fake_idp.revoked == [rotated]
    assert keyring_file.entries() == {}
    assert cli(env, "token", *_adhoc(fake_idp)).returncode == 4
    assert cli(env, "status", *_adhoc(fake_idp)).returncode == 4
    assert cli(env, "logout", *_adhoc(fake_idp)).returncode == 0


def test_cli_adhoc_key_is_derived_from_audience_or_client_id(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    keyring_file = KeyringFile(tmp_path / "keyring.json")
    issuer = "https://idp.example.test"
    by_audience = long_token("aud")
    by_client = long_token("client")
    keyring_file.set(
        derive_secret_key("OAUTH_AUTH_", "api://x", issuer) + "_AT", at_entry(by_audience, 3600)
    )
    keyring_file.set(
        derive_secret_key("OAUTH_AUTH_", CLIENT, issuer) + "_AT", at_entry(by_client, 3600)
    )
    result = cli(env, "token", *_adhoc(issuer), "--audience", "api://x")
    assert (result.returncode, result.stdout) == (0, by_audience + "\n"), result.stderr
    result = cli(env, "token", *_adhoc(issuer))
    assert (result.returncode, result.stdout) == (0, by_client + "\n"), result.stderr


def test_cli_dead_session_is_4_other_provider_errors_are_1(
    fake_idp: FakeIdP, tmp_path: Path
) -> None:
    env = cli_env(tmp_path)
    keyring_file = KeyringFile(tmp_path / "keyring.json")
    key = derive_secret_key("OAUTH_AUTH_", CLIENT, fake_idp.issuer)
    keyring_file.set(key, long_token("dead"))
    result = cli(env, "token", *_adhoc(fake_idp))
    assert (result.returncode, result.stdout) == (4, ""), result.stderr
    keyring_file.set(key, fake_idp.seed())
    fake_idp.error = "invalid_client"
    result = cli(env, "token", *_adhoc(fake_idp))
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert result.stderr.strip()


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["token"],
        ["token", "--issuer", "https://idp.example.test"],
        ["frobnicate"],
        ["token", "--issuer", "https://idp.example.test", "--client-id", "c", "--nope"],
        ["registry", "token", "--issuer", "https://idp.example.test", "--client-id", "c"],
        ["llm", "token", "--issuer", "https://idp.example.test", "--client-id", "c"],
        ["registry"],
    ],
)
def test_cli_bad_usage_exits_2(tmp_path: Path, argv: list[str]) -> None:
    result = cli(cli_env(tmp_path), *argv)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr


def test_cli_subcommands_and_flags_are_there(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    for group in ([], ["registry"], ["llm"]):
        for command in ("login", "token", "logout", "status"):
            result = cli(env, *group, command, "--help")
            assert result.returncode == 0, (group, command, result.stderr)
            text = result.stdout
            for flag in ("--issuer", "--client-id", "--scope", "--audience"):
                assert flag in text, (group, command, flag)
            # Login-only flags are login's alone (issue 14: token, status and logout
            # accepted and listed them).
            for flag in ("--callback-port", "--no-browser", "--device"):
                assert (flag in text) == (command == "login"), (group, command, flag)
            if group == ["registry"]:
                assert "--registry" in text
            elif group == ["llm"]:
                assert "--gateway" in text
            else:
                assert "--profile" in text


def test_cli_registry_token_persists_to_the_config_and_reads_it_back(
    fake_idp: FakeIdP, tmp_path: Path
) -> None:
    env = cli_env(tmp_path)
    config = Path(env["OAUTH_AUTH_CONFIG"])
    keyring_file = KeyringFile(tmp_path / "keyring.json")
    key = derive_secret_key("REGISTRY_OAUTH_", REGISTRY, fake_idp.issuer)
    # DESIGN, Release 2: registry tokens live under ToolHive's `__thv_registry_<key>`.
    keyring_file.set("__thv_registry_" + key, fake_idp.seed())
    result = cli(env, "registry", "token", "--registry", REGISTRY, *_adhoc(fake_idp))
    assert result.returncode == 0, result.stderr
    access = fake_idp.issued[-1]
    assert result.stdout == access + "\n"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    entry = json.loads(config.read_text())["registries"][REGISTRY]
    assert entry["cached_refresh_token_ref"] == key
    assert RFC3339_Z.fullmatch(entry["cached_token_expiry"])
    assert access not in config.read_text()
    # Settings and key now come from the config file.
    result = cli(env, "registry", "token", "--registry", REGISTRY)
    assert (result.returncode, result.stdout) == (0, access + "\n"), result.stderr


def test_cli_llm_token_from_the_environment(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    issuer = "https://idp.example.test"
    injected = long_token("ci")
    env[llm_access_token_env_var(GATEWAY, issuer)] = at_entry(injected, 3600)
    result = cli(env, "llm", "token", "--gateway", GATEWAY, *_adhoc(issuer))
    assert (result.returncode, result.stdout) == (0, injected + "\n"), result.stderr
    env[llm_access_token_env_var(GATEWAY, issuer)] = at_entry(injected, 300)
    result = cli(env, "llm", "token", "--gateway", GATEWAY, *_adhoc(issuer))
    assert (result.returncode, result.stdout) == (4, "")


def test_cli_named_profile_from_a_json_config(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    config = Path(env["OAUTH_AUTH_CONFIG"])
    config.parent.mkdir(parents=True, exist_ok=True)
    issuer = "https://idp.example.test"
    config.write_text(
        json.dumps(
            {"profiles": {"work": {"issuer": issuer, "client_id": CLIENT, "audience": "api://w"}}}
        )
    )
    token = long_token("work")
    # DESIGN, Release 2: a named profile's key carries its name.
    KeyringFile(tmp_path / "keyring.json").set(
        derive_secret_key("OAUTH_AUTH_WORK_", "api://w", issuer) + "_AT", at_entry(token, 3600)
    )
    result = cli(env, "token", "--profile", "work")
    assert (result.returncode, result.stdout) == (0, token + "\n"), result.stderr


@pytest.mark.parametrize(
    ("filename", "section", "argv"),
    [
        (
            "config.toml",
            f'[registries."{REGISTRY}"]',
            ["registry", "token", "--registry", REGISTRY],
        ),
        ("config.toml", "[profiles.work]", ["token", "--profile", "work"]),
    ],
)
def test_cli_reads_a_toml_config_file(
    tmp_path: Path, filename: str, section: str, argv: list[str]
) -> None:
    """DESIGN: the config file "is TOML or JSON"."""
    env = cli_env(tmp_path)
    config = tmp_path / "cfg" / filename
    config.parent.mkdir(parents=True, exist_ok=True)
    issuer = "https://idp.example.test"
    config.write_text(f'{section}\nissuer = "{issuer}"\nclient_id = "{CLIENT}"\n')
    env["OAUTH_AUTH_CONFIG"] = str(config)
    token = long_token("toml")
    resource = REGISTRY if argv[0] == "registry" else CLIENT
    # DESIGN, Release 2: `__thv_registry_<key>`, and a named profile's key carries its name
    prefix = "REGISTRY_OAUTH_" if argv[0] == "registry" else "OAUTH_AUTH_WORK_"
    scope = "__thv_registry_" if argv[0] == "registry" else ""
    KeyringFile(tmp_path / "keyring.json").set(
        scope + derive_secret_key(prefix, resource, issuer) + "_AT", at_entry(token, 3600)
    )
    result = cli(env, *argv)
    assert (result.returncode, result.stdout) == (0, token + "\n"), result.stderr


def test_cli_plaintext_backend_is_honoured_with_a_warning(tmp_path: Path) -> None:
    env = cli_env(tmp_path, backend="contract_keyring.PlaintextKeyring")
    issuer = "https://idp.example.test"
    token = long_token("plain")
    KeyringFile(tmp_path / "keyring.json").set(
        derive_secret_key("OAUTH_AUTH_", CLIENT, issuer) + "_AT", at_entry(token, 3600)
    )
    result = cli(env, "token", *_adhoc(issuer))
    assert (result.returncode, result.stdout) == (0, token + "\n"), result.stderr
    assert "warning" in result.stderr.lower()
    assert token not in result.stderr
    result = cli(env, "status", *_adhoc(issuer))
    assert result.returncode == 0
    assert "plaintext" in (result.stdout + result.stderr).lower()
    assert token not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "backend", ["keyring.backends.fail.Keyring", "keyring.backends.null.Keyring"]
)
def test_cli_keyring_placeholders_are_refused(tmp_path: Path, backend: str) -> None:
    env = cli_env(tmp_path, backend=backend)
    result = cli(env, "token", *_adhoc("https://idp.example.test"))
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert not (tmp_path / "keyring.json").exists()


def run_login(
    env: dict[str, str], argv: list[str], pattern: str, user: Callable[[str], object]
) -> tuple[int, str, str]:
    """Run `oauth-auth <argv>`, wait for a URL matching `pattern` on its stderr, play the
    user with `user(url)`, then return (exit code, stdout, the URL)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "oauth_auth", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(ROOT),
    )
    try:
        assert process.stderr is not None
        url = ""
        seen: list[str] = []
        deadline = time.monotonic() + 20
        while not url and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            seen.append(line)
            match = re.search(pattern, line)
            if match:
                url = match.group(1)
        assert url, "".join(seen)
        user(url)
        stdout, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stdout, url


def test_cli_login_no_browser_prints_the_url_and_stores_the_session(
    real_idp: Any, tmp_path: Path
) -> None:
    from tests.support.browser import http_browser_login

    env = cli_env(tmp_path)
    port = free_port()
    flags = ["--issuer", real_idp.issuer, "--client-id", real_idp.client_id]
    argv = ["login", *flags, "--callback-port", str(port), "--no-browser"]
    code, stdout, url = run_login(env, argv, r"(https?://\S+/auth\?\S+)", http_browser_login)
    assert (code, stdout) == (0, "")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    assert query["redirect_uri"] == f"http://localhost:{port}/callback"
    assert query["code_challenge_method"] == "S256"
    key = derive_secret_key("OAUTH_AUTH_", real_idp.client_id, real_idp.issuer)
    stored = KeyringFile(tmp_path / "keyring.json").entries()
    assert set(stored) == {key, key + "_AT"}
    access = stored[key + "_AT"].partition("|")[0]
    result = cli(env, "token", *flags)
    assert (result.returncode, result.stdout) == (0, access + "\n"), result.stderr


def test_cli_login_device_uses_the_device_grant(real_idp: Any, tmp_path: Path) -> None:
    from tests.support.idp import http_device_approve

    env = cli_env(tmp_path)
    flags = ["--issuer", real_idp.issuer, "--client-id", real_idp.client_id]
    code, stdout, _ = run_login(
        env, ["login", *flags, "--device"], r"(https?://\S*user_code=\S+)", http_device_approve
    )
    assert (code, stdout) == (0, "")
    assert real_idp.token_requests("urn:ietf:params:oauth:grant-type:device_code") == 1
    assert real_idp.token_requests("authorization_code", outcome=None) == 0
    key = derive_secret_key("OAUTH_AUTH_", real_idp.client_id, real_idp.issuer)
    assert set(KeyringFile(tmp_path / "keyring.json").entries()) == {key, key + "_AT"}


def test_cli_config_file_is_written_0600(fake_idp: FakeIdP, tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    config = tmp_path / "elsewhere" / "oauth.json"
    env["OAUTH_AUTH_CONFIG"] = str(config)
    key = derive_secret_key("OAUTH_AUTH_P1_", CLIENT, fake_idp.issuer)  # DESIGN, Release 2
    # A profile whose settings come from flags: the persister writes its entry.
    KeyringFile(tmp_path / "keyring.json").set(key, fake_idp.seed())
    result = cli(env, "token", "--profile", "p1", *_adhoc(fake_idp))
    assert result.returncode == 0, result.stderr
    assert config.exists()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    entry = json.loads(config.read_text())["profiles"]["p1"]
    assert entry["issuer"] == fake_idp.issuer
    assert entry["cached_refresh_token_ref"] == key
