"""Faults of the local backends: the Secret Service stopped, killed or locked mid-run, and
the lock and config files on a directory that is not one, is read-only or is full.

The Secret Service is the bench's private gnome-keyring (tests/support/secret_service.py);
"read-only" and "full" are a private tmpfs (root or CAP_SYS_ADMIN; skipped elsewhere).
Note that the tests run as root, where chmod 0500 does not stop writes: a read-only mount
is the honest way to get EROFS.
"""

from __future__ import annotations

import gc
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from oauth_auth import (
    ConfigError,
    KeyringSecrets,
    MemorySecrets,
    OAuthTokenSource,
    OIDCParams,
    SecretsError,
)
from tests.reliability.conftest import (
    Figures,
    Session,
    SmallFs,
    assert_typed,
    logins,
    recover,
    seed,
    timed,
)
from tests.support.fakes import FakeClock
from tests.support.idp import IdP, refresh_count

pytestmark = pytest.mark.idp

KEYRING_TIMEOUT = 3.0


def keyring_session(idp: IdP, tmp_path: Path) -> Session:
    store = KeyringSecrets(service=f"oauth-auth-rel-{uuid.uuid4().hex[:8]}",
                           timeout=KEYRING_TIMEOUT, lock_dir=tmp_path / "keyring-locks")
    return seed(idp, store, tmp_path)


def collect() -> None:
    """keyring's SecretService backend leaks a D-Bus connection per failed call; the
    library closes them, and a collection here would warn (filterwarnings=error) if not."""
    gc.collect()


# ------------------------------------------------------------------ the Secret Service


@pytest.mark.keyring
def test_secret_service_stopped_before_the_call(real_idp: IdP, tmp_path: Path, figures: Figures,
                                                secret_service: Any) -> None:
    session = keyring_session(real_idp, tmp_path)
    source = session.source()
    try:
        secret_service.stop_daemon()
        exc, elapsed = timed(source.token)
        assert_typed(exc, SecretsError, "not reachable")
        assert elapsed < KEYRING_TIMEOUT
        assert refresh_count(real_idp.counts()) == 0  # nothing spent while blind
        del exc
        collect()
    finally:
        secret_service.start_daemon()
    assert session.stored() == session.refresh_token
    recover(session, source)
    figures.add("secrets backend gone (Secret Service stopped)",
                f"SecretsError in {elapsed:.2f} s, nothing refreshed; after restart the"
                " next call refreshes, no login")


@pytest.mark.keyring
def test_secret_service_stopped_mid_run(real_idp: IdP, tmp_path: Path, figures: Figures,
                                        secret_service: Any) -> None:
    """A long-running process whose keyring goes away: it serves its still-valid token
    while it can, then reports the keyring, then resumes when the keyring is back."""
    session = keyring_session(real_idp, tmp_path)
    clock = FakeClock(time.time())
    source = session.source(clock=clock)
    first = source.token()
    try:
        secret_service.stop_daemon()
        clock.advance(3600 - 10)  # inside the 30 s window: a refresh is due but can wait
        assert source.token() == first  # served, with a warning, no error
        clock.advance(20)  # expired: now the keyring is needed
        exc, elapsed = timed(source.token)
        assert_typed(exc, SecretsError, "not reachable")
        assert elapsed < KEYRING_TIMEOUT
        del exc
        collect()
    finally:
        secret_service.start_daemon()
    second = source.token()
    assert second != first
    assert session.active(second)
    assert logins(real_idp) == 0
    assert refresh_count(real_idp.counts(), "invalid_grant") == 0
    figures.add("secrets backend gone (Secret Service stopped)",
                "mid-run: valid token served until expiry, then SecretsError; next call"
                " after restart refreshes")


class StopAtWrite:
    """KeyringSecrets whose first write of the refresh token stops the daemon first:
    the keyring disappears after the provider answered, before the new token is stored."""

    def __init__(self, inner: KeyringSecrets, key: str, bench: Any) -> None:
        self.inner, self.key, self.bench = inner, key, bench
        self.tripped = False

    def get_secret(self, name: str) -> str | None:
        return self.inner.get_secret(name)

    def set_secret(self, name: str, value: str) -> None:
        if name == self.key and not self.tripped:
            self.tripped = True
            self.bench.stop_daemon()
        self.inner.set_secret(name, value)

    def delete_secret(self, name: str) -> None:
        self.inner.delete_secret(name)


@pytest.mark.keyring
def test_secret_service_gone_between_the_answer_and_the_write(
    real_idp: IdP, tmp_path: Path, figures: Figures, secret_service: Any
) -> None:
    session = keyring_session(real_idp, tmp_path)
    store = StopAtWrite(session.store, session.key, secret_service)
    clock = FakeClock(time.time())
    source = OAuthTokenSource(OIDCParams(real_idp.issuer, real_idp.client_id),
                              key_provider=lambda: session.key, secrets_provider=store,
                              clock=clock, lock_dir=tmp_path / "locks", max_retries=1)
    try:
        first = source.token()  # the provider rotated; the write failed; token served
        assert store.tripped
        assert session.active(first)
    finally:
        secret_service.start_daemon()
    collect()
    assert session.stored() == session.refresh_token  # the spent one is what is stored
    clock.advance(3600)
    second = source.token()  # must refresh with the new token it kept, and store it
    assert session.active(second)
    counts = real_idp.counts()
    assert refresh_count(counts, "invalid_grant") == 0
    assert refresh_count(counts) == 2
    assert logins(real_idp) == 0
    stored = session.stored()
    assert stored is not None
    assert session.active(stored)
    figures.add("secrets backend gone between the answer and the write",
                "token served; the rotated refresh token is kept in memory and stored at"
                " the next refresh: session kept")


@pytest.mark.keyring
def test_secret_service_locked(real_idp: IdP, tmp_path: Path, figures: Figures,
                               secret_service: Any) -> None:
    from contextlib import closing

    import secretstorage

    session = keyring_session(real_idp, tmp_path)
    source = session.source()
    try:
        with closing(secretstorage.dbus_init()) as conn:
            secretstorage.get_default_collection(conn).lock()
        exc, elapsed = timed(source.token)
        assert_typed(exc, SecretsError, "locked")
        assert "unlock" in exc.hint
        assert elapsed < KEYRING_TIMEOUT
        del exc
        collect()
    finally:
        # Nobody can answer an unlock prompt here: a restart with the password unlocks it.
        secret_service.stop_daemon()
        secret_service.start_daemon()
    assert session.stored() == session.refresh_token
    recover(session, source)
    figures.add("secrets backend locked", "SecretsError saying to unlock, nothing refreshed;"
                " next call after unlocking refreshes")


@pytest.mark.keyring
def test_secret_service_killed(real_idp: IdP, tmp_path: Path, figures: Figures,
                               secret_service: Any) -> None:
    session = keyring_session(real_idp, tmp_path)
    source = session.source()
    try:
        secret_service.kill_daemon()
        exc, elapsed = timed(source.token)
        assert_typed(exc, SecretsError, "not reachable")
        assert elapsed < KEYRING_TIMEOUT
        del exc
        collect()
    finally:
        secret_service.start_daemon()
    recover(session, source)
    figures.add("secrets backend gone (Secret Service killed -9)",
                "SecretsError, nothing refreshed; next call after restart refreshes")


# ------------------------------------------------------------------ the lock directory


def test_lock_dir_is_not_a_directory(session: Session, figures: Figures) -> None:
    blocker = session.tmp / "blocker"
    blocker.write_text("a file where the lock directory should be")
    source = session.source(lock_dir=blocker / "locks")

    exc, elapsed = timed(source.token)

    assert_typed(exc, ConfigError, "cannot create the refresh lock file", str(blocker))
    assert "lock_dir" in exc.hint
    assert elapsed < 0.5
    assert refresh_count(session.idp.counts()) == 0
    assert session.stored() == session.refresh_token
    blocker.unlink()
    recover(session, source)
    figures.add("lock directory unusable (not a directory)",
                "ConfigError naming the file, hint lock_dir/$OAUTH_AUTH_LOCK_DIR; session kept")


def test_lock_dir_read_only(session: Session, figures: Figures, small_fs: SmallFs) -> None:
    source = session.source(lock_dir=small_fs.path / "locks")
    small_fs.remount("ro")

    exc, _ = timed(source.token)

    assert_typed(exc, ConfigError, "cannot create the refresh lock file", "Read-only")
    assert session.stored() == session.refresh_token
    small_fs.remount("rw")
    recover(session, source)
    assert (small_fs.path / "locks").stat().st_mode & 0o777 == 0o700
    figures.add("lock directory read-only (EROFS)", "ConfigError with a hint; session kept")


def test_lock_dir_on_a_full_disk(session: Session, figures: Figures,
                                 small_fs: SmallFs) -> None:
    (small_fs.path / "locks").mkdir(mode=0o700)
    source = session.source(lock_dir=small_fs.path / "locks")
    small_fs.fill()

    exc, _ = timed(source.token)

    assert_typed(exc, ConfigError, "cannot create the refresh lock file",
                 "No space left on device")
    assert "free some disk space" in exc.hint
    assert session.stored() == session.refresh_token
    small_fs.empty()
    recover(session, source)
    figures.add("full disk (lock file, ENOSPC)", "ConfigError, hint to free space; session"
                " kept")


# ------------------------------------------------------------------ the config file


def config_session(idp: IdP, tmp_path: Path,
                   config_path: Path) -> tuple[Any, MemorySecrets, str]:
    """A registry profile whose config persister writes to `config_path`."""
    from oauth_auth.profiles import REGISTRY, open_session

    store = MemorySecrets()
    url = "https://registry.example.test"
    opened = open_session(REGISTRY, url, issuer=idp.issuer, client_id=idp.client_id,
                          config_path=str(config_path), secrets_provider=store,
                          interactive=False, lock_dir=tmp_path / "locks")
    seeded = seed(idp, opened.secrets, tmp_path, key=opened.key)  # scoped as ToolHive does
    return opened, store, seeded.refresh_token


def test_config_path_under_a_file_is_a_config_error(real_idp: IdP, tmp_path: Path,
                                                   figures: Figures) -> None:
    (tmp_path / "blocker").write_text("x")
    path = tmp_path / "blocker" / "config.json"
    exc, _ = timed(lambda: config_session(real_idp, tmp_path, path))
    assert_typed(exc, ConfigError, "cannot read the config file", str(path))
    figures.add("config file unusable (not a directory)",
                "ConfigError naming the file, hint $OAUTH_AUTH_CONFIG")


@pytest.mark.parametrize("fault", ["read-only", "full"])
def test_config_file_cannot_be_written(real_idp: IdP, tmp_path: Path, figures: Figures,
                                       fault: str, small_fs: SmallFs) -> None:
    """The config persister fails after a rotation: the token is still served and the
    rotated refresh token stored (only the ref/expiry bookkeeping is late); a direct
    config write says why it failed; the old config file is never damaged."""
    path = small_fs.path / "config.json"
    original = {"version": 1, "profiles": {}, "registries": {"keep": {"issuer": "x"}},
                "llm_gateways": {}}
    path.write_text(json.dumps(original))
    path.chmod(0o600)
    opened, _, seeded = config_session(real_idp, tmp_path, path)
    if fault == "full":
        small_fs.fill()
    else:
        small_fs.remount("ro")

    token = opened.source.token()  # the persister fails; the token does not
    assert token
    stored = opened.secrets.get_secret(opened.key)
    assert stored is not None
    assert stored != seeded  # rotated, and stored before the persister ran

    from oauth_auth._config import Config

    exc, _ = timed(lambda: Config(str(path)).set_entry("registries", "other", {"issuer": "y"}))
    assert_typed(exc, ConfigError, "cannot")
    assert json.loads(path.read_text()) == original  # atomic: never half-written

    if fault == "full":
        small_fs.empty()
    else:
        small_fs.remount("rw")
    opened.source.invalidate()
    opened.source.token()  # the fault cleared: the next rotation persists the ref
    entry = Config(str(path)).entry("registries", "https://registry.example.test")
    assert entry is not None
    assert entry["cached_refresh_token_ref"] == opened.key
    assert (path.stat().st_mode & 0o777) == 0o600
    assert stored not in path.read_text()
    assert logins(real_idp) == 0
    figures.add(f"config file unwritable ({fault})",
                "token served and refresh token stored; persister failure logged; a direct"
                " write is a ConfigError; the old file intact; next rotation persists")
