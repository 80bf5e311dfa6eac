"""`resource_auth` without a browser: the device grant (RFC 8628), after discovery and
dynamic registration at the bundled oidc-provider.

The resource is a loopback API whose 401 names its protected-resource metadata (RFC 9728);
the metadata names the real provider, which registers the client (RFC 7591). With no
display and no `$BROWSER` the login is the device grant, approved by the user at HTTP level
from the instructions printed on stderr; the access token is the provider's JWT for the
resource (RFC 8707 `aud`), and a second `resource_auth` serves it with no new login.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from oauth_auth import resource_auth
from oauth_auth._config import RESOURCES, Config
from tests.support.browser import http_device_approve
from tests.support.filesecrets import FileSecrets
from tests.support.idp import IdP, decode_jwt_payload

pytestmark = pytest.mark.usefixtures("isolated_config")


class Resource:
    """A protected API on 127.0.0.1 that says where to log in, and records bearer tokens."""

    def __init__(self, issuer: str) -> None:
        self.tokens: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/.well-known/oauth-protected-resource/api":
                    self._reply(200, {"resource": outer.url, "authorization_servers": [issuer],
                                      "scopes_supported": ["api:read"]})
                    return
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer "):
                    meta = f"{outer.base}/.well-known/oauth-protected-resource/api"
                    self._reply(401, {"error": "unauthorized"}, {
                        "WWW-Authenticate": f'Bearer resource_metadata="{meta}"'})
                    return
                outer.tokens.append(auth[7:])
                self._reply(200, {"ok": True})

            def _reply(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def resource(real_idp: IdP) -> Iterator[Resource]:
    made = Resource(real_idp.issuer)
    try:
        yield made
    finally:
        made.stop()


class DeviceUser(io.StringIO):
    """stderr as the user reads it: approves the device grant from the printed code."""

    def __init__(self) -> None:
        super().__init__()
        self.approvals: list[str] = []
        self.threads: list[threading.Thread] = []

    def write(self, text: str) -> int:
        found = re.search(r"open (\S+) in a browser.*enter the code: (\S+)", text)
        if found:
            uri, code = found.groups()
            self.approvals.append(code)
            thread = threading.Thread(target=http_device_approve, args=(uri, code),
                                      daemon=True)
            thread.start()
            self.threads.append(thread)
        return super().write(text)


def test_without_a_browser_the_device_grant_logs_in(
    real_idp: IdP, resource: Resource, tmp_path: Path, cfg_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        monkeypatch.delenv(name, raising=False)
    store = FileSecrets(tmp_path / "store")
    user = DeviceUser()
    auth = resource_auth(resource.url, interactive=True, secrets_provider=store,
                         stderr=user, login_timeout=60)
    with httpx.Client(auth=auth, timeout=30) as client:
        assert client.get(resource.url).json() == {"ok": True}
    for thread in user.threads:
        thread.join(30)
    assert len(user.approvals) == 1
    grants = real_idp.counts()["token"]
    assert grants["urn:ietf:params:oauth:grant-type:device_code"]["ok"] == 1
    assert "authorization_code" not in grants
    claims = decode_jwt_payload(resource.tokens[0])
    assert claims["aud"] == resource.url  # RFC 8707: a token for this resource
    entry = Config(cfg_file).entry(RESOURCES, resource.url)
    assert entry is not None
    assert entry["issuer"] == real_idp.issuer
    assert entry["registered"] is True

    # Another client of the same resource starts from the config file and the store.
    again = resource_auth(resource.url, interactive=False, secrets_provider=store)
    with httpx.Client(auth=again, timeout=30) as client:
        assert client.get(resource.url).status_code == 200
    assert resource.tokens[1] == resource.tokens[0]
    assert len(user.approvals) == 1
