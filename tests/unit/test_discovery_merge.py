"""Unit tests of metadata discovery: OIDC, RFC 8414 (path inserted, then appended), the
merge of the two, `endpoints`, and the Entra multi-tenant issuer rule (`_discovery`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from oauth_auth import ConfigError, TransportError
from oauth_auth._discovery import (
    clear_discovery_cache,
    discover,
    merge_documents,
    oauth_metadata_urls,
    parse_metadata,
    tenant_issuer_template,
)
from oauth_auth._http import IdPHttp


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_discovery_cache()
    yield
    clear_discovery_cache()


class Server:
    """Serves given documents by URL path and records every GET."""

    def __init__(self, docs: dict[str, Any]) -> None:
        self.docs = docs
        self.paths: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        doc = self.docs.get(request.url.path)
        if doc is None:
            return httpx.Response(404, text="not found")
        if isinstance(doc, int):
            return httpx.Response(doc)
        return httpx.Response(200, json=doc)

    def http(self) -> IdPHttp:
        return IdPHttp(transport=httpx.MockTransport(self.handler), max_retries=0)


def test_rfc8414_urls_insert_the_path_then_append_it() -> None:
    assert oauth_metadata_urls("https://as.test/o/") == [
        "https://as.test/.well-known/oauth-authorization-server/o",
        "https://as.test/o/.well-known/oauth-authorization-server",
    ]
    assert oauth_metadata_urls("https://as.test") == [
        "https://as.test/.well-known/oauth-authorization-server",
    ]


def test_oidc_discovery_alone_when_it_has_everything_asked_for() -> None:
    issuer = "https://idp.test"
    server = Server({"/.well-known/openid-configuration": {
        "issuer": issuer, "token_endpoint": f"{issuer}/token", "jwks_uri": f"{issuer}/jwks",
        "revocation_endpoint": f"{issuer}/revoke",
    }})
    meta = discover(issuer, server.http(), want=("revocation_endpoint",))
    assert meta.revocation_endpoint == f"{issuer}/revoke"
    assert meta.issues_id_tokens
    assert server.paths == ["/.well-known/openid-configuration"]


def test_members_missing_from_oidc_are_taken_from_rfc8414_only_when_wanted() -> None:
    # django-oauth-toolkit: mounted under /o/, revocation and device endpoints only in
    # its RFC 8414 document, which it serves with the name appended.
    issuer = "https://as.test/o"
    oidc = {"issuer": issuer, "token_endpoint": f"{issuer}/token/",
            "authorization_endpoint": f"{issuer}/authorize/", "jwks_uri": f"{issuer}/jwks/"}
    oauth = {**oidc, "revocation_endpoint": f"{issuer}/revoke_token/",
             "device_authorization_endpoint": f"{issuer}/device-authorization/",
             "token_endpoint": "https://elsewhere.test/token"}
    server = Server({"/o/.well-known/openid-configuration": oidc,
                     "/o/.well-known/oauth-authorization-server": oauth})
    http = server.http()

    plain = discover(issuer, http)  # a refresh: needs neither
    assert plain.revocation_endpoint == ""
    assert server.paths == ["/o/.well-known/openid-configuration"]

    meta = discover(issuer, http, want=("revocation_endpoint",))
    assert meta.revocation_endpoint == f"{issuer}/revoke_token/"
    assert meta.device_authorization_endpoint == f"{issuer}/device-authorization/"
    assert meta.token_endpoint == f"{issuer}/token/"  # the OIDC document's stands
    assert server.paths == [
        "/o/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server/o",
        "/o/.well-known/oauth-authorization-server",
    ]
    # cached from now on, whatever is wanted
    assert discover(issuer, http, want=("device_authorization_endpoint",)) is meta
    assert len(server.paths) == 3


def test_an_rfc8414_only_server_is_found_and_is_oauth_only() -> None:
    issuer = "https://mcp.test/tenant1"
    doc = {"issuer": issuer, "token_endpoint": "https://mcp.test/token",
           "authorization_endpoint": "https://mcp.test/authorize",
           "scopes_supported": ["read", "write"]}
    server = Server({"/.well-known/oauth-authorization-server/tenant1": doc})
    meta = discover(issuer, server.http())
    assert meta.token_endpoint == "https://mcp.test/token"
    assert not meta.issues_id_tokens
    assert server.paths == ["/tenant1/.well-known/openid-configuration",
                            "/.well-known/oauth-authorization-server/tenant1"]


def test_openid_missing_from_scopes_supported_means_oauth_only() -> None:
    meta = parse_metadata({"issuer": "https://i.test", "token_endpoint": "https://i.test/t",
                           "jwks_uri": "https://i.test/k", "scopes_supported": ["api"]},
                          "https://i.test")
    assert not meta.issues_id_tokens


def test_no_document_anywhere_is_the_oidc_attempts_error() -> None:
    server = Server({})
    with pytest.raises(TransportError, match="HTTP 404"):
        discover("https://none.test", server.http())
    assert len(server.paths) == 2


def test_an_outage_is_not_taken_for_an_absent_document() -> None:
    server = Server({"/.well-known/openid-configuration": 503})
    with pytest.raises(TransportError, match="503"):
        discover("https://down.test", server.http())
    assert server.paths == ["/.well-known/openid-configuration"]


def test_an_rfc8414_document_for_another_issuer_is_ignored() -> None:
    issuer = "https://as.test"
    server = Server({"/.well-known/oauth-authorization-server": {
        "issuer": "https://evil.test", "token_endpoint": "https://evil.test/token"}})
    with pytest.raises(TransportError, match="404"):
        discover(issuer, server.http())


def test_endpoints_override_and_make_discovery_unneeded() -> None:
    issuer = "https://github.test"
    server = Server({})
    endpoints = {"authorization_endpoint": f"{issuer}/login/oauth/authorize",
                 "token_endpoint": f"{issuer}/login/oauth/access_token"}
    meta = discover(issuer, server.http(), endpoints=endpoints, want=("revocation_endpoint",))
    assert meta.token_endpoint == endpoints["token_endpoint"]
    assert not meta.issues_id_tokens
    assert server.paths == []

    issuer2 = "https://idp2.test"
    server2 = Server({"/.well-known/openid-configuration": {
        "issuer": issuer2, "token_endpoint": f"{issuer2}/token"}})
    meta2 = discover(issuer2, server2.http(),
                     endpoints={"device_authorization_endpoint": f"{issuer2}/dev"})
    assert meta2.device_authorization_endpoint == f"{issuer2}/dev"
    assert meta2.token_endpoint == f"{issuer2}/token"


def test_endpoints_must_be_https_for_a_remote_issuer() -> None:
    with pytest.raises(ConfigError, match="not https"):
        discover("https://gh.test", Server({}).http(),
                 endpoints={"authorization_endpoint": "http://gh.test/a",
                            "token_endpoint": "https://gh.test/t"})


def test_merge_keeps_oidc_members() -> None:
    assert merge_documents({"a": 1}, {"a": 2, "b": 3}) == {"a": 1, "b": 3}
    assert merge_documents(None, {"b": 3}) == {"b": 3}


def test_entra_multi_tenant_template_is_accepted_only_under_the_rule() -> None:
    base = "https://login.microsoftonline.com"
    doc = {"issuer": f"{base}/{{tenantid}}/v2.0", "token_endpoint": f"{base}/common/t"}
    for tenant in ("common", "organizations", "consumers"):
        assert tenant_issuer_template(f"{base}/{tenant}/v2.0") == f"{base}/{{tenantid}}/v2.0"
        meta = parse_metadata(doc, f"{base}/{tenant}/v2.0", tenant_issuers=True)
        assert meta.tenant_issuer_template
    assert tenant_issuer_template(f"{base}/0000-tenant/v2.0") is None
    with pytest.raises(ConfigError, match="names issuer"):
        parse_metadata(doc, f"{base}/common/v2.0")  # not without the preset's rule
    with pytest.raises(ConfigError, match="names issuer"):
        parse_metadata(doc, f"{base}/mytenant/v2.0", tenant_issuers=True)
    exact = parse_metadata({"issuer": f"{base}/t1/v2.0", "token_endpoint": f"{base}/t"},
                           f"{base}/t1/v2.0", tenant_issuers=True)
    assert not exact.tenant_issuer_template
