"""KeyringSecrets: backends refused, errors mapped, timeouts, locks, split values, faults.

The shared contract (tests/unit/test_secrets.py) already runs KeyringSecrets against the real
Secret Service; this file covers what only the keyring provider does.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import keyring.errors
import pytest
import secretstorage.exceptions as ss_errors
from jeepney import DBusAddress, DBusErrorResponse, new_error, new_method_call
from keyring.backends import chainer, fail, null

from oauth_auth.errors import SecretsError
from oauth_auth.secrets import SPLIT_PREFIX, KeyringSecrets, default_lock_dir, part_name
from tests.support.keyring_fakes import BlockingBackend, DictBackend, RaisingBackend
from tests.support.secret_service import SecretServiceBench

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-" + "v" * 40  # long enough to be recognised in any text


def unique_service() -> str:
    return f"oauth-auth-test-{uuid.uuid4().hex[:8]}"


def run_python(code: str, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=timeout, check=False,
    )


# --------------------------------------------------------------------------------------
# Lazy import, backend choice


def test_importing_and_constructing_does_not_import_keyring() -> None:
    result = run_python("""
        import sys
        from oauth_auth.secrets import KeyringSecrets
        KeyringSecrets()
        print(sorted(m for m in ("keyring", "secretstorage", "jeepney", "filelock")
                     if m in sys.modules))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


class EmptyChainer(chainer.ChainerBackend):
    backends = [fail.Keyring()]  # noqa: RUF012 - shadows keyring's classproperty


@pytest.mark.parametrize("backend", [fail.Keyring(), null.Keyring(), EmptyChainer()],
                         ids=["fail", "null", "empty-chainer"])
def test_placeholder_backends_are_refused(backend: Any) -> None:
    with pytest.raises(SecretsError) as excinfo:
        KeyringSecrets(backend=backend)
    text = str(excinfo.value)
    assert "placeholder" in text
    for advice in ("PYTHON_KEYRING_BACKEND", "keyringrc.cfg", "gnome-keyring"):
        assert advice in text


def test_configured_placeholder_is_refused_on_use(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setattr(keyring, "get_keyring", fail.Keyring)
    secrets = KeyringSecrets(lock_dir=tmp_path)  # constructing is fine: nothing is looked up
    assert secrets.loaded is False
    assert secrets.backend_name == "keyring.backends.fail.Keyring"
    assert secrets.loaded is True
    for call in (secrets.check, lambda: secrets.get_secret("a"),
                 lambda: secrets.set_secret("a", SECRET), lambda: secrets.delete_secret("a")):
        with pytest.raises(SecretsError, match="PYTHON_KEYRING_BACKEND"):
            call()


@pytest.mark.parametrize("backend", ["keyring.backends.fail.Keyring",
                                     "keyring.backends.null.Keyring"])
def test_environment_chosen_placeholder_is_refused(backend: str, tmp_path: Path) -> None:
    """The path a headless machine takes: keyring's own configuration picks a placeholder."""
    result = run_python("""
        from oauth_auth.secrets import KeyringSecrets
        from oauth_auth.errors import SecretsError
        try:
            KeyringSecrets().get_secret("a")
        except SecretsError as exc:
            print(exc)
    """, env={"PYTHON_KEYRING_BACKEND": backend, "XDG_CACHE_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "no usable keyring backend" in result.stdout
    assert "PYTHON_KEYRING_BACKEND" in result.stdout


@pytest.mark.keyring
def test_default_backend_is_the_secret_service(secret_service: SecretServiceBench) -> None:
    secrets = KeyringSecrets(service=unique_service())
    assert secrets.backend_name == "keyring.backends.SecretService.Keyring"
    assert secrets.is_plaintext is False
    assert secrets.max_value_length is None
    secrets.check()
    assert secrets.lock_paths == [
        Path(secret_service.env["XDG_RUNTIME_DIR"]) / "oauth-auth"
        / "keyring-keyring.backends.SecretService.Keyring.lock"
    ]


class PlaintextKeyring(DictBackend):
    """Named like keyrings.alt's plaintext backend."""


class AltFileKeyring(DictBackend):
    pass


class EncryptedKeyring(DictBackend):
    pass


AltFileKeyring.__module__ = "keyrings.alt.file"
EncryptedKeyring.__module__ = "keyrings.alt.file"


class TwoChainer(chainer.ChainerBackend):
    backends = [DictBackend(), PlaintextKeyring()]  # noqa: RUF012


@pytest.mark.parametrize(("backend", "plaintext"), [
    (DictBackend(), False), (PlaintextKeyring(), True), (AltFileKeyring(), True),
    (EncryptedKeyring(), False), (TwoChainer(), True),
])
def test_is_plaintext(backend: Any, plaintext: bool, tmp_path: Path) -> None:
    assert KeyringSecrets(backend=backend, lock_dir=tmp_path).is_plaintext is plaintext


@pytest.fixture
def no_keyring_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No PYTHON_KEYRING_BACKEND and an empty config root: keyring picks by itself."""
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config" / "python_keyring" / "keyringrc.cfg"


def test_a_plaintext_backend_keyring_picked_by_itself_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_keyring_config: Path
) -> None:
    backend = PlaintextKeyring()
    monkeypatch.setattr(keyring, "get_keyring", lambda: backend)
    secrets = KeyringSecrets(lock_dir=tmp_path)
    with pytest.raises(SecretsError) as info:
        secrets.set_secret("a", SECRET)
    assert "does not fall back to plaintext" in str(info.value)
    assert "PYTHON_KEYRING_BACKEND" in info.value.hint
    assert backend.data == {}  # nothing was written in clear
    with pytest.raises(SecretsError):
        secrets.get_secret("a")


@pytest.mark.parametrize("how", ["env", "keyringrc"])
def test_a_plaintext_backend_the_user_configured_is_used_with_a_warning(
    how: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_keyring_config: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = AltFileKeyring()
    monkeypatch.setattr(keyring, "get_keyring", lambda: backend)
    if how == "env":
        monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    else:
        no_keyring_config.parent.mkdir(parents=True)
        no_keyring_config.write_text("[backend]\ndefault-keyring=keyrings.alt.file.X\n")
    secrets = KeyringSecrets(service="svc", lock_dir=tmp_path)
    with caplog.at_level("WARNING", logger="oauth_auth"):
        secrets.set_secret("a", SECRET)
    assert backend.data == {("svc", "a"): SECRET}
    assert secrets.is_plaintext is True
    assert [r.getMessage() for r in caplog.records] == [
        "the keyring backend keyrings.alt.file.AltFileKeyring keeps secrets unencrypted on"
        " disk (it was configured explicitly, so it is used)"
    ]


def test_a_chainer_that_writes_to_a_real_keychain_first_is_not_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_keyring_config: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = TwoChainer()  # DictBackend first, a plaintext one behind it
    monkeypatch.setattr(keyring, "get_keyring", lambda: backend)
    secrets = KeyringSecrets(service="svc", lock_dir=tmp_path)
    with caplog.at_level("WARNING", logger="oauth_auth"):
        secrets.set_secret("a", SECRET)
    assert secrets.get_secret("a") == SECRET
    assert secrets.is_plaintext is True  # still reported
    (message,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "chains tests.unit.test_secrets_keyring.PlaintextKeyring" in message
    assert "only used if tests.support.keyring_fakes.DictBackend cannot store them" in message


def test_chainer_name_and_locks(tmp_path: Path) -> None:
    secrets = KeyringSecrets(backend=TwoChainer(), lock_dir=tmp_path)
    assert secrets.backend_name == (
        "tests.unit.test_secrets_keyring.TwoChainer[tests.support.keyring_fakes.DictBackend, "
        "tests.unit.test_secrets_keyring.PlaintextKeyring]"
    )
    assert [p.name for p in secrets.lock_paths] == [
        "keyring-tests.support.keyring_fakes.DictBackend.lock",
        "keyring-tests.unit.test_secrets_keyring.PlaintextKeyring.lock",
    ]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="timeout"):
        KeyringSecrets(timeout=0)
    with pytest.raises(ValueError, match="max_value_length"):
        KeyringSecrets(max_value_length=5)
    with pytest.raises(ValueError, match="service"):
        KeyringSecrets(service="")


# --------------------------------------------------------------------------------------
# Errors


def dbus_error() -> DBusErrorResponse:
    call = new_method_call(DBusAddress("/x", "org.example", "org.example"), "Method")
    call.header.serial = 1
    return DBusErrorResponse(new_error(call, "org.freedesktop.DBus.Error.Failed", "s", ("no",)))


ERRORS: list[tuple[str, Callable[[], BaseException], str]] = [
    ("KeyringLocked", lambda: keyring.errors.KeyringLocked("Failed to unlock!"), "locked"),
    ("InitError", lambda: keyring.errors.InitError("Failed to create"), "not available"),
    ("NoKeyringError", lambda: keyring.errors.NoKeyringError("none"), "not available"),
    ("PasswordDeleteError", lambda: keyring.errors.PasswordDeleteError("denied"), "failed"),
    ("KeyringError", lambda: keyring.errors.KeyringError("generic"), "failed"),
    ("ItemNotFoundException", lambda: ss_errors.ItemNotFoundException("gone"), "missing"),
    ("SecretServiceNotAvailableException",
     lambda: ss_errors.SecretServiceNotAvailableException("no daemon"), "not reachable"),
    ("LockedException", lambda: ss_errors.LockedException("locked"), "locked"),
    ("DBusErrorResponse", dbus_error, "D-Bus error"),
    ("FileNotFoundError", lambda: FileNotFoundError(2, "No such file or directory"),
     "not reachable"),
    ("ConnectionRefusedError", lambda: ConnectionRefusedError(111, "refused"), "not reachable"),
    ("ConnectionResetError", lambda: ConnectionResetError(104, "reset"), "not reachable"),
    ("OSError", lambda: OSError(5, "I/O error"), "not reachable"),
    ("RuntimeError", lambda: RuntimeError("unexpected"), "failed"),
]


def frame_locals_mention(exc: BaseException | None, value: str) -> bool:
    while exc is not None:
        tb = exc.__traceback__
        while tb is not None:
            if any(value in repr(v) for v in tb.tb_frame.f_locals.values()):
                return True
            tb = tb.tb_next
        exc = exc.__cause__
    return False


@pytest.mark.parametrize(("error_name", "make_error", "says"), ERRORS,
                         ids=[e[0] for e in ERRORS])
@pytest.mark.parametrize("op", ["get", "set", "delete"])
def test_backend_errors_become_secrets_errors(
    error_name: str, make_error: Callable[[], BaseException], says: str, op: str,
    tmp_path: Path,
) -> None:
    raised: list[BaseException] = []

    def make() -> BaseException:
        raised.append(make_error())
        return raised[-1]

    backend = RaisingBackend(make, ops=(op,))
    backend.data[("svc", "name")] = "stored"
    secrets = KeyringSecrets(service="svc", backend=backend, lock_dir=tmp_path)
    call = {"get": lambda: secrets.get_secret("name"),
            "set": lambda: secrets.set_secret("name", SECRET),
            "delete": lambda: secrets.delete_secret("name")}[op]
    with pytest.raises(SecretsError) as excinfo:
        call()
    err = excinfo.value
    assert err.__cause__ is raised[-1]
    assert type(err.__cause__).__name__ == error_name
    text = str(err)
    assert says in text
    assert "'name'" in text
    assert {"get": "read", "set": "write", "delete": "delete"}[op] in text
    assert SECRET not in text
    assert SECRET not in "".join(traceback.format_exception(err))
    assert not frame_locals_mention(err.__cause__, SECRET)


@pytest.mark.parametrize("make_error", [
    lambda: keyring.errors.PasswordDeleteError("No such password!"),
    lambda: ss_errors.ItemNotFoundException("Item does not exist!"),
], ids=["PasswordDeleteError", "ItemNotFoundException"])
def test_deleting_a_missing_entry_is_not_an_error(make_error: Callable[[], BaseException],
                                                  tmp_path: Path) -> None:
    secrets = KeyringSecrets(backend=RaisingBackend(make_error, ops=("delete",)),
                             lock_dir=tmp_path)
    secrets.delete_secret("never-stored")


def test_error_quoting_the_value_is_redacted(tmp_path: Path) -> None:
    backend = RaisingBackend(lambda: ValueError(f"cannot store {SECRET!r} here"), ops=("set",))
    secrets = KeyringSecrets(backend=backend, lock_dir=tmp_path)
    with pytest.raises(SecretsError) as excinfo:
        secrets.set_secret("name", SECRET)
    assert SECRET not in str(excinfo.value)
    assert excinfo.value.__cause__ is None
    assert SECRET not in "".join(traceback.format_exception(excinfo.value))


# --------------------------------------------------------------------------------------
# Timeouts


def test_a_blocked_backend_times_out(tmp_path: Path) -> None:
    backend = BlockingBackend()
    secrets = KeyringSecrets(backend=backend, timeout=0.3, lock_dir=tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(SecretsError, match=r"timed out after 0\.3 s") as excinfo:
            secrets.get_secret("a")
        assert 0.25 < time.monotonic() - started < 2.0
        assert "the keyring did not answer" in str(excinfo.value)
        assert "unlock" in str(excinfo.value)

        # The first call still holds the keyring: the next one times out waiting its turn,
        # and being abandoned before it began, never runs.
        started = time.monotonic()
        with pytest.raises(SecretsError, match=r"timed out.*this one was not made") as excinfo:
            secrets.set_secret("k", SECRET)
        assert time.monotonic() - started < 2.0
        assert SECRET not in str(excinfo.value)
    finally:
        backend.release.set()
    assert secrets.get_secret("k") is None
    assert ("set", "k") not in backend.calls
    secrets.set_secret("k", "v")
    assert secrets.get_secret("k") == "v"


def test_a_write_that_times_out_says_it_may_still_happen(tmp_path: Path) -> None:
    backend = BlockingBackend()
    backend.release.set()
    secrets = KeyringSecrets(backend=backend, timeout=0.3, lock_dir=tmp_path)
    secrets.set_secret("k", "old")
    backend.release.clear()
    try:
        with pytest.raises(SecretsError, match="may still complete"):
            secrets.set_secret("k", "new")
    finally:
        backend.release.set()


def test_the_lock_serializes_processes(tmp_path: Path) -> None:
    """A call waits while another process holds the backend's lock file, then proceeds."""
    secrets = KeyringSecrets(backend=DictBackend(), timeout=10, lock_dir=tmp_path)
    (lock_path,) = secrets.lock_paths
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, filelock
            with filelock.FileLock({str(lock_path)!r}):
                print("locked", flush=True)
                sys.stdin.readline()  # hold the lock until told to let go
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "locked"
        short = KeyringSecrets(backend=DictBackend(), timeout=0.2, lock_dir=tmp_path)
        # Whichever notices first, the worker or the waiting caller, names the lock.
        with pytest.raises(SecretsError, match=r"another (process|keyring call)"):
            short.get_secret("a")
        release = threading.Timer(0.3, lambda: holder.stdin.close() if holder.stdin else None)
        release.start()
        started = time.monotonic()
        secrets.set_secret("a", "v")  # waits for the other process
        assert time.monotonic() - started >= 0.25
        release.join()
    finally:
        if not holder.stdin.closed:
            holder.stdin.close()
        holder.wait(10)
        holder.stdout.close()
    assert secrets.get_secret("a") == "v"


def test_lock_file_and_directory_modes(tmp_path: Path) -> None:
    old_umask = os.umask(0)
    try:
        lock_dir = tmp_path / "locks" / "nested"
        secrets = KeyringSecrets(backend=DictBackend(), lock_dir=lock_dir)
        secrets.set_secret("a", "v")
    finally:
        os.umask(old_umask)
    (lock_path,) = secrets.lock_paths
    assert lock_path.name == "keyring-tests.support.keyring_fakes.DictBackend.lock"
    assert lock_path.stat().st_mode & 0o777 == 0o600
    assert lock_dir.stat().st_mode & 0o777 == 0o700


@pytest.mark.keyring
def test_default_lock_file_mode(secret_service: SecretServiceBench) -> None:
    secrets = KeyringSecrets(service=unique_service())
    secrets.set_secret("a", "v")
    (lock_path,) = secrets.lock_paths
    assert lock_path.stat().st_mode & 0o777 == 0o600
    assert lock_path.parent.stat().st_mode & 0o777 == 0o700


def test_unusable_lock_directory(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    secrets = KeyringSecrets(backend=DictBackend(), lock_dir=not_a_dir / "locks")
    with pytest.raises(SecretsError, match="cannot use the keyring lock file") as excinfo:
        secrets.set_secret("a", SECRET)
    assert "lock_dir" in str(excinfo.value)
    assert isinstance(excinfo.value.__cause__, OSError)


def test_default_lock_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_lock_dir() == runtime / "oauth-auth"
    runtime.chmod(0o755)  # not private: not a runtime dir we trust
    assert default_lock_dir() == tmp_path / "cache" / "oauth-auth" / "locks"
    monkeypatch.delenv("XDG_RUNTIME_DIR")  # no warning either (filterwarnings = error)
    assert default_lock_dir() == tmp_path / "cache" / "oauth-auth" / "locks"


def test_machinery_overhead_is_small(tmp_path: Path) -> None:
    backend = DictBackend()
    secrets = KeyringSecrets(backend=backend, lock_dir=tmp_path)

    def median_us(call: Callable[[], object], n: int = 200) -> float:
        times = []
        for _ in range(n):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1e6

    raw = median_us(lambda: backend.get_password("oauth-auth", "a"))
    wrapped = median_us(lambda: secrets.get_secret("a"))
    # Measured here: ~150 us (two backend lookups, thread hand-off, lock file).
    assert wrapped - raw < 3000, f"{wrapped:.0f} us per call"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads (3.12+)
def test_usable_after_fork(tmp_path: Path) -> None:
    secrets = KeyringSecrets(backend=DictBackend(), timeout=2, lock_dir=tmp_path)
    secrets.set_secret("a", "v")  # the worker pool now has a thread: the child has none
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            ok = secrets.get_secret("a") == "v"
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# --------------------------------------------------------------------------------------
# Split values


def test_stale_parts_are_removed_fake(tmp_path: Path) -> None:
    backend = DictBackend()
    secrets = KeyringSecrets(service="svc", backend=backend, max_value_length=32,
                             lock_dir=tmp_path)
    secrets.set_secret("n", "a" * 100)  # 4 parts
    assert backend.data[("svc", "n")] == SPLIT_PREFIX + "4"
    assert backend.usernames("svc") == {"n", "n.part1", "n.part2", "n.part3", "n.part4"}
    secrets.set_secret("n", "b" * 40)  # 2 parts
    assert backend.usernames("svc") == {"n", "n.part1", "n.part2"}
    secrets.set_secret("n", "short")
    assert backend.usernames("svc") == {"n"}
    assert secrets.get_secret("n") == "short"


@pytest.mark.keyring
def test_stale_parts_are_removed_secret_service(secret_service: SecretServiceBench) -> None:
    service = unique_service()
    raw = secret_service.keyring_backend()
    secrets = KeyringSecrets(service=service, max_value_length=64)
    value = "".join(chr(0x41 + i % 26) for i in range(1000))
    secrets.set_secret("n", value)
    assert raw.get_password(service, "n") == SPLIT_PREFIX + "16"
    assert raw.get_password(service, part_name("n", 16)) == value[960:]
    assert secrets.get_secret("n") == value
    secrets.set_secret("n", value[:300])  # 5 parts
    assert raw.get_password(service, part_name("n", 5)) is not None
    assert [raw.get_password(service, part_name("n", i)) for i in range(6, 18)] == [None] * 12
    secrets.set_secret("n", "short")
    assert raw.get_password(service, "n") == "short"
    assert [raw.get_password(service, part_name("n", i)) for i in range(1, 6)] == [None] * 5
    secrets.set_secret("n", value)
    secrets.delete_secret("n")
    assert [raw.get_password(service, part_name("n", i)) for i in range(1, 18)] == [None] * 17
    assert raw.get_password(service, "n") is None


@pytest.mark.parametrize("header", [SPLIT_PREFIX + "3", SPLIT_PREFIX + "x", SPLIT_PREFIX])
def test_corrupt_split_entry(header: str, tmp_path: Path) -> None:
    backend = DictBackend()
    backend.data[("svc", "n")] = header
    backend.data[("svc", "n.part1")] = "only-one-part"
    secrets = KeyringSecrets(service="svc", backend=backend, lock_dir=tmp_path)
    with pytest.raises(SecretsError, match="corrupt") as excinfo:
        secrets.get_secret("n")
    assert "only-one-part" not in str(excinfo.value)
    secrets.set_secret("n", "repaired")
    assert secrets.get_secret("n") == "repaired"
    secrets.delete_secret("n")
    assert secrets.get_secret("n") is None


def test_windows_credential_manager_limit(tmp_path: Path) -> None:
    class WinVaultKeyring(DictBackend):
        pass

    backend = WinVaultKeyring()
    secrets = KeyringSecrets(service="svc", backend=backend, lock_dir=tmp_path)
    assert secrets.max_value_length == 1280
    jwt = "eyJ" + "a" * 3000
    secrets.set_secret("n", jwt)
    assert all(len(v) <= 1280 for v in backend.data.values())
    assert secrets.get_secret("n") == jwt


# --------------------------------------------------------------------------------------
# The real Secret Service: faults and concurrency

WORKER = """
import json, sys, time
from oauth_auth.secrets import KeyringSecrets
from oauth_auth.errors import SecretsError
service, index, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
start_at, lock = float(sys.argv[4]), sys.argv[5:] != ["nolock"]
secrets = KeyringSecrets(service=service, timeout=30, lock=lock)
ops, errors, wrong = 0, [], 0
while time.time() < start_at:
    time.sleep(0.005)
for r in range(rounds):
    own = f"{index}-{r}-" + "t" * 2000
    steps = [
        lambda: secrets.set_secret(f"worker-{index}", own),
        lambda: secrets.get_secret(f"worker-{index}") == own,
        lambda: secrets.set_secret("shared", f"{index}-{r}"),
        lambda: (secrets.get_secret("shared") or "").count("-") == 1,
    ]
    for step in steps:
        ops += 1
        try:
            if step() is False:
                wrong += 1
        except SecretsError as exc:
            errors.append(str(exc))
print(json.dumps({"ops": ops, "errors": errors, "wrong": wrong}))
"""


OVERLAP_WORKER = """
import sys
from oauth_auth.secrets import KeyringSecrets
from tests.support.keyring_fakes import OverlapDetectingBackend
marker, lock_dir, lock = sys.argv[1], sys.argv[2], sys.argv[3] == "lock"
backend = OverlapDetectingBackend(marker)
secrets = KeyringSecrets(backend=backend, lock_dir=lock_dir, lock=lock)
for i in range(40):
    secrets.get_secret("a")
print(backend.overlaps)
"""


@pytest.mark.parametrize("lock", [True, False], ids=["lock", "no-lock"])
def test_file_lock_serializes_eight_processes(lock: bool, tmp_path: Path) -> None:
    """8 processes call a backend that detects overlapping calls: none with the lock."""
    script = tmp_path / "overlap.py"
    script.write_text(OVERLAP_WORKER)
    marker = tmp_path / "busy"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(marker), str(tmp_path / "locks"),
             "lock" if lock else "nolock"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for _ in range(8)
    ]
    overlaps = 0
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        overlaps += int(out)
    if lock:
        assert overlaps == 0
    else:
        assert overlaps > 0  # the detector works: without the lock, calls do overlap


@pytest.mark.keyring
def test_eight_processes_hammering_the_secret_service(
    secret_service: SecretServiceBench, tmp_path: Path, record_property: Any,
) -> None:
    service = unique_service()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    daemon_pid = secret_service.daemon_pid
    rounds = 10
    start_at = time.time() + 1.0  # every process imported and waiting: they start together
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), service, str(i), str(rounds), str(start_at)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**secret_service.subprocess_env(), "PYTHONPATH": str(ROOT)},
        )
        for i in range(8)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    elapsed = time.monotonic() - started
    ops = sum(r["ops"] for r in results)
    errors = [e for r in results for e in r["errors"]]
    wrong = sum(r["wrong"] for r in results)
    figures = {"processes": 8, "ops": ops, "errors": len(errors), "wrong": wrong,
               "seconds": round(elapsed, 2), "daemon_alive": secret_service.daemon_alive()}
    record_property("keyring_concurrency", figures)
    print(f"keyring concurrency: {figures}")
    assert ops == 8 * rounds * 4
    assert errors == []
    assert wrong == 0
    # The daemon survived: same process, still on the bus, still answering.
    assert secret_service.daemon_pid == daemon_pid
    assert secret_service.daemon_alive()
    secrets = KeyringSecrets(service=service)
    assert secrets.get_secret("worker-7") == f"7-{rounds - 1}-" + "t" * 2000
    assert secrets.get_secret("shared") is not None


@pytest.mark.keyring
def test_daemon_stopped_and_restarted(secret_service: SecretServiceBench) -> None:
    secrets = KeyringSecrets(service=unique_service(), timeout=5)
    secrets.set_secret("kept", "across restarts")
    try:
        secret_service.stop_daemon()
        for call in (lambda: secrets.get_secret("kept"), lambda: secrets.set_secret("x", SECRET),
                     lambda: secrets.delete_secret("kept")):
            started = time.monotonic()
            with pytest.raises(SecretsError, match="not reachable") as excinfo:
                call()
            assert time.monotonic() - started < 3
            assert "DBUS_SESSION_BUS_ADDRESS" in str(excinfo.value)
            assert SECRET not in str(excinfo.value)
        del excinfo
        gc.collect()  # keyring's leaked D-Bus connections would warn here (they are closed)
    finally:
        secret_service.start_daemon()
    assert secrets.get_secret("kept") == "across restarts"


@pytest.mark.keyring
def test_daemon_killed(secret_service: SecretServiceBench) -> None:
    secrets = KeyringSecrets(service=unique_service(), timeout=5)
    secrets.set_secret("kept", "v")
    try:
        secret_service.kill_daemon()
        with pytest.raises(SecretsError, match="not reachable"):
            secrets.get_secret("kept")
    finally:
        secret_service.start_daemon()
    assert secrets.get_secret("kept") == "v"


@pytest.mark.keyring
def test_locked_collection(secret_service: SecretServiceBench) -> None:
    import secretstorage

    secrets = KeyringSecrets(service=unique_service(), timeout=5)
    secrets.set_secret("a", "v")
    try:
        with closing(secretstorage.dbus_init()) as conn:
            secretstorage.get_default_collection(conn).lock()
        with pytest.raises(SecretsError, match="locked") as excinfo:
            secrets.get_secret("a")
        # The kept connection reports it with secretstorage's own exception.
        assert isinstance(excinfo.value.__cause__, secretstorage.LockedException)
        assert "unlock" in str(excinfo.value)
        del excinfo
        gc.collect()
    finally:
        # Nobody can answer an unlock prompt here: a restart with the password unlocks it.
        secret_service.stop_daemon()
        secret_service.start_daemon()
    assert secrets.get_secret("a") == "v"


@pytest.mark.keyring
def test_threads_share_one_backend_lock(secret_service: SecretServiceBench) -> None:
    """Many threads, two providers (different services): all serialized, all correct."""
    first = KeyringSecrets(service=unique_service())
    second = KeyringSecrets(service=unique_service())
    errors: list[BaseException] = []

    def work(index: int) -> None:
        secrets = first if index % 2 else second
        try:
            for r in range(3):
                secrets.set_secret(f"t{index}", f"{index}.{r}")
                assert secrets.get_secret(f"t{index}") == f"{index}.{r}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert first.lock_paths == second.lock_paths


# --------------------------------------------------------------------------------------
# The Secret Service driver: one connection per process, keyring-compatible items


@pytest.mark.keyring
def test_items_are_interchangeable_with_keyrings_own(secret_service: SecretServiceBench) -> None:
    import secretstorage

    service = unique_service()
    raw = secret_service.keyring_backend()
    secrets = KeyringSecrets(service=service)
    raw.set_password(service, "from-keyring", "k-value")
    assert secrets.get_secret("from-keyring") == "k-value"
    secrets.set_secret("from-us", "our-value")
    assert raw.get_password(service, "from-us") == "our-value"
    secrets.set_secret("from-keyring", "replaced")  # replaces keyring's item, no duplicate
    assert raw.get_password(service, "from-keyring") == "replaced"
    with closing(secretstorage.dbus_init()) as conn:
        collection = secretstorage.get_default_collection(conn)
        items = list(collection.search_items({"service": service, "username": "from-us"}))
        assert len(items) == 1
        assert items[0].get_label() == f"Password for 'from-us' on '{service}'"
        assert items[0].get_attributes()["application"] == "Python keyring library"
        assert len(list(collection.search_items({"service": service,
                                                  "username": "from-keyring"}))) == 1
    secrets.delete_secret("from-keyring")
    assert raw.get_password(service, "from-keyring") is None


@pytest.mark.keyring
def test_one_connection_per_process(secret_service: SecretServiceBench,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import secretstorage

    opened = 0
    real_dbus_init = secretstorage.dbus_init

    def counting_dbus_init() -> Any:
        nonlocal opened
        opened += 1
        return real_dbus_init()

    monkeypatch.setattr(secretstorage, "dbus_init", counting_dbus_init)
    secrets = KeyringSecrets(service=unique_service())
    for i in range(10):
        secrets.set_secret(f"n{i}", "v")
        assert secrets.get_secret(f"n{i}") == "v"
        secrets.delete_secret(f"n{i}")
        secrets.delete_secret(f"n{i}")  # a missing entry is an answer, not a broken connection
    assert opened == 1
    secrets.close()
    assert secrets.get_secret("n0") is None
    assert opened == 2
    secrets.close()


@pytest.mark.keyring
def test_connection_closed_when_provider_is_collected(secret_service: SecretServiceBench) -> None:
    secrets = KeyringSecrets(service=unique_service())
    secrets.set_secret("a", "v")
    del secrets
    gc.collect()  # an unclosed socket would be a ResourceWarning, an error here


@pytest.mark.keyring
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads (3.12+)
def test_fork_gets_its_own_connection(secret_service: SecretServiceBench) -> None:
    secrets = KeyringSecrets(service=unique_service(), timeout=5)
    secrets.set_secret("a", "parent")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            ok = secrets.get_secret("a") == "parent"
            secrets.set_secret("b", "child")
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert secrets.get_secret("a") == "parent"
    assert secrets.get_secret("b") == "child"
