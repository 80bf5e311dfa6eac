"""A small protected API on loopback that counts what it sees.

It accepts a bearer token only if `validator(token)` says so: a fixed set for unit tests,
or the real provider's introspection endpoint for end-to-end tests. Modes make it answer
401 always, 401 with insufficient_scope, 403, or redirect (`redirect_status`, to
`redirect_to` + "/echo", another origin or this one).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Seen:
    method: str
    path: str
    authorization: str | None
    body: bytes
    content_type: str | None


@dataclass
class ProtectedAPI:
    """The running API. `mode` is one of: normal, always_401, insufficient_scope, forbidden,
    step_up (a 403 naming `step_up_scope` for every token not in `scoped_tokens`)."""

    validator: Callable[[str], bool]
    mode: str = "normal"
    redirect_to: str = ""
    redirect_status: int = 302
    seen: list[Seen] = field(default_factory=list)
    rejected_tokens: set[str] = field(default_factory=set)
    scoped_tokens: set[str] = field(default_factory=set)
    step_up_scope: str = "read admin"
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def count(self, path: str | None = None) -> int:
        return sum(1 for s in self.seen if path is None or s.path == path)

    def reset(self) -> None:
        self.seen.clear()


def _handler(api: ProtectedAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = self._read_chunked()
            auth = self.headers.get("Authorization")
            api.seen.append(Seen(self.command, self.path, auth, body,
                                 self.headers.get("Content-Type")))
            if self.path.startswith("/redirect") and api.redirect_to:
                self._reply(api.redirect_status, b"", {"Location": api.redirect_to + "/echo"})
                return
            if api.mode == "forbidden":
                self._reply(403, b'{"error":"forbidden"}')
                return
            token = auth[7:] if auth and auth.startswith("Bearer ") else ""
            if api.mode == "insufficient_scope":
                self._reply(401, b"", {"WWW-Authenticate":
                                       'Bearer error="insufficient_scope", scope="admin"'})
                return
            if api.mode == "step_up" and token not in api.scoped_tokens:
                self._reply(403, b'{"error":"insufficient_scope"}', {"WWW-Authenticate":
                            f'Bearer error="insufficient_scope", scope="{api.step_up_scope}"'})
                return
            ok = (bool(token) and api.mode != "always_401"
                  and token not in api.rejected_tokens and api.validator(token))
            if not ok:
                self._reply(401, b'{"error":"unauthorized"}',
                            {"WWW-Authenticate": 'Bearer realm="api", error="invalid_token"'})
                return
            payload = {"ok": True, "path": self.path, "body_len": len(body)}
            self._reply(200, json.dumps(payload).encode())

        def _read_chunked(self) -> bytes:
            out = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()

        def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler


def start_api(validator: Callable[[str], bool], host: str = "127.0.0.1") -> ProtectedAPI:
    api = ProtectedAPI(validator=validator)
    server = ThreadingHTTPServer((host, 0), _handler(api))
    server.daemon_threads = True
    api.server = server
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return api


def stop_api(api: ProtectedAPI) -> None:
    if api.server is not None:
        api.server.shutdown()
        api.server.server_close()


@pytest.fixture
def api_factory() -> Iterator[Callable[..., ProtectedAPI]]:
    started: list[ProtectedAPI] = []

    def make(validator: Callable[[str], bool], host: str = "127.0.0.1") -> ProtectedAPI:
        api = start_api(validator, host)
        started.append(api)
        return api

    yield make
    for api in started:
        stop_api(api)
