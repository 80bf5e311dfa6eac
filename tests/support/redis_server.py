"""A real redis-server on 127.0.0.1 for the fleet tests (a pytest plugin).

`start_redis(directory)` runs Debian's redis-server on a free loopback port with its data
in `directory` (append-only file, fsync on every write: a restart keeps what was
written), and returns a `RedisServer` that can be stopped, restarted on the same port,
and paused. Fixtures:

- `redis_server`: one server for the whole session (tests use their own namespaces);
- `redis_factory`: `redis_factory() -> RedisServer`, a server of the test's own (for
  tests that stop or restart it), stopped after the test.

The server never outlives the run (tests/support/servers.py). Where redis-server is
missing, the tests skip locally and fail in CI (tests/support/require.py).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.require import missing
from tests.support.servers import ServerProcess, free_port, wait_until

__all__ = ["RedisServer", "require_redis", "start_redis"]

INSTALL_HINT = "install Debian's redis-server (apt-get install redis-server)"


def require_redis() -> str:
    """The path of redis-server; skip (locally) or fail (CI) when it is missing."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server", INSTALL_HINT)
    return binary


def _ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")


class RedisServer:
    """A running redis-server. `url` is redis://127.0.0.1:PORT/0."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.binary = require_redis()
        self.directory = directory
        self.port = port or free_port()
        self.proc: ServerProcess | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (again, on the same port and data)."""
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.directory), "--save", "", "--appendonly", "yes",
                "--appendfsync", "always", "--protected-mode", "yes", "--daemonize", "no",
                "--loglevel", "warning"]
        self.proc = ServerProcess(argv, log=self.directory / "redis.log")
        try:
            wait_until(lambda: _ping(self.port), 20, f"redis-server on port {self.port}")
        except RuntimeError as exc:
            tail = self.proc.tail()
            self.stop()
            raise RuntimeError(f"{exc}\n{tail}") from None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_redis(directory: Path | None = None) -> RedisServer:
    """A new server with its data in `directory` (default: a new temporary directory)."""
    return RedisServer(directory or Path(tempfile.mkdtemp(prefix="oauth-auth-redis-")))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's shared redis-server."""
    with start_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """`redis_factory() -> RedisServer`: servers of the test's own, stopped after it."""
    started: list[RedisServer] = []

    def make() -> RedisServer:
        started.append(start_redis(tmp_path_factory.mktemp("redis")))
        return started[-1]

    yield make
    for server in started:
        server.stop()
