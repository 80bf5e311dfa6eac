"""A real Freedesktop Secret Service for the tests: gnome-keyring on a private D-Bus bus.

The session fixture `secret_service` starts, in a fresh temporary folder:

- a ``dbus-daemon`` with a session config of our own that has NO service directories, so
  nothing is ever activated behind our back (with activation on, a crashed gnome-keyring
  is respawned *locked*, and keyring calls then fail with KeyringLocked or hang forever
  waiting for an unlock prompt);
- ``gnome-keyring-daemon --foreground --unlock --components=secrets`` with a known password
  on stdin, and XDG_DATA_HOME / XDG_RUNTIME_DIR in the folder, so its "login" collection
  is created new, unlocked, and aliased as "default".

While the session runs, ``os.environ`` points at that bus (DBUS_SESSION_BUS_ADDRESS,
XDG_DATA_HOME, XDG_RUNTIME_DIR, PYTHON_KEYRING_BACKEND), so `keyring` and any subprocess
use it; teardown restores the environment, kills both daemons and removes the folder.
If pytest itself is killed, dbus-daemon gets SIGTERM from the kernel (parent-death
signal, via ``setpriv``) and gnome-keyring exits when its bus goes away; an atexit hook
covers a normal interpreter exit that skipped teardown.

Both binaries missing: the fixture fails in CI and skips locally (`tests.support.require`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.require import missing

__all__ = ["SecretServiceBench", "secret_service", "start_secret_service"]

PASSWORD = "oauth-auth-test-keyring"
BUS_NAME = "org.freedesktop.secrets"
START_TIMEOUT = 15.0

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:dir={socket_dir}</listen>
  <auth>EXTERNAL</auth>
  <!-- No <servicedir> and no <standard_session_servicedirs/>: no activation. -->
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def _pdeathsig_prefix() -> list[str]:
    """`setpriv --pdeathsig TERM --` when available: the child dies with the test process."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def _stop(proc: subprocess.Popen[Any] | None, timeout: float = 5.0) -> None:
    if proc is None or proc.poll() is not None:
        if proc is not None:
            proc.wait()
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def name_has_owner(address: str, name: str = BUS_NAME) -> bool:
    """Whether `name` has an owner on the bus at `address` (False if the bus is gone)."""
    from jeepney import DBus
    from jeepney.io.blocking import open_dbus_connection

    try:
        conn = open_dbus_connection(bus=address)
    except (OSError, ValueError):
        return False
    with conn:
        reply = conn.send_and_get_reply(DBus().NameHasOwner(name), timeout=5)
        return bool(reply.body[0])


@dataclass
class SecretServiceBench:
    """A running private bus with gnome-keyring's Secret Service on it.

    Attributes:
        root: the temporary folder holding the bus socket, keyring files and logs.
        env: the variables a process needs to use this Secret Service (merge them into a
            subprocess's environment; the fixture also sets them in ``os.environ``).
        password: the login keyring's password.
        dbus_pid: pid of the private dbus-daemon.
    """

    root: Path
    env: dict[str, str]
    password: str
    dbus_pid: int
    _dbus: subprocess.Popen[bytes]
    _daemon: subprocess.Popen[bytes] | None = None
    _log_count: int = field(default=0)

    @property
    def address(self) -> str:
        """The private bus address (DBUS_SESSION_BUS_ADDRESS)."""
        return self.env["DBUS_SESSION_BUS_ADDRESS"]

    @property
    def daemon_pid(self) -> int | None:
        """pid of gnome-keyring-daemon, None while it is stopped."""
        return self._daemon.pid if self._daemon is not None else None

    @property
    def pids(self) -> dict[str, int | None]:
        """The daemons' pids: ``{"dbus-daemon": ..., "gnome-keyring-daemon": ...}``."""
        return {"dbus-daemon": self.dbus_pid, "gnome-keyring-daemon": self.daemon_pid}

    def daemon_alive(self) -> bool:
        """True while gnome-keyring-daemon runs and owns org.freedesktop.secrets."""
        return (
            self._daemon is not None
            and self._daemon.poll() is None
            and name_has_owner(self.address)
        )

    def subprocess_env(self) -> dict[str, str]:
        """``os.environ`` with this bench's variables: for `subprocess` calls."""
        return {**os.environ, **self.env}

    def keyring_backend(self) -> Any:
        """A keyring SecretService backend that talks to this bus.

        secretstorage connects to ``DBUS_SESSION_BUS_ADDRESS`` on every call; the fixture
        keeps that variable pointed at this bus for the whole session.
        """
        from keyring.backends.SecretService import Keyring

        return Keyring()

    def start_daemon(self) -> None:
        """Start gnome-keyring-daemon (again), unlock the login keyring, wait until ready."""
        if self._daemon is not None and self._daemon.poll() is None:
            return
        self._log_count += 1
        log_path = self.root / f"gnome-keyring-{self._log_count}.log"
        with open(log_path, "wb") as log:
            daemon = subprocess.Popen(
                [*_pdeathsig_prefix(), "gnome-keyring-daemon", "--foreground", "--unlock",
                 "--components=secrets"],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                env=self.subprocess_env(), start_new_session=True,
            )
        assert daemon.stdin is not None
        daemon.stdin.write(self.password.encode())
        daemon.stdin.close()
        self._daemon = daemon
        deadline = time.monotonic() + START_TIMEOUT
        while not name_has_owner(self.address):
            if daemon.poll() is not None or time.monotonic() > deadline:
                _stop(daemon)
                self._daemon = None
                raise RuntimeError(
                    f"gnome-keyring-daemon did not come up: {log_path.read_text(errors='replace')}"
                )
            time.sleep(0.02)
        self._ensure_default_collection()

    def stop_daemon(self) -> None:
        """Stop gnome-keyring-daemon (SIGTERM) and wait until its bus name is gone."""
        daemon, self._daemon = self._daemon, None
        _stop(daemon)
        deadline = time.monotonic() + START_TIMEOUT
        while name_has_owner(self.address) and time.monotonic() < deadline:
            time.sleep(0.02)

    def kill_daemon(self, sig: int = signal.SIGKILL) -> None:
        """Kill gnome-keyring-daemon with `sig` (a crash, for fault tests)."""
        if self._daemon is not None and self._daemon.poll() is None:
            self._daemon.send_signal(sig)
        self.stop_daemon()

    def _ensure_default_collection(self) -> None:
        """Check that the 'default' alias names an unlocked collection; alias 'login' if not."""
        from contextlib import closing

        import secretstorage
        from secretstorage.defines import SS_PATH, SS_PREFIX
        from secretstorage.exceptions import ItemNotFoundException
        from secretstorage.util import DBusAddressWrapper

        old = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
        os.environ["DBUS_SESSION_BUS_ADDRESS"] = self.address
        try:
            with closing(secretstorage.dbus_init()) as conn:
                try:
                    collection = secretstorage.Collection(conn)  # the 'default' alias
                    locked = collection.is_locked()
                except ItemNotFoundException:
                    login = "/org/freedesktop/secrets/collection/login"
                    service = DBusAddressWrapper(SS_PATH, SS_PREFIX + "Service", conn)
                    service.call("SetAlias", "so", "default", login)
                    collection = secretstorage.Collection(conn)
                    locked = collection.is_locked()
                if locked:
                    raise RuntimeError("the Secret Service's default collection is locked")
        finally:
            if old is None:
                os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
            else:
                os.environ["DBUS_SESSION_BUS_ADDRESS"] = old

    def close(self) -> None:
        """Kill both daemons (idempotent)."""
        _stop(self._daemon)
        self._daemon = None
        _stop(self._dbus)


def start_secret_service(root: Path) -> SecretServiceBench:
    """Start a private bus and an unlocked gnome-keyring Secret Service under `root`."""
    data, runtime = root / "data", root / "run"
    data.mkdir(mode=0o700)
    runtime.mkdir(mode=0o700)
    config = root / "bus.conf"
    config.write_text(_BUS_CONFIG.format(socket_dir=runtime))
    dbus = subprocess.Popen(
        [*_pdeathsig_prefix(), "dbus-daemon", "--nofork", "--print-address=1",
         f"--config-file={config}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert dbus.stdout is not None
    address = dbus.stdout.readline().decode().strip()
    dbus.stdout.close()
    if not address:
        _stop(dbus)
        raise RuntimeError("dbus-daemon did not print its address")
    env = {
        "DBUS_SESSION_BUS_ADDRESS": address,
        "XDG_DATA_HOME": str(data),
        "XDG_RUNTIME_DIR": str(runtime),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring",
    }
    bench = SecretServiceBench(root=root, env=env, password=PASSWORD, dbus_pid=dbus.pid,
                               _dbus=dbus)
    try:
        bench.start_daemon()
    except BaseException:
        bench.close()
        raise
    return bench


@contextlib.contextmanager
def using_secret_service(root: Path) -> Iterator[SecretServiceBench]:
    """Start the bench in `root` and point this process at it (environment and keyring's
    default backend); restore both and stop the daemons on the way out."""
    import keyring
    import keyring.core

    bench = start_secret_service(root)
    atexit.register(bench.close)
    saved = {k: os.environ.get(k) for k in bench.env}
    previous_default = keyring.core._keyring_backend
    os.environ.update(bench.env)
    keyring.set_keyring(bench.keyring_backend())
    try:
        yield bench
    finally:
        keyring.core._keyring_backend = previous_default
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        bench.close()
        atexit.unregister(bench.close)


@pytest.fixture(scope="session")
def secret_service() -> Iterator[SecretServiceBench]:
    """gnome-keyring's Secret Service on a private bus, unlocked, for the whole session."""
    for binary in ("dbus-daemon", "gnome-keyring-daemon"):
        if shutil.which(binary) is None:
            missing("gnome-keyring", "apt-get install gnome-keyring dbus")
    try:
        import secretstorage  # noqa: F401
    except ImportError:
        missing("secretstorage", "pip install secretstorage (keyring's Linux dependency)")
    with using_secret_service(Path(tempfile.mkdtemp(prefix="oauth-auth-ss-"))) as bench:
        yield bench
