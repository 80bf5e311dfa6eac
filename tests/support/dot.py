"""The bench's second real authorization server: django-oauth-toolkit (DOT) with OIDC on.

`start_dot(directory, **settings)` spawns `python -m tests.dot.serve` (a minimal Django
project, tests/dot) on a free 127.0.0.1 port with a fresh SQLite database and RSA key; the
returned `DOT` drives the bench's admin API there (request counts per endpoint, grant type
and outcome; injected faults; run-time settings). The process reads our end of a pipe on
stdin and exits when it closes, so it never outlives the test process.

Its clients (see tests/dot/serve.py): `client_id`, a public native client with the
loopback redirect URIs `http://127.0.0.1/callback` and `http://[::1]/callback` (RFC 8252,
any port) and `http://localhost:<localhost_port>/callback` (that port only, as DOT matches
`localhost` exactly); `confidential_client_id` with a secret and the same redirect URIs;
`hs256_client_id`, a confidential client whose ID tokens DOT signs HS256 with its secret;
`service_client_id`, a client-credentials client; `device_client_id`, a public device-grant
client (DOT registers one grant type per application). Users `alice` and `bob`.

The user is played at HTTP level through DOT's own pages: `dot_browser_login(url)` follows
the authorization URL with cookies, posts Django's login form and DOT's consent form (with
their CSRF tokens), and returns the redirect to the loopback callback; `dot_device_approve`
does the same for the device grant's user-code and confirmation pages. `bench_login` is a
whole code flow done by the bench's own httpx client (not the library), to seed sessions.

Fixtures (a plugin of tests/conftest.py): `dot` (the session's server, reset before each
test), `dot_session`, `dot_factory(**settings)` (servers of one test, stopped after).
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import BrowserFlowError, parse_page, submit_form
from tests.support.hygiene import LEDGER
from tests.support.idp import make_pkce
from tests.support.require import missing
from tests.support.servers import free_port, stop_child

__all__ = [
    "DEVICE_GRANT",
    "DOT",
    "DOTError",
    "bench_login",
    "dot_browser_deny",
    "dot_browser_login",
    "dot_device_approve",
    "require_dot",
    "start_dot",
]

ROOT = Path(__file__).resolve().parent.parent.parent
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
READY_TIMEOUT = 30.0
INSTALL_HINT = (
    "install the `dev` dependency group: `.venv/bin/pip install -e . --group dev` "
    "(django-oauth-toolkit 3.4.1, oauthlib<4), or `make deps`"
)
MAX_STEPS = 20


class DOTError(RuntimeError):
    """The DOT server could not be started or its admin API refused a request."""


def require_dot() -> None:
    """Skip (locally) or fail (CI) when django-oauth-toolkit 3.x and Django are missing."""
    for module in ("django", "oauth2_provider", "oauthlib"):
        if importlib.util.find_spec(module) is None:
            missing(f"the Python package {module!r}", INSTALL_HINT)
    from importlib.metadata import version

    if not version("django-oauth-toolkit").startswith("3."):
        missing(f"django-oauth-toolkit 3.x (found {version('django-oauth-toolkit')})",
                INSTALL_HINT)



@dataclass
class DOT:
    """A running DOT server. Safe to use from several threads (each call is one request).

    Attributes:
        issuer: "http://127.0.0.1:PORT/o" (DOT is mounted under /o/), no trailing slash.
        origin: "http://127.0.0.1:PORT".
        localhost_port: the port of the registered http://localhost:<port>/callback.
        timings: seconds each start-up step took in the server (bind_and_key,
            django_setup, schema, seed, total); `start_seconds` is the whole start as the
            test process saw it (spawn to ready line).
    """

    issuer: str
    origin: str
    process: subprocess.Popen[bytes]
    client_id: str = ""
    confidential_client_id: str = ""
    confidential_client_secret: str = ""
    service_client_id: str = ""
    service_client_secret: str = ""
    device_client_id: str = ""
    hs256_client_id: str = ""
    hs256_client_secret: str = ""
    localhost_port: int = 0
    users: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    start_seconds: float = 0.0
    _stderr: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=300))
    _readers: list[threading.Thread] = field(default_factory=list)

    def __repr__(self) -> str:  # the client secrets stay out of assertion messages
        return f"DOT(issuer={self.issuer!r}, pid={self.process.pid})"

    @property
    def stderr_tail(self) -> str:
        """The last lines the server wrote to stderr (request lines, warnings, crashes)."""
        return "".join(self._stderr)

    # -- endpoints (fixed by tests/dot/urls.py; no discovery round trip needed) -----------------

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def oauth_metadata_url(self) -> str:
        """RFC 8414 metadata, in the form DOT serves under its mount (issuer + name)."""
        return f"{self.issuer}/.well-known/oauth-authorization-server"

    @property
    def authorization_endpoint(self) -> str:
        return f"{self.issuer}/authorize/"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token/"

    @property
    def revocation_endpoint(self) -> str:
        return f"{self.issuer}/revoke_token/"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.issuer}/introspect/"

    @property
    def device_authorization_endpoint(self) -> str:
        return f"{self.issuer}/device-authorization/"

    @property
    def userinfo_endpoint(self) -> str:
        return f"{self.issuer}/userinfo/"

    def redirect_uri(self, host: str = "127.0.0.1", port: int | None = None) -> str:
        """A registered redirect URI: any port on 127.0.0.1, `localhost_port` on localhost."""
        if host == "localhost":
            port = self.localhost_port
        return f"http://{host}:{port or free_port()}/callback"

    # -- admin -------------------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: object = None) -> Any:
        response = httpx.request(method, f"{self.origin}/__bench/{path}",
                                 content=json.dumps(body or {}) if method == "POST" else None,
                                 timeout=10)
        if response.status_code != 200:
            raise DOTError(f"{method} /__bench/{path}: {response.status_code}"
                           f" {response.text[:500]}\n{self.stderr_tail[-2000:]}")
        return response.json()

    def counts(self) -> dict[str, Any]:
        """Requests answered since the last reset: {"token": {grant_type: {outcome: n}},
        "authorization" | "revocation" | "introspection" | "device_authorization" |
        "discovery" | "oauth_metadata" (issuer + /.well-known/oauth-authorization-server) |
        "oauth_metadata_inserted" (RFC 8414 section 3.1's form, with root_metadata) |
        "jwks" | "userinfo": {outcome: n},
        "faults": {path: n}, "client_auth": {"<endpoint>:<method>": n}}. The outcome is
        "ok" (HTTP 200), the OAuth error code ("invalid_grant"...), "http_<status>" (e.g.
        the login redirect) or "fault". The method is how the client authenticated:
        "client_secret_basic", "client_secret_post" or "none"."""
        result: dict[str, Any] = self._admin("GET", "counts")
        return result

    def token_requests(self, grant: str = "refresh_token", outcome: str | None = "ok") -> int:
        """Token endpoint requests with this grant type and outcome (None: any outcome)."""
        by_outcome = self.counts().get("token", {}).get(grant, {})
        if outcome is None:
            return int(sum(by_outcome.values()))
        return int(by_outcome.get(outcome, 0))

    def requests(self, endpoint: str, outcome: str | None = None) -> int:
        """Requests to a non-token endpoint ("revocation", "discovery"...), by outcome."""
        by_outcome = self.counts().get(endpoint, {})
        if outcome is None:
            return int(sum(by_outcome.values()))
        return int(by_outcome.get(outcome, 0))

    def client_auth(self) -> dict[str, int]:
        """{"<endpoint>:<method>": n}: how clients authenticated, e.g. "token:none"."""
        return dict(self.counts().get("client_auth", {}))

    def reset_counts(self) -> None:
        self._admin("POST", "reset")

    def reset(self) -> None:
        """Counts, faults and run-time settings back to how they were at start."""
        self._admin("POST", "reset", {"all": True})

    def inject_fault(self, path: str, *, count: int = 1, status: int = 500,
                     body: str | dict[str, Any] | None = None, grant_type: str | None = None,
                     delay_ms: int | None = None) -> None:
        """Answer the next `count` requests to `path` (e.g. "/o/token/"; with `grant_type`,
        only token requests of that grant) with `status` and `body` instead of DOT."""
        fault: dict[str, Any] = {"path": path, "count": count, "status": status}
        for key, value in (("body", body), ("grant_type", grant_type), ("delay_ms", delay_ms)):
            if value is not None:
                fault[key] = value
        self._admin("POST", "fault", fault)

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change run-time settings (see tests/dot/settings.py: oidc, offline_access,
        auth_methods, access_token_ttl, id_token_ttl, refresh_token_ttl,
        rotate_refresh_token, device_interval, device_complete); `reset()` restores them."""
        result: dict[str, Any] = self._admin("POST", "config", changes)["settings"]
        return result

    def revoke_all(self) -> int:
        """Revoke every refresh token and delete every access token issued so far."""
        return int(self._admin("POST", "revoke-all")["revoked"])

    def metadata(self, which: str = "openid") -> dict[str, Any]:
        """The OpenID discovery document ("openid") or the RFC 8414 one ("oauth")."""
        url = self.discovery_url if which == "openid" else self.oauth_metadata_url
        response = httpx.get(url, timeout=10)
        response.raise_for_status()
        doc: dict[str, Any] = response.json()
        return doc

    # -- the bench's own token checks ----------------------------------------------------------

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 introspection, as the confidential client (DOT allows any client).

        It authenticates with client_secret_basic, or with _post where a test has made
        the server take only that (`configure(auth_methods=...)`).
        """
        response = httpx.post(self.introspection_endpoint, data={"token": token},
                              auth=(self.confidential_client_id, self.confidential_client_secret),
                              timeout=10)
        if response.status_code == 401:
            response = httpx.post(self.introspection_endpoint, timeout=10, data={
                "token": token, "client_id": self.confidential_client_id,
                "client_secret": self.confidential_client_secret})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def active(self, token: str) -> bool:
        return bool(self.introspect(token).get("active"))

    def refresh(self, refresh_token: str, *, client_id: str | None = None,
                client_secret: str | None = None) -> httpx.Response:
        """A refresh_token grant request by the bench (check the status yourself)."""
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        auth = None
        if client_secret:
            auth = (client_id or self.confidential_client_id, client_secret)
        else:
            data["client_id"] = client_id or self.client_id
        response = httpx.post(self.token_endpoint, data=data, auth=auth, timeout=10)
        with contextlib.suppress(ValueError):
            LEDGER.secrets_in(response.json(), ("access_token", "refresh_token"),
                              "DOT bench refresh")
        return response

    # -- life cycle -----------------------------------------------------------------------------

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Close its stdin (it exits by itself), then terminate, then kill. Idempotent."""
        stop_child(self.process, self._readers, timeout)

    def __enter__(self) -> DOT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _drain(stream: Any, sink: collections.deque[str]) -> None:
    with contextlib.suppress(OSError, ValueError):
        for line in iter(stream.readline, b""):
            sink.append(line.decode("utf-8", "replace"))


def start_dot(directory: str | os.PathLike[str], *, timeout: float = READY_TIMEOUT,
              **settings: Any) -> DOT:
    """Spawn the DOT server with these settings (see tests/dot/serve.py) and wait for it.

    `directory` holds its SQLite database. A `localhost_port` is chosen if not given.
    Raises DOTError (with the server's output) if it is not ready within `timeout` seconds.
    """
    require_dot()
    settings = {"localhost_port": free_port(), **settings, "directory": str(directory)}
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    begun = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.dot.serve", json.dumps(settings)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=ROOT, env=env,
    )
    stderr: collections.deque[str] = collections.deque(maxlen=300)
    readers = [threading.Thread(target=_drain, args=(process.stderr, stderr), daemon=True)]
    ready: dict[str, Any] = {}
    ready_event = threading.Event()
    stdout_lines: collections.deque[str] = collections.deque(maxlen=50)

    def read_ready() -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            if not ready and line.startswith("{"):
                with contextlib.suppress(ValueError):
                    message = json.loads(line)
                    if message.get("ready"):
                        ready.update(message)
                        ready_event.set()
                        continue
            stdout_lines.append(line)
        ready_event.set()

    readers.append(threading.Thread(target=read_ready, daemon=True))
    for reader in readers:
        reader.start()
    ready_event.wait(timeout)
    if not ready:
        DOT("", "", process, _readers=readers).stop(timeout=2)
        raise DOTError(
            f"the DOT server did not start within {timeout} s (exit code"
            f" {process.returncode}).\nstdout:\n{''.join(stdout_lines)}"
            f"\nstderr:\n{''.join(stderr)}"
        )
    # The session's secret-hygiene check looks for the client secrets in every text too.
    LEDGER.secret(ready["confidential_client_secret"], "DOT confidential client secret")
    LEDGER.secret(ready["service_client_secret"], "DOT service client secret")
    LEDGER.secret(ready["hs256_client_secret"], "DOT HS256 client secret")
    return DOT(
        issuer=ready["issuer"], origin=ready["origin"], process=process,
        client_id=ready["client_id"],
        confidential_client_id=ready["confidential_client_id"],
        confidential_client_secret=ready["confidential_client_secret"],
        service_client_id=ready["service_client_id"],
        service_client_secret=ready["service_client_secret"],
        device_client_id=ready["device_client_id"],
        hs256_client_id=ready["hs256_client_id"],
        hs256_client_secret=ready["hs256_client_secret"],
        localhost_port=int(ready["localhost_port"]),
        users=dict(ready["users"]), settings=settings, timings=dict(ready["timings"]),
        versions=dict(ready["versions"]), start_seconds=round(time.monotonic() - begun, 3),
        _stderr=stderr, _readers=readers,
    )


# -- the user, played at HTTP level through DOT's pages --------------------------------------------


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc


def _fields(form: Any) -> dict[str, str]:
    return dict(form.fields)


def _password(username: str, password: str | None) -> str:
    return password if password is not None else f"{username}-password"


def dot_browser_login(
    authorization_url: str,
    *,
    username: str = "alice",
    password: str | None = None,
    consent: bool = True,
    follow_callback: bool = True,
    timeout: float = 10.0,
) -> str:
    """Play the user through Django's login page and DOT's consent page; return the callback.

    Follows the redirects with the server's cookies (from a loopback start page too),
    posts the login form (with its CSRF token and `next`), then the consent form
    ("Authorize", or "Cancel" when `consent` is False), and stops at the first redirect
    that leaves the server: the loopback redirect URI with code and state (or error).
    GETs it (the library's callback server answers) unless `follow_callback` is False.
    The password is `<username>-password` unless given.
    Raises BrowserFlowError, with the page's text, when a page is not what it should be.
    """
    # The server is the origin of the first page shown: the URL may be the library's
    # one-time loopback start page, which redirects to the server at once.
    server: tuple[str, str] | None = None
    with httpx.Client(follow_redirects=False, timeout=timeout) as client:
        response = client.get(authorization_url)
        for _ in range(MAX_STEPS):
            url = str(response.url)
            if response.is_redirect:
                target = urllib.parse.urljoin(url, response.headers["location"])
                leaves = (_origin(target) != server if server is not None
                          else urllib.parse.urlsplit(target).path.endswith("/callback"))
                if leaves:
                    if follow_callback:
                        client.get(target)
                    return target
                response = client.get(target)
                continue
            server = server or _origin(url)
            page = parse_page(response.text)
            if response.status_code != 200:
                raise BrowserFlowError(
                    f"DOT answered {response.status_code} at {url}: {page.summary()}")
            login_form = page.form(lambda f: "password" in _fields(f))
            consent_form = page.form(lambda f: f.id == "authorizationForm")
            if login_form is not None:
                if "didn't match" in page.summary() and response.request.method == "POST":
                    raise BrowserFlowError(f"DOT refused the login of {username!r}")
                response = submit_form(client, url, login_form, {
                    "username": username, "password": _password(username, password)})
            elif consent_form is not None:
                response = submit_form(client, url, consent_form,
                                       {"allow": "Authorize"} if consent else {})
            else:
                raise BrowserFlowError(f"unexpected DOT page at {url}: {page.summary()}")
        raise BrowserFlowError(f"no redirect to the callback after {MAX_STEPS} steps")


def dot_browser_deny(authorization_url: str, **kwargs: Any) -> str:
    """`dot_browser_login` that clicks "Cancel" at consent: the callback has an error."""
    return dot_browser_login(authorization_url, consent=False, **kwargs)


def dot_device_approve(
    verification_uri: str,
    user_code: str | None = None,
    *,
    username: str = "alice",
    password: str | None = None,
    deny: bool = False,
    timeout: float = 10.0,
) -> str:
    """Approve (or deny) a device grant as the user on DOT's pages; returns the last page.

    Opens `verification_uri` (a complete one carries the user code; else `user_code`),
    logs in, submits the code, then "Accept" (or "Deny"). A client polling the token
    endpoint then gets its tokens (or access_denied).
    """
    if user_code is None:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(verification_uri).query))
        user_code = query.get("user_code")
        if not user_code:
            raise BrowserFlowError("no user_code given and none in the verification URI")
    with httpx.Client(follow_redirects=False, timeout=timeout) as client:
        response = client.get(verification_uri)
        for _ in range(MAX_STEPS):
            url = str(response.url)
            if response.is_redirect:
                response = client.get(urllib.parse.urljoin(url, response.headers["location"]))
                continue
            page = parse_page(response.text)
            text = page.summary()
            if response.status_code != 200:
                raise BrowserFlowError(f"DOT answered {response.status_code} at {url}: {text}")
            login_form = page.form(lambda f: "password" in _fields(f))
            code_form = page.form(lambda f: "user_code" in _fields(f))
            confirm_form = page.form(lambda f: any(b[0] == "action" for b in f.buttons))
            if login_form is not None:
                response = submit_form(client, url, login_form, {
                    "username": username, "password": _password(username, password)})
            elif code_form is not None:
                if response.request.method == "POST":
                    raise BrowserFlowError(f"DOT refused the user code: {text}")
                response = submit_form(client, url, code_form, {"user_code": user_code})
            elif confirm_form is not None:
                response = submit_form(client, url, confirm_form,
                                       {"action": "deny" if deny else "accept"})
            elif "Device" in text:
                return text
            else:
                raise BrowserFlowError(f"unexpected DOT device page at {url}: {text}")
        raise BrowserFlowError(f"the device flow did not finish after {MAX_STEPS} steps")


def bench_login(
    dot: DOT,
    *,
    scopes: Sequence[str] = ("openid", "offline_access"),
    username: str = "alice",
    client_id: str | None = None,
    client_secret: str | None = None,
) -> dict[str, Any]:
    """A whole code flow (PKCE S256) by the bench's own client; returns the token response.

    Independent of the library under test: it seeds sessions for the tests that start
    from a stored refresh token. Never GETs the callback (nothing listens there).
    """
    verifier, challenge = make_pkce()
    state = secrets.token_urlsafe(16)
    redirect_uri = dot.redirect_uri()
    client_id = client_id or dot.client_id
    query = urllib.parse.urlencode({
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
        "scope": " ".join(scopes), "state": state, "code_challenge": challenge,
        "code_challenge_method": "S256",
    })
    callback = dot_browser_login(f"{dot.authorization_endpoint}?{query}", username=username,
                                 follow_callback=False)
    answer = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
    assert answer.get("state") == state, "state mismatch in the callback"
    assert "code" in answer, f"no code in the callback: {answer}"
    data = {"grant_type": "authorization_code", "code": answer["code"],
            "redirect_uri": redirect_uri, "code_verifier": verifier}
    auth = (client_id, client_secret) if client_secret else None
    if not client_secret:
        data["client_id"] = client_id
    response = httpx.post(dot.token_endpoint, data=data, auth=auth, timeout=10)
    assert response.status_code == 200, f"code exchange failed: {response.text}"
    tokens: dict[str, Any] = response.json()
    LEDGER.secrets_in(tokens, ("access_token", "refresh_token", "id_token"), "DOT bench login")
    return tokens


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dot_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DOT]:
    """The one DOT server of the session (default settings). Prefer `dot`."""
    server = start_dot(tmp_path_factory.mktemp("dot"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dot(dot_session: DOT) -> DOT:
    """The session's DOT server, reset (counts, faults, run-time settings) for this test."""
    if not dot_session.alive():
        pytest.fail(f"the shared DOT server died:\n{dot_session.stderr_tail}")
    dot_session.reset()
    return dot_session


@pytest.fixture
def dot_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., DOT]]:
    """`dot_factory(**settings) -> DOT`: servers with their own settings, stopped after."""
    started: list[DOT] = []

    def factory(**settings: Any) -> DOT:
        server = start_dot(tmp_path_factory.mktemp("dot"), **settings)
        started.append(server)
        return server

    try:
        yield factory
    finally:
        for server in started:
            server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use a DOT server get the `dot` marker (so `-m "not dot"` deselects them)."""
    for item in items:
        if {"dot", "dot_session", "dot_factory"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.dot)
