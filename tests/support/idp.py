"""The bench's real OpenID provider: launcher, admin client, a tiny test client, fixtures.

`start_idp(**settings)` spawns `node tests/idp/server.mjs` (oidc-provider) on 127.0.0.1 with a
random port and fresh keys; the returned `IdP` drives its admin endpoint (request counts,
fault injection, run-time settings). The process reads our end of a pipe on stdin and exits
when it closes, so it never outlives the test process.

Fixtures (loaded as a plugin from tests/conftest.py):

- `real_idp`: the session's shared provider (default settings), reset before each test
  (counts, faults and run-time settings back to their start values).
- `real_idp_factory`: `real_idp_factory(**settings) -> IdP` for per-test settings; stops them
  all after.

(`fake_idp`, in tests/conftest.py, is the in-process fake: tests/support/fakes.py.)

The test client here (`obtain_tokens`, `device_login`, `refresh`) is the bench's own, built on
httpx, independent of the library under test: it seeds refresh tokens and checks the bench.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.require import missing
from tests.support.servers import stop_child

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEVICE_GRANT",
    "IdP",
    "IdPError",
    "decode_jwt_payload",
    "device_approve",
    "device_login",
    "exchange_code",
    "http_device_approve",
    "authorization_url",
    "make_pkce",
    "obtain_tokens",
    "refresh",
    "refresh_count",
    "require_idp",
    "start_idp",
    "token_request",
]

IDP_DIR = Path(__file__).resolve().parent.parent / "idp"
SERVER = IDP_DIR / "server.mjs"
DEFAULT_CLIENT_ID = "oauth-auth-test"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
READY_TIMEOUT = 60.0
INSTALL_HINT = "install Node.js >= 20 and run `npm ci --prefix tests/idp` (or `make deps`)"


def http_device_approve(verification_uri: str, user_code: str | None = None, **kwargs: Any) -> str:
    """`tests.support.browser.http_device_approve` (imported late: both modules are plugins,
    and importing one from the other at import time would defeat pytest's assert rewriting)."""
    from tests.support.browser import http_device_approve as approve

    return approve(verification_uri, user_code, **kwargs)


device_approve = http_device_approve


class IdPError(RuntimeError):
    """The provider could not be started or its admin endpoint refused a request."""


def require_idp() -> str:
    """Return the path of `node`; skip (locally) or fail (CI) when the provider can't run."""
    node = shutil.which("node")
    if node is None:
        missing("Node.js (node)", INSTALL_HINT)
    if not (IDP_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        missing("tests/idp/node_modules (oidc-provider)", INSTALL_HINT)
    return node


def refresh_count(counts: dict[str, Any], outcome: str = "ok") -> int:
    """How many refresh_token grant requests in `counts` (from `IdP.counts()`) had `outcome`."""
    return int(counts.get("token", {}).get("refresh_token", {}).get(outcome, 0))


@dataclass
class IdP:
    """A running provider. Safe to use from several threads (each call is one HTTP request).

    Attributes:
        issuer: "http://127.0.0.1:PORT", no trailing slash.
        client_id: the public native client (PKCE, no secret; loopback redirect URIs
            http://127.0.0.1/callback and http://localhost/callback on any port).
        admin_url: issuer + "/__admin".
        process: the node process.
        api_client_id, api_client_secret: a confidential client allowed to introspect any token.
        settings: the settings it was started with (see tests/idp/server.mjs).
    """

    issuer: str
    client_id: str
    admin_url: str
    process: subprocess.Popen[bytes]
    api_client_id: str = "api"
    api_client_secret: str = "api-secret"
    machine_client_id: str = "machine"  # client_credentials and token exchange, secret basic
    machine_client_secret: str = "machine-secret"
    settings: dict[str, Any] = field(default_factory=dict)
    oidc_provider_version: str = ""
    base_url: str = ""  # scheme://host:port (the issuer may add a path, as mode rfc8414 does)
    mode: str = ""  # the cloud provider quirks it reproduces (tests/idp/server.mjs MODES)
    _stderr: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=200))
    _readers: list[threading.Thread] = field(default_factory=list)
    _metadata: dict[str, Any] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def stderr_tail(self) -> str:
        """The last lines the provider wrote to stderr (warnings, crashes)."""
        return "".join(self._stderr)

    # -- discovery ----------------------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        """The discovery document, fetched once per IdP (that fetch counts as one "discovery")."""
        if self._metadata is None:
            response = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10)
            response.raise_for_status()
            self._metadata = response.json()
        return self._metadata

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    # Fixed routes (see ROUTES in server.mjs); no discovery round trip needed.
    @property
    def authorization_endpoint(self) -> str:
        return f"{self.issuer}/auth"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def device_authorization_endpoint(self) -> str:
        return f"{self.issuer}/device_authorization"

    @property
    def revocation_endpoint(self) -> str:
        return f"{self.issuer}/revoke"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.issuer}/introspect"

    @property
    def userinfo_endpoint(self) -> str:
        return f"{self.issuer}/me"

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 introspection of an access or refresh token, as the API client."""
        response = httpx.post(self.introspection_endpoint, data={"token": token},
                              auth=(self.api_client_id, self.api_client_secret), timeout=10)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def active(self, token: str) -> bool:
        """Whether the provider still accepts `token`."""
        return bool(self.introspect(token).get("active"))

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    # -- admin ---------------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: object = None) -> Any:
        response = httpx.request(
            method,
            f"{self.admin_url}{path}",
            json=body if body is not None else ({} if method == "POST" else None),
            timeout=10,
        )
        if response.status_code >= 400:
            raise IdPError(f"{method} /__admin{path}: {response.status_code} {response.text}")
        return response.json()

    def counts(self) -> dict[str, Any]:
        """Request counts since the last reset.

        {"token": {grant_type: {outcome: n}}, "faults": {path: n}, "authorization": n,
        "device_authorization": n, "revocation": n, "introspection": n, "discovery": n,
        "jwks": n, "userinfo": n, "end_session": n}. The outcome is "ok" (HTTP 200), the
        OAuth error code ("invalid_grant", "authorization_pending"...), "http_<status>" or
        "fault" (answered by an injected fault, which also counts in "faults").
        """
        result: dict[str, Any] = self._admin("GET", "/counts")
        return result

    def token_requests(self, grant: str = "refresh_token", outcome: str | None = "ok") -> int:
        """Token endpoint requests with this grant type and outcome (None: any outcome)."""
        by_outcome = self.counts()["token"].get(grant, {})
        if outcome is None:
            return int(sum(by_outcome.values()))
        return int(by_outcome.get(outcome, 0))

    def exchanges(self) -> list[dict[str, Any]]:
        """Every token exchange since the last reset: client_id, the subject token's sub,
        repository, ref, aud and jti, actor_sub, resource, and error ("" if accepted)."""
        result: list[dict[str, Any]] = self._admin("GET", "/exchanges")
        return result

    def reset_counts(self) -> None:
        self._admin("POST", "/reset")

    def reset(self) -> None:
        """Counts, faults and run-time settings back to how they were at start."""
        self._admin("POST", "/reset-all")

    def inject_fault(
        self,
        path: str,
        *,
        count: int = 1,
        status: int | None = None,
        body: str | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        delay_ms: int | None = None,
        drop: bool = False,
        method: str | None = None,
    ) -> None:
        """Answer the next `count` requests whose path is `path` or under `path/` with a fault.

        status/body/headers: the answer (a dict body is sent as JSON); delay_ms: wait first
        (alone: then serve normally); drop: close the connection without an answer.
        Paths: "/token", "/.well-known/openid-configuration", "/jwks", "/auth",
        "/device_authorization", "/revoke", "/introspect", "/me".
        """
        fault: dict[str, Any] = {"path": path, "count": count, "drop": drop}
        for key, value in (
            ("status", status),
            ("body", body),
            ("headers", headers),
            ("delay_ms", delay_ms),
            ("method", method),
        ):
            if value is not None:
                fault[key] = value
        self._admin("POST", "/fault", fault)

    def faults(self) -> list[dict[str, Any]]:
        """Faults still pending (with their `remaining` count)."""
        result: list[dict[str, Any]] = self._admin("GET", "/faults")
        return result

    def clear_faults(self) -> None:
        self._admin("POST", "/faults/clear")

    def config(self) -> dict[str, Any]:
        """{"issuer", "settings", "initial_settings", "clients", "routes"}."""
        result: dict[str, Any] = self._admin("GET", "/config")
        return result

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change run-time settings: access_token_ttl, refresh_token_ttl, id_token_ttl,
        device_code_ttl (seconds), rotate_refresh_token (bool), device_interval (int|None).
        They apply to tokens issued from now on; `reset()` restores them."""
        result: dict[str, Any] = self._admin("POST", "/config", changes)
        return result["settings"]  # type: ignore[no-any-return]

    def revoke_all(self) -> int:
        """Revoke every grant (and its codes and tokens) issued so far; returns how many."""
        return int(self._admin("POST", "/revoke-all")["grants"])

    # -- life cycle ----------------------------------------------------------------------------

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Close its stdin (it exits by itself), then terminate, then kill. Idempotent."""
        stop_child(self.process, self._readers, timeout)

    def __enter__(self) -> IdP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _drain(stream: Any, sink: collections.deque[str]) -> None:
    try:
        for line in iter(stream.readline, b""):
            sink.append(line.decode("utf-8", "replace"))
    except (OSError, ValueError):
        pass


def start_idp(*, timeout: float = READY_TIMEOUT, **settings: Any) -> IdP:
    """Spawn the provider with these settings (see tests/idp/server.mjs) and wait until ready.

    Settings: client_id, access_token_ttl, refresh_token_ttl, id_token_ttl, device_code_ttl,
    rotate_refresh_token, device_interval, resource_scope, scopes, audience_param,
    api_client_id, api_client_secret, extra_clients, client_secret, tenant_id,
    machine_client_id, machine_client_secret, machine_jwks, exchange_issuer,
    exchange_jwks_uri, exchange_audience, mode ("google", "entra", "auth0", "cognito",
    "gitlab", "github", "b2c", "hs256", "hs256_forged", "rfc8414": a provider's documented
    quirks, see MODES in server.mjs), tls_cert and tls_key (PEM: serve HTTPS).
    Raises IdPError (with the process's
    stderr) if it does not come up within `timeout` seconds.
    """
    node = require_idp()
    env = dict(os.environ)
    env.pop("NODE_OPTIONS", None)
    env["NODE_NO_WARNINGS"] = "1"
    process = subprocess.Popen(
        [node, str(SERVER), json.dumps(settings)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=IDP_DIR,
        env=env,
    )
    stderr: collections.deque[str] = collections.deque(maxlen=200)
    readers = [threading.Thread(target=_drain, args=(process.stderr, stderr), daemon=True)]

    ready: dict[str, Any] = {}
    stdout_lines: collections.deque[str] = collections.deque(maxlen=50)

    def read_ready() -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            if not ready and line.startswith("{"):
                try:
                    message = json.loads(line)
                except ValueError:
                    message = {}
                if message.get("ready"):
                    ready.update(message)
                    ready_event.set()
                    continue
            stdout_lines.append(line)
        ready_event.set()  # EOF: the process ended

    ready_event = threading.Event()
    readers.append(threading.Thread(target=read_ready, daemon=True))
    for reader in readers:
        reader.start()
    ready_event.wait(timeout)
    if not ready:
        IdP("", "", "", process, _readers=readers).stop(timeout=2)
        raise IdPError(
            f"the OpenID provider did not start within {timeout} s "
            f"(exit code {process.returncode}).\nstdout:\n{''.join(stdout_lines)}"
            f"\nstderr:\n{''.join(stderr)}"
        )
    return IdP(
        issuer=ready["issuer"],
        client_id=ready["client_id"],
        admin_url=ready["admin"],
        process=process,
        api_client_id=ready["api_client_id"],
        api_client_secret=ready["api_client_secret"],
        machine_client_id=ready.get("machine_client_id") or "machine",
        machine_client_secret=ready.get("machine_client_secret") or "machine-secret",
        settings=dict(settings),
        oidc_provider_version=ready.get("oidc_provider") or "",
        base_url=ready.get("base_url") or ready["issuer"],
        mode=ready.get("mode") or "",
        _stderr=stderr,
        _readers=readers,
    )


# -- the bench's own OAuth client (httpx; not the library under test) ------------------------------


def make_pkce() -> tuple[str, str]:
    """A fresh (code_verifier, S256 code_challenge) pair."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def decode_jwt_payload(token: str) -> dict[str, Any]:
    """The payload of a JWT, NOT verified (bench assertions only)."""
    payload = token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return data


def _free_port_guess() -> int:
    return 20000 + secrets.randbelow(30000)


def authorization_url(
    idp: IdP,
    *,
    redirect_uri: str,
    code_challenge: str,
    state: str,
    scopes: Sequence[str] = ("openid", "offline_access"),
    resource: str | None = None,
    client_id: str | None = None,
    prompt: str | None = "consent",
    extra: dict[str, str] | None = None,
) -> str:
    """An authorization request URL (code flow, PKCE S256)."""
    params = {
        "response_type": "code",
        "client_id": client_id or idp.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(scopes),
        "state": state,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    if prompt:
        params["prompt"] = prompt
    if resource:
        params["resource"] = resource
    params.update(extra or {})
    return f"{idp.authorization_endpoint}?{urllib.parse.urlencode(params)}"


def token_request(idp: IdP, data: dict[str, str], *, timeout: float = 10.0) -> httpx.Response:
    """POST a form to the token endpoint as the public client (no Authorization header)."""
    data = {"client_id": idp.client_id, **data}
    return httpx.post(idp.token_endpoint, data=data, timeout=timeout)


def exchange_code(
    idp: IdP,
    code: str,
    *,
    redirect_uri: str,
    code_verifier: str,
    client_id: str | None = None,
    resource: str | None = None,
) -> httpx.Response:
    """The authorization code grant request; returns the raw response."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
        "client_id": client_id or idp.client_id,
    }
    if resource:
        data["resource"] = resource
    return token_request(idp, data)


def refresh(
    idp: IdP,
    refresh_token: str,
    *,
    client_id: str | None = None,
    resource: str | None = None,
    scope: str | None = None,
) -> httpx.Response:
    """The refresh token grant request; returns the raw response (check status yourself)."""
    data = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": client_id or idp.client_id,
    }
    if resource:
        data["resource"] = resource
    if scope:
        data["scope"] = scope
    return token_request(idp, data)


def obtain_tokens(
    idp: IdP,
    *,
    scopes: Sequence[str] = ("openid", "offline_access"),
    resource: str | None = None,
    client_id: str | None = None,
    login: str = "alice",
    redirect_host: str = "127.0.0.1",
    token_resource: bool = True,
) -> dict[str, Any]:
    """Log in (authorization code + PKCE, prompt=consent) and return the token response.

    Plays the browser at HTTP level and never GETs the callback (nothing listens there).
    With `resource`, it is sent in the authorization request and (when `token_resource`)
    in the code exchange: the access token is then a JWT whose `aud` is that resource.
    Raises AssertionError if the provider refuses.
    """
    verifier, challenge = make_pkce()
    state = secrets.token_urlsafe(16)
    redirect_uri = f"http://{redirect_host}:{_free_port_guess()}/callback"
    url = authorization_url(
        idp,
        redirect_uri=redirect_uri,
        code_challenge=challenge,
        state=state,
        scopes=scopes,
        resource=resource,
        client_id=client_id,
    )
    from tests.support.browser import http_browser_login

    callback = http_browser_login(url, login=login, follow_callback=False)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
    assert "code" in query, f"no code in the callback: {query}"
    assert query.get("state") == state, "state mismatch in the callback"
    response = exchange_code(
        idp,
        query["code"],
        redirect_uri=redirect_uri,
        code_verifier=verifier,
        client_id=client_id,
        resource=resource if token_resource else None,
    )
    assert response.status_code == 200, f"code exchange failed: {response.text}"
    tokens: dict[str, Any] = response.json()
    return tokens


def device_authorization(
    idp: IdP,
    *,
    scopes: Sequence[str] = ("openid", "offline_access"),
    resource: str | None = None,
    client_id: str | None = None,
) -> dict[str, Any]:
    """POST the device authorization request; returns device_code, user_code,
    verification_uri(_complete), expires_in, interval."""
    data = {"client_id": client_id or idp.client_id, "scope": " ".join(scopes)}
    if resource:
        data["resource"] = resource
    response = httpx.post(idp.device_authorization_endpoint, data=data, timeout=10)
    assert response.status_code == 200, f"device authorization failed: {response.text}"
    result: dict[str, Any] = response.json()
    return result


def poll_device_token(
    idp: IdP,
    device_code: str,
    *,
    client_id: str | None = None,
    interval: float = 0.2,
    timeout: float = 15.0,
) -> dict[str, Any]:
    """Poll the token endpoint until the device grant ends; returns the final JSON body
    (tokens, or {"error": "access_denied", ...} / "expired_token")."""
    deadline = time.monotonic() + timeout
    while True:
        response = token_request(
            idp,
            {
                "grant_type": DEVICE_GRANT,
                "device_code": device_code,
                "client_id": client_id or idp.client_id,
            },
        )
        body: dict[str, Any] = response.json()
        if body.get("error") not in ("authorization_pending", "slow_down"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError("device grant still pending at the deadline")
        time.sleep(interval)


def device_login(
    idp: IdP,
    *,
    scopes: Sequence[str] = ("openid", "offline_access"),
    resource: str | None = None,
    client_id: str | None = None,
    login: str = "alice",
    deny: bool = False,
) -> dict[str, Any]:
    """The whole device grant: request, approve (or deny) at HTTP level, poll.

    Returns the token response, or the error body ({"error": "access_denied"}) when denied.
    """
    started = device_authorization(idp, scopes=scopes, resource=resource, client_id=client_id)
    http_device_approve(started["verification_uri"], started["user_code"], login=login, deny=deny)
    return poll_device_token(idp, started["device_code"], client_id=client_id)


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_idp_session() -> Iterator[IdP]:
    """The one provider shared by the session (default settings). Prefer `real_idp`."""
    provider = start_idp()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def real_idp(real_idp_session: IdP) -> IdP:
    """The session's provider, reset (counts, faults, run-time settings) for this test."""
    if not real_idp_session.alive():
        pytest.fail(f"the shared OpenID provider died:\n{real_idp_session.stderr_tail}")
    real_idp_session.reset()
    return real_idp_session


@pytest.fixture
def real_idp_factory() -> Iterator[Callable[..., IdP]]:
    """`real_idp_factory(**settings) -> IdP`: providers with their own settings, stopped after."""
    started: list[IdP] = []

    def factory(**settings: Any) -> IdP:
        provider = start_idp(**settings)
        started.append(provider)
        return provider

    try:
        yield factory
    finally:
        for provider in started:
            provider.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the provider get the `idp` marker (so `-m "not idp"` deselects them)."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if {"real_idp", "real_idp_session", "real_idp_factory"} & set(names):
            item.add_marker(pytest.mark.idp)
