"""A real PostgreSQL server on 127.0.0.1 for the fleet tests (a pytest plugin).

`start_postgres()` runs Debian's PostgreSQL (initdb, then postgres, from
/usr/lib/postgresql/<version>/bin) on a free loopback port, with its cluster in a new
temporary directory, and returns a `PostgresServer` that can be stopped and restarted
on the same port and data. PostgreSQL refuses to run as root: as root, the cluster
directory belongs to the `postgres` user and both programs run as that user (setpriv);
as anyone else they run as that user. Authentication is `trust` on loopback only.

Fixtures: `postgres_server` (one per session; tests use their own tables) and
`postgres_factory` (`postgres_factory() -> PostgresServer`, stopped after the test).
The server never outlives the run (tests/support/servers.py); where PostgreSQL is
missing, the tests skip locally and fail in CI (tests/support/require.py).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.require import missing
from tests.support.servers import ServerProcess, free_port, wait_until

__all__ = ["PostgresServer", "require_postgres", "start_postgres"]

INSTALL_HINT = "install Debian's postgresql (apt-get install postgresql)"


def require_postgres() -> Path:
    """The directory of initdb and postgres; skip (locally) or fail (CI) when missing."""
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(os.path.join(bindir, "postgres"), os.X_OK):
            return Path(bindir)
    found = shutil.which("postgres")
    if found is None:
        missing("PostgreSQL (postgres, initdb)", INSTALL_HINT)
    return Path(found).parent


def _as_user() -> tuple[list[str], pwd.struct_passwd | None]:
    """The prefix that runs a command as the postgres user when we are root."""
    if os.geteuid() != 0:
        return [], None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        missing("the postgres system user", INSTALL_HINT)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        missing("setpriv (util-linux)", "apt-get install util-linux")
    return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
            "--"], user


class PostgresServer:
    """A running PostgreSQL. `dsn` is postgresql://postgres@127.0.0.1:PORT/postgres."""

    def __init__(self) -> None:
        self.bindir = require_postgres()
        self.prefix, user = _as_user()
        # Not under pytest's tmp dirs: they are mode 0700 and owned by root.
        self.root = Path(tempfile.mkdtemp(prefix="oauth-auth-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.sockets.mkdir()
        if user is not None:
            os.chown(self.root, user.pw_uid, user.pw_gid)
            os.chown(self.sockets, user.pw_uid, user.pw_gid)
        self.port = free_port()
        self.proc: ServerProcess | None = None
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        done = subprocess.run(
            [*self.prefix, str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions"],
            capture_output=True, text=True, env=env, check=False, timeout=120,
        )
        if done.returncode != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        self._env = env
        self.start()

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ready(self) -> bool:
        import psycopg

        with psycopg.connect(self.dsn, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def start(self) -> None:
        """Start it (again, on the same port and data)."""
        argv = [*self.prefix, str(self.bindir / "postgres"), "-D", str(self.data),
                "-p", str(self.port), "-h", "127.0.0.1", "-k", str(self.sockets),
                "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=200"]
        # SIGINT is PostgreSQL's "fast" shutdown: it ends client sessions at once.
        self.proc = ServerProcess(argv, log=self.root / "postgres.log", stop_signal="INT",
                                  env=self._env)
        try:
            wait_until(self._ready, 30, f"PostgreSQL on port {self.port}")
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

    def remove(self) -> None:
        """Stop it and delete its cluster."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def start_postgres() -> PostgresServer:
    return PostgresServer()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's shared PostgreSQL server."""
    with start_postgres() as server:
        yield server


@pytest.fixture
def postgres_factory() -> Iterator[object]:
    """`postgres_factory() -> PostgresServer`: servers of the test's own, removed after it."""
    started: list[PostgresServer] = []

    def make() -> PostgresServer:
        started.append(start_postgres())
        return started[-1]

    yield make
    for server in started:
        server.remove()
