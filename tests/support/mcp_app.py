"""A real MCP server (the MCP Python SDK's) with its own authorization routes, for tests.

Run as `python -m tests.support.mcp_app PORT STATS_FILE`. The SDK serves everything an MCP
client finds by itself: the protected-resource metadata (RFC 9728) at
`/.well-known/oauth-protected-resource/mcp`, the authorization server's metadata
(RFC 8414), dynamic client registration (RFC 7591), `/authorize`, `/token`, `/revoke`, and
the streamable-HTTP endpoint `/mcp`, whose 401 names the metadata. Only the provider
behind the authorization routes is ours: in memory, it approves every authorization at
once (the user has consented before), issues access tokens that live `MCP_ACCESS_TTL`
seconds and refresh tokens that rotate (a spent one is `invalid_grant`), and counts what
it did into STATS_FILE (JSON, rewritten atomically) so tests can assert counts.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    RefreshToken,
    TokenError,
    construct_redirect_uri,
)
from mcp.server.auth.settings import AuthSettings, ClientRegistrationOptions, RevocationOptions
from mcp.server.mcpserver import MCPServer
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

SCOPE = "mcp:tools"
#: The scope the `admin_add` tool needs on top (`MCP_STEP_UP=1`): its calls without it get
#: the MCP step-up challenge, a 403 naming the scopes (RFC 6750 section 3.1).
ADMIN_SCOPE = "mcp:admin"


class Counts:
    """What the provider did, written to a JSON file after every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"register": 0, "authorize": 0, "code": 0, "refresh": 0,
                                     "invalid_grant": 0, "revoke": 0, "step_up_challenge": 0,
                                     "scopes": [], "resources": []}
        self.lock = threading.Lock()
        self.write()

    def bump(self, name: str, resource: str | None = None) -> None:
        with self.lock:
            self.data[name] += 1
            if resource is not None:
                self.data["resources"].append(resource)
            self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        tmp.replace(self.path)


class MemoryProvider:
    """An OAuthAuthorizationServerProvider in memory: auto-approving, rotating."""

    def __init__(self, counts: Counts, access_ttl: int) -> None:
        self.counts = counts
        self.ttl = access_ttl
        self.clients: dict[str, OAuthClientInformationFull] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.access: dict[str, AccessToken] = {}

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        return self.clients.get(client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        assert client_info.client_id is not None
        if os.environ.get("MCP_STEP_UP"):  # the server's policy: every client may step up
            client_info.scope = f"{SCOPE} {ADMIN_SCOPE}"
        self.clients[client_info.client_id] = client_info
        self.counts.bump("register")

    async def authorize(self, client: OAuthClientInformationFull,
                        params: AuthorizationParams) -> str:
        code = secrets.token_urlsafe(24)
        assert client.client_id is not None
        self.codes[code] = AuthorizationCode(
            code=code, scopes=params.scopes or [SCOPE], expires_at=time.time() + 300,
            client_id=client.client_id, code_challenge=params.code_challenge,
            redirect_uri=params.redirect_uri,
            redirect_uri_provided_explicitly=params.redirect_uri_provided_explicitly,
            resource=params.resource, subject="user-1",
        )
        self.counts.bump("authorize", params.resource)
        with self.counts.lock:
            self.counts.data["scopes"].append(" ".join(params.scopes or []))
            self.counts.write()
        return construct_redirect_uri(str(params.redirect_uri), code=code, state=params.state)

    async def load_authorization_code(self, client: OAuthClientInformationFull,
                                      authorization_code: str) -> AuthorizationCode | None:
        return self.codes.get(authorization_code)

    def _issue(self, client_id: str, scopes: list[str], resource: str | None) -> OAuthToken:
        access = "mcp-at-" + secrets.token_urlsafe(24)
        refresh = "mcp-rt-" + secrets.token_urlsafe(24)
        self.access[access] = AccessToken(token=access, client_id=client_id, scopes=scopes,
                                          expires_at=int(time.time()) + self.ttl,
                                          resource=resource, subject="user-1")
        self.refresh[refresh] = RefreshToken(token=refresh, client_id=client_id, scopes=scopes,
                                             resource=resource, subject="user-1")
        return OAuthToken(access_token=access, expires_in=self.ttl, scope=" ".join(scopes),
                          refresh_token=refresh)

    async def exchange_authorization_code(self, client: OAuthClientInformationFull,
                                          authorization_code: AuthorizationCode) -> OAuthToken:
        self.codes.pop(authorization_code.code, None)
        self.counts.bump("code", authorization_code.resource)
        return self._issue(authorization_code.client_id, authorization_code.scopes,
                           authorization_code.resource)

    async def load_refresh_token(self, client: OAuthClientInformationFull,
                                 refresh_token: str) -> RefreshToken | None:
        found = self.refresh.get(refresh_token)
        if found is None:
            self.counts.bump("invalid_grant")
        return found

    async def exchange_refresh_token(self, client: OAuthClientInformationFull,
                                     refresh_token: RefreshToken,
                                     scopes: list[str]) -> OAuthToken:
        if self.refresh.pop(refresh_token.token, None) is None:  # spent meanwhile
            self.counts.bump("invalid_grant")
            raise TokenError("invalid_grant", "refresh token already used")
        self.counts.bump("refresh", refresh_token.resource)
        return self._issue(refresh_token.client_id, scopes or refresh_token.scopes,
                           refresh_token.resource)

    async def load_access_token(self, token: str) -> AccessToken | None:
        found = self.access.get(token)
        if found is None or (found.expires_at is not None and found.expires_at < time.time()):
            return None
        return found

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        self.access.pop(token.token, None)
        self.refresh.pop(token.token, None)
        self.counts.bump("revoke")


class StepUpGate:
    """ASGI middleware: a `tools/call` of `admin_add` needs `mcp:admin` as well.

    The SDK checks one set of scopes for the whole endpoint, and its 403 names no `scope`;
    a server that scopes its tools answers as the MCP authorization spec says: 403 with
    `WWW-Authenticate: Bearer error="insufficient_scope", scope="..."`, the scopes the
    request needs.
    """

    def __init__(self, app: Any, provider: MemoryProvider, metadata_url: str) -> None:
        self.app, self.provider, self.metadata_url = app, provider, metadata_url

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if b'"admin_add"' in body:
            headers = dict(scope["headers"])
            token = headers.get(b"authorization", b"").decode()[len("Bearer "):]
            found = await self.provider.load_access_token(token)
            if found is not None and ADMIN_SCOPE not in found.scopes:
                self.provider.counts.bump("step_up_challenge")
                challenge = (f'Bearer error="insufficient_scope", scope="{SCOPE} {ADMIN_SCOPE}",'
                             f' resource_metadata="{self.metadata_url}"')
                await send({"type": "http.response.start", "status": 403, "headers": [
                    (b"www-authenticate", challenge.encode()),
                    (b"content-type", b"application/json")]})
                await send({"type": "http.response.body",
                            "body": b'{"error":"insufficient_scope"}'})
                return
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def build(port: int, stats: Path) -> Any:
    base = f"http://127.0.0.1:{port}"
    provider = MemoryProvider(Counts(stats), int(os.environ.get("MCP_ACCESS_TTL", "3600")))
    server: MCPServer[Any] = MCPServer(
        "oauth-auth-test",
        auth_server_provider=provider,
        auth=AuthSettings(
            issuer_url=base,  # type: ignore[arg-type]
            resource_server_url=f"{base}/mcp",  # type: ignore[arg-type]
            validate_token_resource=True,
            required_scopes=[SCOPE],
            client_registration_options=ClientRegistrationOptions(
                enabled=True, valid_scopes=[SCOPE, ADMIN_SCOPE], default_scopes=[SCOPE]),
            revocation_options=RevocationOptions(enabled=True),
        ),
    )

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @server.tool()
    def admin_add(a: int, b: int) -> int:
        """Add two numbers, for callers granted mcp:admin (see StepUpGate)."""
        return a + b

    app = server.streamable_http_app(host="127.0.0.1")
    if os.environ.get("MCP_STEP_UP"):
        return StepUpGate(app, provider, f"{base}/.well-known/oauth-protected-resource/mcp")
    return app


def main() -> None:
    import uvicorn

    port, stats = int(sys.argv[1]), Path(sys.argv[2])
    uvicorn.run(build(port, stats), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
