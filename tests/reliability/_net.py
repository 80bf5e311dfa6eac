"""Network faults the provider's own fault injection cannot make: a connection refused by
the kernel while the provider keeps its state, then the same provider reachable again.

`TcpProxy` relays a loopback port to the provider; `stop()` closes its listener and every
relayed connection (new connections are then refused: ECONNREFUSED), `start()` listens on
the same port again. `RoutedTransport` is a real httpx transport that sends every request
for the provider's port to the proxy's port instead, so the library's discovery, token and
JWKS calls all go through the proxy while the issuer stays the provider's own.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

import httpx

__all__ = ["RoutedTransport", "TcpProxy"]


class TcpProxy:
    """A stoppable TCP relay from 127.0.0.1:<port> to 127.0.0.1:<target_port>."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        #: True: requests still reach the provider, its answers are thrown away (an answer
        #: lost on the way back, after the provider acted on the request).
        self.swallow_answers = False
        self.start()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            for a, b, back in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(a, b, back), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, back: bool) -> None:
        if back and self.swallow_answers:
            # the answer is lost: the client hears nothing until its own timeout
            with contextlib.suppress(OSError):
                while src.recv(65536):
                    pass
            return
        try:
            while data := src.recv(65536):
                if back and self.swallow_answers:
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Refuse new connections and cut the relayed ones."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, set()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.stop()


class RoutedTransport(httpx.HTTPTransport):
    """An httpx transport that sends requests for `from_port` to `to_port` on 127.0.0.1."""

    def __init__(self, from_port: int, to_port: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.from_port = from_port
        self.to_port = to_port

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.port == self.from_port:
            request.url = request.url.copy_with(port=self.to_port)
        return super().handle_request(request)
