"""A loopback API for the throughput and memory benchmarks, run as its own process.

It answers every request 200 with a small JSON body, with or without a token (so the
unauthenticated baseline is the same work for the client), over HTTP/1.1 keep-alive, and
counts the requests that carried a Bearer token (GET /__counts) so a benchmark can check
the auth really went out. It runs in a separate process so the server's CPU time does
not share the client's GIL. Prints its URL on stdout, exits when stdin closes.

Usage: python -m benchmarks._api_server
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COUNTS = {"bearer": 0, "anonymous": 0}
LOCK = threading.Lock()
BODY = b'{"ok":true,"items":[1,2,3]}'


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/__counts":
            with LOCK:
                body = json.dumps(COUNTS).encode()
        else:
            auth = self.headers.get("Authorization") or ""
            with LOCK:
                COUNTS["bearer" if auth.startswith("Bearer ") else "anonymous"] += 1
            body = BODY
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    host, port = server.server_address[:2]
    print(f"http://{host}:{port}", flush=True)
    sys.stdin.read()  # returns when the parent closes our stdin (or dies)
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main()
