"""A fake CI OIDC issuer on loopback that signs tokens the way GitHub Actions does.

GitHub Actions gives a job with `permissions: id-token: write` the variables
ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN; a GET of
`<url>&audience=<aud>` with `Authorization: bearer <request token>` answers
`{"value": "<JWT>"}`, an RS256 JWT whose claims are those documented at
https://docs.github.com/en/actions/security-for-github-actions/security-hardening-your-deployments/about-security-hardening-with-openid-connect
(iss, sub `repo:<owner>/<name>:ref:<ref>`, aud, repository, repository_owner, ref, sha,
workflow, job_workflow_ref, run_id, actor, event_name, jti, iat, nbf, exp).

This server plays both sides: the issuer (`/.well-known/openid-configuration`,
`/.well-known/jwks`), which the bundled oidc-provider's token exchange grant trusts
(settings exchange_issuer / exchange_jwks_uri), and the job's token request URL
(`/_apis/idtoken?api-version=2.0`), which checks the bearer request token. `issue()` mints
a token directly (for files and variables: a Kubernetes projected token is one too).

Fixture: `ci_issuer` (one per test, stopped after).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

__all__ = ["CIIssuer", "ci_issuer", "start_ci_issuer"]

DEFAULT_REPOSITORY = "octo-org/octo-repo"
DEFAULT_REF = "refs/heads/main"


@dataclass
class CIIssuer:
    """The running issuer. Safe to use from several threads.

    Attributes:
        request_token: the bearer token the job's token request must carry.
        token_ttl: lifetime in seconds of the tokens it issues.
        repository, ref: what the job's tokens say (`sub` is built from them).
        requests: the job token requests it answered, as (status, audience).
    """

    request_token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    token_ttl: int = 300
    repository: str = DEFAULT_REPOSITORY
    ref: str = DEFAULT_REF
    requests: list[tuple[int, str]] = field(default_factory=list)
    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, private=True),
                        repr=False)
    kid: str = field(default_factory=lambda: secrets.token_hex(8))
    server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def issuer(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/.well-known/jwks"

    @property
    def request_url(self) -> str:
        """What ACTIONS_ID_TOKEN_REQUEST_URL holds (it has a query, as GitHub's does)."""
        return f"{self.issuer}/_apis/idtoken?api-version=2.0"

    def job_env(self) -> dict[str, str]:
        """The two variables a job with `id-token: write` has."""
        return {
            "ACTIONS_ID_TOKEN_REQUEST_URL": self.request_url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.request_token,
        }

    def exchange_settings(self, audience: str = "") -> dict[str, str]:
        """The oidc-provider settings that make its token exchange trust this issuer."""
        return {
            "exchange_issuer": self.issuer,
            "exchange_jwks_uri": self.jwks_uri,
            "exchange_audience": audience,
        }

    def issue(
        self,
        audience: str = "",
        *,
        ttl: int | None = None,
        repository: str | None = None,
        ref: str | None = None,
        issued_at: float | None = None,
        **claims: Any,
    ) -> str:
        """A signed token with GitHub's claims; `issued_at` in the past makes an old one."""
        now = int(time.time() if issued_at is None else issued_at)
        repository = repository or self.repository
        ref = ref or self.ref
        owner = repository.split("/")[0]
        body: dict[str, Any] = {
            "iss": self.issuer,
            "sub": f"repo:{repository}:ref:{ref}",
            "aud": audience or f"https://github.com/{owner}",
            "repository": repository,
            "repository_owner": owner,
            "ref": ref,
            "ref_type": "branch",
            "sha": secrets.token_hex(20),
            "workflow": "ci",
            "job_workflow_ref": f"{repository}/.github/workflows/ci.yml@{ref}",
            "run_id": str(secrets.randbelow(10**10)),
            "actor": "octocat",
            "event_name": "push",
            "jti": secrets.token_hex(16),
            "iat": now,
            "nbf": now - 5,
            "exp": now + (self.token_ttl if ttl is None else ttl),
        }
        body.update(claims)
        return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": self.kid}, body, self.key)

    def job_requests(self, status: int | None = 200) -> int:
        """How many job token requests were answered with `status` (None: any)."""
        with self._lock:
            return sum(1 for s, _ in self.requests if status is None or s == status)

    def _record(self, status: int, audience: str) -> None:
        with self._lock:
            self.requests.append((status, audience))


def _handler(ci: CIIssuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # the URL is not secret,
            pass  # but keep the test output quiet

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/.well-known/openid-configuration":
                self._json(200, {
                    "issuer": ci.issuer,
                    "jwks_uri": ci.jwks_uri,
                    "subject_types_supported": ["public", "pairwise"],
                    "response_types_supported": ["id_token"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf",
                                         "ref", "repository", "repository_owner", "sha",
                                         "workflow", "job_workflow_ref", "run_id", "actor",
                                         "event_name", "ref_type"],
                })
                return
            if url.path == "/.well-known/jwks":
                public = ci.key.as_dict(private=False)
                self._json(200, {"keys": [{**public, "kid": ci.kid, "use": "sig",
                                           "alg": "RS256"}]})
                return
            if url.path == "/_apis/idtoken":
                query = dict(urllib.parse.parse_qsl(url.query))
                audience = query.get("audience", "")
                auth = self.headers.get("Authorization", "")
                scheme, _, value = auth.partition(" ")
                if scheme.lower() != "bearer" or not secrets.compare_digest(
                    value.encode(), ci.request_token.encode()
                ):
                    ci._record(401, audience)
                    self._json(401, {"message": "Bad credentials"})
                    return
                if query.get("api-version") != "2.0":
                    ci._record(400, audience)
                    self._json(400, {"message": "api-version is required"})
                    return
                ci._record(200, audience)
                self._json(200, {"count": 1, "value": ci.issue(audience)})
                return
            self._json(404, {"message": "Not Found"})

        def _json(self, status: int, doc: dict[str, Any]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def start_ci_issuer(**options: Any) -> CIIssuer:
    """Start an issuer on 127.0.0.1 (a free port); `options` are `CIIssuer` fields."""
    ci = CIIssuer(**options)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ci))
    server.daemon_threads = True
    ci.server = server
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return ci


def stop_ci_issuer(ci: CIIssuer) -> None:
    if ci.server is not None:
        ci.server.shutdown()
        ci.server.server_close()


@pytest.fixture
def ci_issuer() -> Iterator[CIIssuer]:
    """A fake GitHub Actions OIDC issuer and token request URL on loopback."""
    ci = start_ci_issuer()
    try:
        yield ci
    finally:
        stop_ci_issuer(ci)
