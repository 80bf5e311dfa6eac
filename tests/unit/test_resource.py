"""RFC 9728 discovery and RFC 7591 registration: the pure rules, and the driver on a fake."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from oauth_auth import ConfigError, OAuthError, TransportError, derive_secret_key
from oauth_auth._config import RESOURCES, Config
from oauth_auth._http import IdPHttp
from oauth_auth._resource import (
    canonical_resource,
    check_metadata_url,
    metadata_from_challenges,
    parse_protected_resource,
    parse_registration,
    protected_resource_urls,
    registration_request,
)
from oauth_auth.resource import discover_resource, resource_auth

RS = "https://mcp.example.com/mcp"
AS = "https://auth.example.com"


# ------------------------------------------------------------------ pure rules


@pytest.mark.parametrize(("given", "canonical"), [
    ("https://MCP.Example.com/mcp", "https://mcp.example.com/mcp"),
    ("https://mcp.example.com:443/mcp/", "https://mcp.example.com/mcp"),
    ("https://mcp.example.com/", "https://mcp.example.com"),
    ("https://mcp.example.com", "https://mcp.example.com"),
    ("https://mcp.example.com:8443/a/b#frag", "https://mcp.example.com:8443/a/b"),
    ("http://127.0.0.1:9000/mcp", "http://127.0.0.1:9000/mcp"),
    ("http://[::1]:9000/mcp", "http://[::1]:9000/mcp"),
    ("HTTPS://mcp.example.com/Case/Kept", "https://mcp.example.com/Case/Kept"),
])
def test_canonical_resource(given: str, canonical: str) -> None:
    assert canonical_resource(given) == canonical


@pytest.mark.parametrize("bad", [
    "mcp.example.com/mcp", "ftp://mcp.example.com", "http://mcp.example.com/mcp",
    "https://user:pw@mcp.example.com/mcp", "https://[x", "https://h:99999/",
])
def test_canonical_resource_refuses(bad: str) -> None:
    with pytest.raises(ConfigError):
        canonical_resource(bad)


def test_metadata_urls_insert_the_path_then_try_the_root() -> None:
    assert protected_resource_urls("https://mcp.example.com/v1/mcp/") == [
        "https://mcp.example.com/.well-known/oauth-protected-resource/v1/mcp",
        "https://mcp.example.com/.well-known/oauth-protected-resource",
    ]
    assert protected_resource_urls("https://mcp.example.com") == [
        "https://mcp.example.com/.well-known/oauth-protected-resource"]


def test_resource_metadata_is_read_from_the_bearer_challenge() -> None:
    headers = ['Basic realm="x", Bearer error="invalid_token", '
               'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-'
               'resource/mcp"']
    assert metadata_from_challenges(headers) == (
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
    assert metadata_from_challenges(['Bearer realm="x"']) is None
    assert metadata_from_challenges([]) is None


def test_metadata_named_on_another_origin_is_refused() -> None:
    assert check_metadata_url(f"{RS}/x", RS) == f"{RS}/x"
    with pytest.raises(ConfigError, match="another origin"):
        check_metadata_url("https://evil.example.com/.well-known/oauth-protected-resource", RS)
    with pytest.raises(ConfigError, match="another origin"):
        check_metadata_url("http://mcp.example.com/.well-known/oauth-protected-resource", RS)


def test_protected_resource_metadata_must_name_this_resource() -> None:
    found = parse_protected_resource(
        {"resource": "https://MCP.example.com/mcp/", "authorization_servers": [AS],
         "scopes_supported": ["tools"]}, RS)
    assert (found.resource, found.authorization_servers, found.scopes_supported) == (
        RS, (AS,), ("tools",))
    with pytest.raises(ConfigError, match=re.escape("not 'https://mcp.example.com/mcp'")):
        parse_protected_resource({"resource": "https://other.example.com/mcp",
                                  "authorization_servers": [AS]}, RS)
    with pytest.raises(ConfigError, match="no authorization server"):
        parse_protected_resource({"resource": RS}, RS)
    with pytest.raises(ConfigError, match="not a list of strings"):
        parse_protected_resource({"resource": RS, "authorization_servers": AS}, RS)
    with pytest.raises(ConfigError, match="no 'resource'"):
        parse_protected_resource({"authorization_servers": [AS]}, RS)


def test_registration_asks_for_a_public_native_client() -> None:
    doc = registration_request(["http://localhost:8666/callback"], ["a", "b"],
                               ["authorization_code", "refresh_token"])
    assert doc == {
        "client_name": "oauth-auth", "redirect_uris": ["http://localhost:8666/callback"],
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
        "token_endpoint_auth_method": "none", "application_type": "native", "scope": "a b",
    }
    assert parse_registration({"client_id": "c1", "token_endpoint_auth_method": "none"}) == "c1"
    with pytest.raises(ConfigError, match="confidential"):
        parse_registration({"client_id": "c1", "client_secret": "s",
                            "token_endpoint_auth_method": "client_secret_basic"})
    with pytest.raises(ConfigError, match="no client_id"):
        parse_registration({})


# ------------------------------------------------------------------ the driver, on a fake


class FakeResource:
    """A resource server and its authorization server on httpx.MockTransport."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.registrations: list[dict[str, Any]] = []
        self.challenge = True  # the 401 names resource_metadata
        self.path_inserted = True  # metadata at the path-inserted location
        self.resource = RS
        self.s256 = True

    def handler(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.calls.append(f"{request.method} {url}")
        prm = {"resource": self.resource, "authorization_servers": [AS],
               "scopes_supported": ["tools"]}
        if url == RS:
            header = ('Bearer error="invalid_token", resource_metadata='
                      '"https://mcp.example.com/.well-known/oauth-protected-resource/mcp"'
                      ', scope="tools extra"') if self.challenge else "Bearer"
            return httpx.Response(401, headers={"WWW-Authenticate": header})
        if url == "https://mcp.example.com/.well-known/oauth-protected-resource/mcp":
            return httpx.Response(200, json=prm) if self.path_inserted else httpx.Response(404)
        if url == "https://mcp.example.com/.well-known/oauth-protected-resource":
            return httpx.Response(200, json=prm)
        if url == f"{AS}/.well-known/openid-configuration":
            return httpx.Response(200, json={
                "issuer": AS, "authorization_endpoint": f"{AS}/authorize",
                "token_endpoint": f"{AS}/token", "registration_endpoint": f"{AS}/register",
                "jwks_uri": f"{AS}/jwks",
                "code_challenge_methods_supported": ["S256"] if self.s256 else ["plain"]})
        if url == f"{AS}/register":
            body = json.loads(request.content)
            self.registrations.append(body)
            return httpx.Response(201, json={"client_id": f"dyn-{len(self.registrations)}",
                                             "token_endpoint_auth_method": "none", **body})
        return httpx.Response(404)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


@pytest.fixture
def fake() -> FakeResource:
    return FakeResource()


@pytest.fixture
def http(fake: FakeResource) -> IdPHttp:
    return IdPHttp(transport=fake.transport(), max_retries=0)


def test_the_401_names_the_metadata(fake: FakeResource, http: IdPHttp) -> None:
    found, scope = discover_resource(RS, http)
    assert found.metadata_url.endswith("/.well-known/oauth-protected-resource/mcp")
    assert scope == "tools extra"
    assert fake.calls == [f"GET {RS}", f"GET {found.metadata_url}"]


def test_without_a_challenge_the_well_known_locations_are_tried_in_order(
    fake: FakeResource, http: IdPHttp
) -> None:
    fake.challenge, fake.path_inserted = False, False
    found, scope = discover_resource(RS, http)
    assert scope == ""
    assert found.metadata_url == "https://mcp.example.com/.well-known/oauth-protected-resource"
    assert fake.calls == [
        f"GET {RS}",
        "GET https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        "GET https://mcp.example.com/.well-known/oauth-protected-resource",
    ]


def test_metadata_for_another_resource_is_an_error_not_a_miss(
    fake: FakeResource, http: IdPHttp
) -> None:
    fake.resource = "https://mcp.example.com/other"
    with pytest.raises(ConfigError, match=re.escape("is for 'https://mcp.example.com/other'")):
        discover_resource(RS, http)


def test_no_metadata_anywhere_says_what_was_tried() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404)

    http = IdPHttp(transport=httpx.MockTransport(handler), max_retries=0)
    with pytest.raises(ConfigError, match="publishes no protected-resource metadata") as info:
        discover_resource(RS, http)
    assert "oauth-protected-resource/mcp (HTTP 404)" in str(info.value)
    assert "--issuer" in (info.value.hint or "")


def test_an_unreachable_resource_is_a_transport_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    http = IdPHttp(transport=httpx.MockTransport(handler), max_retries=0)
    with pytest.raises(TransportError):
        discover_resource(RS, http)


Auth = Callable[..., Any]


def _auth(fake: FakeResource, cfg: Path, **kwargs: Any) -> Any:
    from oauth_auth import MemorySecrets

    return resource_auth(RS, config_path=str(cfg), transport=fake.transport(),
                         secrets_provider=MemorySecrets(), interactive=False, **kwargs)


def test_registers_once_and_keeps_the_registration(fake: FakeResource, tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    first = _auth(fake, cfg)
    assert first.source.oidc.client_id == "dyn-1"
    assert first.source.oidc.issuer == AS
    assert first.source.oidc.audience == RS  # RFC 8707 resource on every request
    assert {"tools", "extra"} <= set(first.source.oidc.scopes)  # the scopes the 401 named
    assert fake.registrations == [{
        "client_name": "oauth-auth", "redirect_uris": ["http://localhost:8666/callback"],
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
        "token_endpoint_auth_method": "none", "application_type": "native",
        "scope": "tools extra",
    }]
    entry = Config(cfg).entry(RESOURCES, RS)
    assert entry is not None
    assert (entry["client_id"], entry["issuer"], entry["registered"]) == ("dyn-1", AS, True)
    calls = len(fake.calls)
    second = _auth(fake, cfg)
    assert second.source.oidc.client_id == "dyn-1"
    assert len(fake.calls) == calls  # no network at all: the config file knew it
    assert len(fake.registrations) == 1


def test_another_callback_port_registers_anew(fake: FakeResource, tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    _auth(fake, cfg)
    moved = _auth(fake, cfg, callback_port=9123)
    assert moved.source.oidc.client_id == "dyn-2"
    assert fake.registrations[1]["redirect_uris"] == ["http://localhost:9123/callback"]


def test_a_given_client_id_needs_no_registration(fake: FakeResource, tmp_path: Path) -> None:
    auth = _auth(fake, tmp_path / "config.json", client_id="by-hand", scopes=["tools"])
    assert auth.source.oidc.client_id == "by-hand"
    assert fake.registrations == []
    entry = Config(tmp_path / "config.json").entry(RESOURCES, RS)
    assert entry is not None
    assert entry["registered"] is False


def test_a_server_without_s256_is_refused(fake: FakeResource, tmp_path: Path) -> None:
    fake.s256 = False
    with pytest.raises(ConfigError, match="S256"):
        _auth(fake, tmp_path / "config.json")
    assert fake.registrations == []


def test_a_refused_registration_is_a_typed_error(tmp_path: Path, fake: FakeResource) -> None:
    inner = fake.handler

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/register":
            return httpx.Response(400, json={"error": "invalid_redirect_uri",
                                             "error_description": "not allowed"})
        return inner(request)

    from oauth_auth import MemorySecrets

    with pytest.raises(OAuthError) as info:
        resource_auth(RS, config_path=str(tmp_path / "c.json"),
                      transport=httpx.MockTransport(handler), secrets_provider=MemorySecrets(),
                      interactive=False)
    assert info.value.error == "invalid_redirect_uri"
    assert Config(tmp_path / "c.json").entry(RESOURCES, RS) is None  # nothing half-kept


# ------------------------------------------------------------------ a forgotten registration


class ForgetfulServer(FakeResource):
    """The fake resource with an OAuth-only authorization server that can forget its
    clients (`forget()`: a restart of a server that keeps them in memory).

    `/authorize` answers 400 to a client it does not know (no redirect: it cannot trust
    the redirect URI, as the MCP SDK does), `/token` answers 401 `invalid_client`.
    `browser` is the user's tab in paste mode: it reads the authorization URL the login
    printed and returns the redirect the server sends it to.
    """

    def __init__(self) -> None:
        super().__init__()
        self.clients: set[str] = set()
        self.codes: dict[str, str] = {}  # code -> client
        self.refresh: dict[str, str] = {}  # refresh token -> client
        self.keep_registrations = True  # False: every registration is forgotten at once
        self.strict_authorize = True  # False: /authorize issues codes to anyone
        self.logins = 0
        self.refreshes = 0
        self.printed = io.StringIO()

    def forget(self) -> None:
        self.clients.clear()
        self.codes.clear()
        self.refresh.clear()

    def handler(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if str(url) == f"{AS}/.well-known/openid-configuration":
            return httpx.Response(200, json={
                "issuer": AS, "authorization_endpoint": f"{AS}/authorize",
                "token_endpoint": f"{AS}/token", "registration_endpoint": f"{AS}/register",
                "code_challenge_methods_supported": ["S256"]})
        if url.path == "/register":
            answer = super().handler(request)
            if self.keep_registrations:
                self.clients.add(answer.json()["client_id"])
            return answer
        if url.path == "/authorize":
            self.calls.append(f"GET {AS}/authorize")
            client = url.params["client_id"]
            if self.strict_authorize and client not in self.clients:
                return httpx.Response(400, json={
                    "error": "invalid_request",
                    "error_description": f"Client ID '{client}' not found"})
            return httpx.Response(200, text="<form>log in</form>")
        if url.path == "/token":
            return self.token(dict(httpx.QueryParams(request.content.decode())))
        return super().handler(request)

    def token(self, form: dict[str, str]) -> httpx.Response:
        client = form.get("client_id", "")
        if client not in self.clients:
            return httpx.Response(401, json={"error": "invalid_client",
                                             "error_description": "unknown client"})
        grant = form["grant_type"]
        if grant == "authorization_code":
            if self.codes.pop(form["code"], None) != client:
                return httpx.Response(400, json={"error": "invalid_grant"})
            self.logins += 1
        elif self.refresh.pop(form["refresh_token"], None) != client:
            return httpx.Response(400, json={"error": "invalid_grant"})
        else:
            self.refreshes += 1
        rt = f"rt-{client}-{self.logins}-{self.refreshes}"
        self.refresh[rt] = client
        return httpx.Response(200, json={"access_token": f"at-{rt}", "token_type": "Bearer",
                                         "expires_in": 3600, "refresh_token": rt})

    def browser(self, redirect_uri: str) -> str:
        url = httpx.URL(self.printed.getvalue().split("open this URL in a browser:")[-1]
                        .split()[0])
        client, state = url.params["client_id"], url.params["state"]
        if client not in self.clients and self.strict_authorize:
            return f"{redirect_uri}?error=invalid_client&state={state}"
        code = f"code-{len(self.codes)}-{client}"
        self.codes[code] = client
        return f"{redirect_uri}?code={code}&state={state}"


@pytest.fixture
def forgetful() -> ForgetfulServer:
    return ForgetfulServer()


def _interactive(server: ForgetfulServer, cfg: Path, secrets: Any, **kwargs: Any) -> Any:
    return resource_auth(RS, config_path=str(cfg), transport=server.transport(),
                         secrets_provider=secrets, interactive=True,
                         read_redirect=server.browser, stderr=server.printed, **kwargs)


def test_a_forgotten_registration_is_replaced_once_and_the_login_retried(
    forgetful: ForgetfulServer, tmp_path: Path
) -> None:
    from oauth_auth import MemorySecrets

    cfg = tmp_path / "config.json"
    assert _auth(forgetful, cfg).source.oidc.client_id == "dyn-1"  # kept from an earlier run
    forgetful.forget()  # the server restarted
    auth = _interactive(forgetful, cfg, MemorySecrets())
    assert auth.source.token() == "at-rt-dyn-2-1-0"
    assert len(forgetful.registrations) == 2  # exactly one more
    assert forgetful.logins == 1
    # The kept registration's preflight was refused, the new client's taken.
    assert forgetful.calls.count(f"GET {AS}/authorize") == 2
    entry = Config(cfg).entry(RESOURCES, RS)
    assert entry is not None
    assert (entry["client_id"], entry["registered"]) == ("dyn-2", True)
    assert auth.source.oidc.client_id == "dyn-2"
    # A later process starts from the new registration: no registration, no login.
    again = _auth(forgetful, cfg)
    assert again.source.oidc.client_id == "dyn-2"
    assert len(forgetful.registrations) == 2


def test_an_unknown_client_at_the_token_endpoint_is_replaced_too(
    forgetful: ForgetfulServer, tmp_path: Path
) -> None:
    """Without the preflight, a server that lets anyone reach its login page and refuses
    the code of a client it does not know (`invalid_client` at the token endpoint)."""
    from oauth_auth import MemorySecrets

    cfg = tmp_path / "config.json"
    _auth(forgetful, cfg)
    forgetful.forget()
    forgetful.strict_authorize = False
    auth = _interactive(forgetful, cfg, MemorySecrets(), preflight=False)
    assert auth.source.token() == "at-rt-dyn-2-1-0"
    assert len(forgetful.registrations) == 2
    assert Config(cfg).entry(RESOURCES, RS)["client_id"] == "dyn-2"  # type: ignore[index]


def test_an_error_redirect_for_the_unknown_client_is_replaced_too(
    forgetful: ForgetfulServer, tmp_path: Path
) -> None:
    from oauth_auth import MemorySecrets

    cfg = tmp_path / "config.json"
    _auth(forgetful, cfg)
    forgetful.forget()
    auth = _interactive(forgetful, cfg, MemorySecrets(), preflight=False)
    assert auth.source.token() == "at-rt-dyn-2-1-0"
    assert len(forgetful.registrations) == 2


def test_a_new_client_refused_too_is_a_final_typed_error(
    forgetful: ForgetfulServer, tmp_path: Path
) -> None:
    from oauth_auth import LoginError, MemorySecrets

    cfg = tmp_path / "config.json"
    _auth(forgetful, cfg)
    forgetful.forget()
    forgetful.keep_registrations = False  # it forgets every registration at once
    auth = _interactive(forgetful, cfg, MemorySecrets())
    with pytest.raises(LoginError, match="refused the client registered for") as info:
        auth.source.token()
    assert "--client-id" in info.value.hint
    assert len(forgetful.registrations) == 2  # one renewal, no loop
    with pytest.raises(LoginError):  # a later login renews once more, and stops again
        auth.source.token()
    assert len(forgetful.registrations) == 3


def test_a_client_id_the_user_gave_is_never_registered_anew(
    forgetful: ForgetfulServer, tmp_path: Path
) -> None:
    from oauth_auth import LoginError, MemorySecrets

    cfg = tmp_path / "config.json"
    auth = _interactive(forgetful, cfg, MemorySecrets(), client_id="by-hand",
                        scopes=["tools"], preflight=True)
    with pytest.raises(LoginError, match="before any browser opened"):
        auth.source.token()
    forgetful.strict_authorize = False
    with pytest.raises(LoginError, match="invalid_client"):  # the token endpoint's, as is
        auth.source.token()
    assert forgetful.registrations == []
    # Kept as the user's (not registered): a later run without client_id= uses it, and
    # never replaces it either.
    later = _interactive(forgetful, cfg, MemorySecrets())
    assert later.source.oidc.client_id == "by-hand"
    with pytest.raises(LoginError):
        later.source.token()
    assert forgetful.registrations == []
    assert Config(cfg).entry(RESOURCES, RS)["client_id"] == "by-hand"  # type: ignore[index]


#: The session's secrets entry (the refresh token; `_AT` beside it, the access token).
KEY = derive_secret_key("RESOURCE_OAUTH_", RS, AS)


def test_a_client_id_given_over_a_registration_is_never_replaced_later(
    forgetful: ForgetfulServer, tmp_path: Path
) -> None:
    """`oauth-auth login --resource URL --client-id X` over a kept registration saves X
    as the entry's client (`save_settings`); X is the user's from then on."""
    from oauth_auth import LoginError, MemorySecrets
    from oauth_auth.resource import resource_session

    cfg = tmp_path / "config.json"
    _auth(forgetful, cfg)
    resource_session(RS, client_id="by-hand", config_path=str(cfg),
                     transport=forgetful.transport(),
                     secrets_provider=MemorySecrets()).save_settings()
    entry = Config(cfg).entry(RESOURCES, RS)
    assert entry is not None
    assert entry["client_id"] == "by-hand"
    later = _interactive(forgetful, cfg, MemorySecrets(), preflight=True)
    assert later.source.oidc.client_id == "by-hand"
    with pytest.raises(LoginError, match="before any browser opened"):
        later.source.token()
    assert len(forgetful.registrations) == 1
    assert Config(cfg).entry(RESOURCES, RS)["client_id"] == "by-hand"  # type: ignore[index]


def _logged_in(server: ForgetfulServer, cfg: Path) -> Any:
    """A session logged in with a registration of an earlier run; its access token
    then expired (dropped from the store), so the next `token()` refreshes."""
    from oauth_auth import MemorySecrets

    secrets = MemorySecrets()
    _auth(server, cfg)  # registered by an earlier run
    assert _interactive(server, cfg, secrets).source.token() == "at-rt-dyn-1-1-0"
    secrets.delete_secret(KEY + "_AT")
    return secrets


def test_a_refresh_refused_for_the_unknown_client_says_to_log_in(
    forgetful: ForgetfulServer, tmp_path: Path
) -> None:
    from oauth_auth import LoginRequiredError

    cfg = tmp_path / "config.json"
    secrets = _logged_in(forgetful, cfg)
    forgetful.forget()
    quiet = resource_auth(RS, config_path=str(cfg), transport=forgetful.transport(),
                          secrets_provider=secrets, interactive=False)
    with pytest.raises(LoginRequiredError, match="no longer knows the client") as info:
        quiet.source.token()
    assert f"oauth-auth login --resource {RS}" in info.value.hint
    assert len(forgetful.registrations) == 1  # a process that cannot log in registers nothing
    assert secrets.get_secret(KEY) == "rt-dyn-1-1-0"  # kept: the next login replaces it


def test_a_refresh_refused_for_the_unknown_client_registers_at_the_next_login(
    forgetful: ForgetfulServer, tmp_path: Path
) -> None:
    cfg = tmp_path / "config.json"
    secrets = _logged_in(forgetful, cfg)
    forgetful.forget()
    loud = _interactive(forgetful, cfg, secrets)
    assert loud.source.token() == "at-rt-dyn-2-2-0"
    assert len(forgetful.registrations) == 2
    assert forgetful.logins == 2
    # Registered before the login (the refresh said the client is gone): no refused
    # preflight of the old client this time, only the new one's.
    assert forgetful.calls.count(f"GET {AS}/authorize") == 2


def test_a_refresh_takes_the_registration_another_process_kept_meanwhile(
    forgetful: ForgetfulServer, tmp_path: Path
) -> None:
    """Two processes; the server restarts; one logs in (registering anew), the other,
    started before, still holds the old client: its refresh takes the new one."""
    cfg = tmp_path / "config.json"
    secrets = _logged_in(forgetful, cfg)
    old = resource_auth(RS, config_path=str(cfg), transport=forgetful.transport(),
                        secrets_provider=secrets, interactive=False)
    forgetful.forget()
    _interactive(forgetful, cfg, secrets, fresh_login=True).source.token()
    assert len(forgetful.registrations) == 2
    assert old.source.oidc.client_id == "dyn-1"
    secrets.delete_secret(KEY + "_AT")
    assert old.source.token().startswith("at-rt-dyn-2-")
    assert old.source.oidc.client_id == "dyn-2"
    assert (len(forgetful.registrations), forgetful.refreshes) == (2, 1)
