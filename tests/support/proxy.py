"""A small forward proxy on 127.0.0.1 that tests start themselves (HTTP_PROXY/HTTPS_PROXY).

It serves absolute-form requests (`GET http://host:port/path HTTP/1.1`, what a client sends
to an HTTP proxy for an http:// URL) by forwarding them with `http.client`, and CONNECT
(what it sends for an https:// URL) by tunnelling bytes. It forwards only to loopback
hosts (the bench never talks to anything else) and records every request it saw, so a test
can assert that the library's provider calls really went through it.

Fixture: `forward_proxy` (a started `ForwardProxy`, stopped after the test).
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import ipaddress
import select
import socket
import threading
import urllib.parse
from collections.abc import Iterator

import pytest

__all__ = ["ForwardProxy", "forward_proxy"]

_HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailers", "transfer-encoding", "upgrade", "proxy-connection",
}


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return

    def _forward(self) -> None:
        target = urllib.parse.urlsplit(self.path)
        host = target.hostname or ""
        if target.scheme != "http" or not _loopback(host):
            self.send_error(403, "this bench proxy forwards to loopback http only")
            return
        self.server.record(self.command, self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        path = target.path or "/"
        if target.query:
            path += "?" + target.query
        upstream = http.client.HTTPConnection(host, target.port or 80, timeout=30)
        try:
            upstream.request(self.command, path, body=body, headers=headers)
            answer = upstream.getresponse()
            content = answer.read()
            self.send_response(answer.status, answer.reason)
            for name, value in answer.getheaders():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)
        finally:
            upstream.close()

    do_GET = do_POST = do_PUT = do_DELETE = _forward

    def do_CONNECT(self) -> None:
        host, _, port = self.path.rpartition(":")
        if not _loopback(host) or not port.isdigit():
            self.send_error(403, "this bench proxy tunnels to loopback only")
            return
        self.server.record("CONNECT", self.path)
        with socket.create_connection((host.strip("[]"), int(port)), timeout=30) as upstream:
            self.send_response(200, "Connection established")
            self.end_headers()
            sockets = [self.connection, upstream]
            # A side that resets the tunnel (a client refusing the certificate) ends it.
            with contextlib.suppress(OSError):
                while True:
                    readable, _, _ = select.select(sockets, [], [], 30)
                    if not readable:
                        return
                    for sock in readable:
                        data = sock.recv(65536)
                        if not data:
                            return
                        (upstream if sock is self.connection else self.connection).sendall(data)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def record(self, method: str, target: str) -> None:
        with self._lock:
            self.seen.append((method, target))


class ForwardProxy:
    """A running proxy: `url` to put in HTTP_PROXY, `seen` the (method, target) requests."""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def seen(self) -> list[tuple[str, str]]:
        with self._server._lock:
            return list(self._server.seen)

    def start(self) -> ForwardProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    """A started forward proxy on 127.0.0.1, stopped after the test."""
    proxy = ForwardProxy().start()
    try:
        yield proxy
    finally:
        proxy.stop()
