"""The one lock: where every lock file lives, and how it is held (oauth_auth._locking)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from oauth_auth import KeyringSecrets, LockTimeoutError, MemorySecrets, OAuthTokenSource, OIDCParams
from oauth_auth._config import Config
from oauth_auth._locking import (
    LOCK_DIR_ENV,
    FileLock,
    config_lock_path,
    default_lock_dir,
    keyring_lock_path,
    lock_path,
    process_lock,
)
from oauth_auth.errors import ConfigError
from tests.support.fakes import ISSUER, FakeClock, FakeProvider
from tests.support.keyring_fakes import DictBackend


def test_every_lock_file_the_library_creates_is_under_the_override(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The README's promise about OAUTH_AUTH_LOCK_DIR: the refresh lock, the keyring lock
    and the config lock all go there, and nowhere else."""
    override, runtime, cache = tmp_path / "override", tmp_path / "run", tmp_path / "cache"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv(LOCK_DIR_ENV, str(override))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    config_file = tmp_path / "conf" / "config.json"

    idp = FakeProvider()
    secrets = KeyringSecrets(backend=DictBackend())  # no lock_dir: the default rule
    secrets.set_secret("K", idp.seed("rt-0"))
    config = Config(config_file)

    def persist(key: str, expiry: object) -> None:
        config.set_entry("profiles", "work", {"cached_refresh_token_ref": key})

    source = OAuthTokenSource(OIDCParams(ISSUER, "cli"), key_provider=lambda: "K",
                              secrets_provider=secrets, clock=FakeClock(),
                              transport=idp.transport(), max_retries=0,
                              config_persister=persist)
    assert source.token() == "at-1"  # a refresh: under the refresh lock, persisted

    assert config.entry("profiles", "work") == {"cached_refresh_token_ref": "K"}
    names = sorted(p.name for p in override.iterdir())
    assert names == sorted([
        lock_path("K", override).name,
        keyring_lock_path("tests.support.keyring_fakes.DictBackend", override).name,
        config_lock_path(config_file, override).name,
    ])
    assert config.lock_path.parent == override
    assert secrets.lock_paths == [override / names[names.index(secrets.lock_paths[0].name)]]
    # Nothing anywhere else: not the runtime or cache directory, not next to the config.
    assert list(runtime.iterdir()) == []
    assert not cache.exists()
    assert sorted(p.name for p in config_file.parent.iterdir()) == ["config.json"]
    for path in override.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600


def test_default_lock_dir_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.delenv(LOCK_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_lock_dir() == runtime / "oauth-auth"
    runtime.chmod(0o755)  # not private: not a runtime dir we trust
    assert default_lock_dir() == tmp_path / "cache" / "oauth-auth" / "locks"
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "mine"))
    assert default_lock_dir() == tmp_path / "mine"


def test_lock_file_names_hash_what_could_be_unsafe(tmp_path: Path) -> None:
    assert "/" not in lock_path("a/../b", tmp_path).name
    assert keyring_lock_path("x.y/Z K", tmp_path).name == "keyring-x.y_Z_K.lock"
    assert config_lock_path("a.json", tmp_path) == config_lock_path(
        os.path.abspath("a.json"), tmp_path)
    assert config_lock_path("a.json", tmp_path) != config_lock_path("b.json", tmp_path)


def test_two_holders_exclude_each_other_even_in_one_process(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    first, second = FileLock(path), FileLock(path)
    assert first.acquire(0)
    assert second.acquire(0.05) is False
    cancelled = []
    assert second.acquire(-1, cancel=lambda: not cancelled.append(1)) is False
    assert len(cancelled) == 1
    first.release()
    assert second.acquire(0)
    second.release()


def _hold(path: str, ready: multiprocessing.synchronize.Event, seconds: float) -> None:
    lock = FileLock(path)
    lock.acquire(-1)
    ready.set()
    time.sleep(seconds)
    os._exit(0)  # dies holding it: the OS releases it


def test_process_lock_times_out_with_a_typed_error_then_outlives_a_dead_holder(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locks" / "refresh-x.lock"
    path.parent.mkdir(mode=0o700)
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(path), ready, 1.0))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(LockTimeoutError) as info, process_lock(path, 0.1):
            pass
        assert info.value.path == str(path)
        assert str(path) in str(info.value)
        assert "lock_timeout" in info.value.hint
        started = time.monotonic()
        with process_lock(path, 30):
            assert time.monotonic() - started < 30
    finally:
        holder.join(30)
    assert path.stat().st_mode & 0o777 == 0o600


def test_process_lock_names_what_it_locks(tmp_path: Path) -> None:
    path = tmp_path / "config-x.lock"
    holder = FileLock(path)
    assert holder.acquire(0)
    try:
        with pytest.raises(LockTimeoutError, match="config lock") as info, process_lock(
                path, 0.05, what="config lock", hint="stop it"):
            pass
        assert info.value.hint == "stop it"
    finally:
        holder.release()


def test_an_unusable_lock_directory_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create the refresh lock file") as info, \
            process_lock(blocker / "refresh-x.lock", 1):
        pass
    assert LOCK_DIR_ENV in info.value.hint


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    path = tmp_path / "t.lock"
    inside: list[int] = []
    overlaps = []

    def work() -> None:
        for _ in range(20):
            with process_lock(path, 30):
                inside.append(1)
                overlaps.append(len(inside))
                time.sleep(0.0005)
                inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(overlaps) == 80
    assert max(overlaps) == 1


def test_memory_secrets_take_no_keyring_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             ) -> None:
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "l"))
    MemorySecrets().set_secret("a", "b")
    assert not (tmp_path / "l").exists()


def test_the_lock_directory_is_created_0700_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with process_lock(tmp_path / "new" / "refresh-x.lock", 1):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701, 0o777, 0o1777])
def test_a_lock_directory_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    with pytest.raises(ConfigError, match="open to other users") as info, \
            process_lock(shared / "refresh-x.lock", 1):
        pass
    assert f"chmod 700 {shared}" in info.value.hint
    assert not (shared / "refresh-x.lock").exists()


def test_a_planted_symlink_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700)
    (locks / "refresh-x.lock").symlink_to(victim)
    with pytest.raises(ConfigError, match="cannot create the refresh lock file"), \
            process_lock(locks / "refresh-x.lock", 1):
        pass
    assert victim.read_text() == "precious"
