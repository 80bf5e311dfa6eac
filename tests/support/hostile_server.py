"""A hostile identity provider on a real loopback socket.

It serves an honest discovery document (issuer `http://127.0.0.1:<port>`) and answers the
token endpoint in the way `mode` says: `trickle_headers` sends the status line one byte
every `gap` seconds, `trickle_body` sends honest headers and then the body that way, and
`huge` streams `huge_bytes` of one JSON string, chunked (no Content-Length), as fast as
the client reads. `sent` counts the body bytes the server managed to write, which shows
how far a client read before it gave up.

A thread per connection; `close()` stops the listener and every connection.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading

__all__ = ["HostileIdP"]


class HostileIdP:
    """A loopback server whose token endpoint misbehaves (see the module docstring)."""

    def __init__(self, mode: str, *, gap: float = 0.8, huge_bytes: int = 400 << 20) -> None:
        self.mode = mode
        self.gap = gap
        self.huge_bytes = huge_bytes
        self.sent = 0
        self.token_requests = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.issuer = f"http://127.0.0.1:{self.port}"
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> str:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return ""
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            rest += chunk
        return head.split(b"\r\n", 1)[0].decode("latin-1")

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            line = self._read_request(conn)
            if line.startswith("GET /.well-known/openid-configuration"):
                body = json.dumps({
                    "issuer": self.issuer,
                    "token_endpoint": f"{self.issuer}/token",
                    "authorization_endpoint": f"{self.issuer}/auth",
                }).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
                             + body)
                return
            self.token_requests += 1
            if self.mode == "trickle_headers":
                self._trickle(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                    b"X-Padding: " + b"x" * 4000)
            elif self.mode == "trickle_body":
                body = b'{"access_token": "' + b"a" * 4000 + b'"}'
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body))
                self._trickle(conn, body)
            elif self.mode == "huge":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                piece = b"x" * (1 << 16)
                self._chunk(conn, b'{"access_token": "')
                while self.sent < self.huge_bytes and not self._stop.is_set():
                    self._chunk(conn, piece)
                    self.sent += len(piece)
                self._chunk(conn, b'"}')
                conn.sendall(b"0\r\n\r\n")

    @staticmethod
    def _chunk(conn: socket.socket, data: bytes) -> None:
        conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    def _trickle(self, conn: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            if self._stop.wait(self.gap):
                return
            conn.sendall(data[i : i + 1])
            self.sent += 1

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def __enter__(self) -> HostileIdP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
