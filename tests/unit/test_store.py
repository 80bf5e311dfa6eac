"""The session store (oauth_auth._store): write order, compare-and-set, conditional
deletes, the pending rotation, and the lock as a pluggable part."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from oauth_auth import LockTimeoutError, MemorySecrets, SecretsError
from oauth_auth._store import SecretsSessionStore, StoredRefresh
from oauth_auth._token import Token, decode_at_entry

KEY = "TEST_KEY"
AT = KEY + "_AT"
EXPIRY = 1_900_000_000.0


class Recording(MemorySecrets):
    """MemorySecrets that records every operation, and can refuse writes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.refuse: set[str] = set()
        self.fail_reads = False

    def get_secret(self, name: str) -> str | None:
        if self.fail_reads:
            raise SecretsError("the backend is locked")
        self.calls.append(("get", name))
        return super().get_secret(name)

    def set_secret(self, name: str, value: str) -> None:
        self.calls.append(("set", name))
        if name in self.refuse:
            raise SecretsError("the backend is read-only")
        super().set_secret(name, value)

    def delete_secret(self, name: str) -> None:
        self.calls.append(("delete", name))
        if name in self.refuse:
            raise SecretsError("the backend is read-only")
        super().delete_secret(name)


class Capable(Recording):
    """A provider with the fleet capabilities: its own lock, compare-and-set/delete."""

    def __init__(self) -> None:
        super().__init__()
        self.locks: list[tuple[str, float]] = []
        self._mutex = threading.Lock()

    @contextlib.contextmanager
    def lock(self, name: str, *, timeout: float,
             done: Callable[[], bool] | None = None) -> Iterator[None]:
        self.locks.append((name, timeout))
        if not self._mutex.acquire(timeout=timeout if timeout > 0 else 0.001):
            raise LockTimeoutError(f"lease of {name} is held")
        try:
            yield
        finally:
            self._mutex.release()

    def compare_and_set(self, name: str, expected: str | None, value: str) -> bool:
        self.calls.append(("cas", name))
        if super().get_secret(name) != expected:
            return False
        super().set_secret(name, value)
        return True

    def compare_and_delete(self, name: str, expected: str) -> bool:
        self.calls.append(("cad", name))
        if super().get_secret(name) != expected:
            return False
        super().delete_secret(name)
        return True


def token(access: str = "at-new", refresh: str | None = "rt-new") -> Token:
    return Token(access, EXPIRY, refresh)


def make(secrets: Any, tmp_path: Path, persisted: list[tuple[str, datetime]] | None = None
         ) -> SecretsSessionStore:
    persister = None if persisted is None else (lambda k, e: persisted.append((k, e)))
    return SecretsSessionStore(secrets, KEY, lock_dir=tmp_path, persister=persister)


def test_save_writes_refresh_token_then_access_token_then_persister(tmp_path: Path) -> None:
    secrets = Recording()
    order: list[str] = []
    persisted: list[tuple[str, datetime]] = []

    def persister(key: str, expiry: datetime) -> None:
        order.append("persister")
        persisted.append((key, expiry))

    store = SecretsSessionStore(secrets, KEY, lock_dir=tmp_path, persister=persister)
    assert store.save(token(), previous="rt-old") is True
    order[:0] = [name for op, name in secrets.calls if op == "set"]
    assert order == [KEY, AT, "persister"]
    assert secrets.get_secret(KEY) == "rt-new"
    cached = decode_at_entry(secrets.get_secret(AT))
    assert cached is not None
    assert cached.access_token == "at-new"
    assert cached.expiry == EXPIRY
    assert persisted == [(KEY, datetime.fromtimestamp(EXPIRY, tz=timezone.utc))]


def test_a_routine_refresh_writes_only_the_access_token(tmp_path: Path) -> None:
    secrets = Recording()
    persisted: list[tuple[str, datetime]] = []
    store = make(secrets, tmp_path, persisted)
    assert store.save(token(refresh="rt-same"), previous="rt-same") is False
    assert [c for c in secrets.calls if c[0] == "set"] == [("set", AT)]
    assert persisted == []


def test_a_token_without_expiry_is_not_shared(tmp_path: Path) -> None:
    secrets = Recording()
    store = make(secrets, tmp_path)
    assert store.save(Token("at", None, "rt-1"), previous=None) is True
    assert secrets.calls == [("set", KEY)]


def test_compare_and_set_keeps_a_newer_token_written_meanwhile(tmp_path: Path) -> None:
    secrets = Capable()
    persisted: list[tuple[str, datetime]] = []
    store = make(secrets, tmp_path, persisted)
    secrets.set_secret(KEY, "rt-from-another-host")  # our lease ran out; another refreshed
    assert store.save(token(), previous="rt-old") is False
    assert secrets.get_secret(KEY) == "rt-from-another-host"
    assert persisted == []
    assert store.read_refresh_token() == StoredRefresh("rt-from-another-host",
                                                       "rt-from-another-host")
    # the newer session's access token is the shared one: ours is not written over it
    assert secrets.get_secret(AT) is None


def test_a_lost_compare_and_set_leaves_the_newer_sessions_access_token(tmp_path: Path) -> None:
    secrets = Capable()
    store = make(secrets, tmp_path)
    secrets.set_secret(KEY, "rt-of-another-login")
    secrets.set_secret(AT, "at-of-another-login|2999-01-01T00:00:00Z")
    assert store.save(token(), previous="rt-old") is False
    assert secrets.get_secret(AT) == "at-of-another-login|2999-01-01T00:00:00Z"
    assert secrets.get_secret(KEY) == "rt-of-another-login"


def test_compare_and_set_writes_when_the_entry_is_unchanged(tmp_path: Path) -> None:
    secrets = Capable()
    secrets.set_secret(KEY, "rt-old")
    store = make(secrets, tmp_path)
    assert store.save(token(), previous="rt-old") is True
    assert ("cas", KEY) in secrets.calls
    assert secrets.get_secret(KEY) == "rt-new"


def test_a_refused_rotation_is_repaired_at_the_next_read(tmp_path: Path) -> None:
    secrets = Recording()
    secrets.set_secret(KEY, "rt-old")
    persisted: list[tuple[str, datetime]] = []
    store = make(secrets, tmp_path, persisted)
    secrets.refuse.add(KEY)
    assert store.save(token(), previous="rt-old") is False
    assert persisted == []
    # the store still refuses: spend the newer one, tell the caller the old one is held;
    # the rotation stays pending
    assert store.read_refresh_token() == StoredRefresh("rt-new", "rt-old")
    assert store.read_refresh_token() == StoredRefresh("rt-new", "rt-old")
    secrets.refuse.clear()
    assert store.read_refresh_token() == StoredRefresh("rt-new", "rt-new")
    assert secrets.get_secret(KEY) == "rt-new"


def test_a_pending_rotation_never_overwrites_another_login(tmp_path: Path) -> None:
    secrets = Recording()
    secrets.set_secret(KEY, "rt-old")
    store = make(secrets, tmp_path)
    secrets.refuse.add(KEY)
    store.save(token(), previous="rt-old")
    secrets.refuse.clear()
    secrets.set_secret(KEY, "rt-other-login")
    assert store.read_refresh_token() == StoredRefresh("rt-other-login", "rt-other-login")
    del store
    gc.collect()
    assert secrets.get_secret(KEY) == "rt-other-login"


def test_a_pending_rotation_is_flushed_when_the_store_goes(tmp_path: Path) -> None:
    secrets = Capable()
    secrets.set_secret(KEY, "rt-old")
    store = make(secrets, tmp_path)
    secrets.refuse.add(KEY)
    store.save(token(), previous="rt-old")
    secrets.refuse.clear()
    secrets.locks.clear()
    del store
    gc.collect()
    assert secrets.get_secret(KEY) == "rt-new"
    assert [name for name, _ in secrets.locks] == [KEY]  # under the session's lock


def test_failed_reads_raise_and_are_never_a_miss(tmp_path: Path) -> None:
    secrets = Recording()
    store = make(secrets, tmp_path)
    secrets.fail_reads = True
    with pytest.raises(SecretsError):
        store.read_refresh_token()
    with pytest.raises(SecretsError):
        store.read_access_token()


def test_conditional_delete_of_the_refresh_token(tmp_path: Path) -> None:
    for secrets in (Recording(), Capable()):
        store = make(secrets, tmp_path)
        secrets.set_secret(KEY, "rt-newer")
        assert store.delete_refresh_token_if("rt-dead") is False
        assert secrets.get_secret(KEY) == "rt-newer"
        assert store.delete_refresh_token_if("rt-newer") is True
        assert secrets.get_secret(KEY) is None


def test_conditional_delete_of_the_access_token(tmp_path: Path) -> None:
    for secrets in (Recording(), Capable()):
        store = make(secrets, tmp_path)
        store.save(token("at-fresh", None), previous=None)
        assert store.delete_access_token_if("at-rejected") is False
        assert decode_at_entry(secrets.get_secret(AT)) is not None
        assert store.delete_access_token_if("at-fresh") is True
        assert secrets.get_secret(AT) is None
        store.save(token("at-any", None), previous=None)
        assert store.delete_access_token_if(None) is True
        assert secrets.get_secret(AT) is None
    assert ("cad", AT) in secrets.calls  # the capable provider did it atomically


def test_delete_tries_both_entries_and_forgets_the_pending_rotation(tmp_path: Path) -> None:
    secrets = Recording()
    secrets.set_secret(KEY, "rt-old")
    store = make(secrets, tmp_path)
    secrets.refuse.add(KEY)
    store.save(token(), previous="rt-old")
    with pytest.raises(SecretsError):
        store.delete()
    assert ("delete", AT) in secrets.calls  # tried although the first one failed
    secrets.refuse.clear()
    store.delete()
    assert secrets.get_secret(KEY) is None
    assert secrets.get_secret(AT) is None
    del store
    gc.collect()
    assert secrets.get_secret(KEY) is None  # the logout is not undone at exit


def test_the_file_lock_is_the_default_and_excludes_a_second_holder(tmp_path: Path) -> None:
    first = make(Recording(), tmp_path)
    second = make(Recording(), tmp_path)
    with first.lock(5):
        assert any(tmp_path.iterdir())  # the lock file lives under lock_dir
        with pytest.raises(LockTimeoutError):
            with second.lock(0):
                pass
    with second.lock(0):
        pass


def test_a_provider_lock_replaces_the_file_lock(tmp_path: Path) -> None:
    secrets = Capable()
    store = make(secrets, tmp_path / "locks")
    with store.lock(7.5):
        with pytest.raises(LockTimeoutError):
            with make(secrets, tmp_path).lock(0):
                pass
    assert secrets.locks[0] == (KEY, 7.5)
    assert not (tmp_path / "locks").exists()  # no file lock was made


def test_the_repr_names_no_secret(tmp_path: Path) -> None:
    secrets = Recording()
    store = make(secrets, tmp_path)
    text = repr(store) + repr(StoredRefresh("rt-secret-value", "rt-other-secret"))
    assert "rt-secret-value" not in text
    assert "rt-other-secret" not in text
    assert KEY in text


class Renewable(Capable):
    """A provider whose lock is a lease that `renew()` may find lost."""

    def __init__(self) -> None:
        super().__init__()
        self.still_ours = True
        self.renewals = 0

    @contextlib.contextmanager
    def lock(self, name: str, *, timeout: float,
             done: Callable[[], bool] | None = None) -> Iterator[object]:
        provider = self

        class Lease:
            def renew(self) -> bool:
                provider.renewals += 1
                return provider.still_ours

        with super().lock(name, timeout=timeout):
            yield Lease()


def test_confirm_lock_renews_the_lease_and_says_when_it_is_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = Renewable()
    store = make(secrets, tmp_path)
    with store.lock(5):
        assert store.confirm_lock()
        secrets.still_ours = False
        with caplog.at_level("WARNING", logger="oauth_auth"):
            assert not store.confirm_lock()
    assert secrets.renewals == 2
    assert "the refresh token is not spent" in caplog.text
    on_file_lock = make(MemorySecrets(), tmp_path)
    with on_file_lock.lock(5):  # the OS file lock cannot run out
        assert on_file_lock.confirm_lock()


# ------------------------------------------------------------- `done`: the lock's wait ends


def test_a_wait_ended_by_done_holds_nothing_and_spends_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A lease that a sibling holds; our `done` finds its token after one pause. The block
    gets `Locked(found=...)`, not `held`, and `confirm_lock()` refuses any spending."""
    from tests.support.fakes import FakeClock, LeasedSecrets

    clock = FakeClock()
    secrets = LeasedSecrets(clock)
    secrets.backend.try_lease(KEY, "host-a:1:x", 30.0)
    store = make(secrets, tmp_path)
    answers = iter([None, "at-sibling"])
    with store.lock(5, done=lambda: next(answers)) as lock:
        assert not lock.held
        assert lock.found == "at-sibling"
        with caplog.at_level("WARNING", logger="oauth_auth"):
            assert not store.confirm_lock()
    assert "does not hold the refresh lock" in caplog.text
    assert secrets.dones == 2
    assert secrets.backend.taken == ["host-a:1:x"]


def test_held_is_the_stores_own_record_not_what_the_provider_yields(tmp_path: Path) -> None:
    """A provider lock that asks `done`, is told True, and runs the block anyway (yielding
    something lease-like): the block is still told it holds nothing."""

    class Careless(Capable):
        @contextlib.contextmanager
        def lock(self, name: str, *, timeout: float,
                 done: Callable[[], bool] | None = None) -> Iterator[object]:
            assert done is not None
            assert done()

            class Lease:
                def renew(self) -> bool:
                    return True

            yield Lease()

    store = make(Careless(), tmp_path)
    with store.lock(5, done=lambda: "at-sibling") as lock:
        assert not lock.held
        assert not store.confirm_lock()


def test_a_held_lock_says_so_and_confirms(tmp_path: Path) -> None:
    from tests.support.fakes import FakeClock, LeasedSecrets

    secrets = LeasedSecrets(FakeClock())
    store = make(secrets, tmp_path)
    with store.lock(5, done=lambda: "never asked") as lock:
        assert lock.held
        assert lock.found is None
        assert store.confirm_lock()  # renews the lease
    assert secrets.dones == 0  # the lease was free: taken at once
    assert not store.confirm_lock()  # outside the block: nothing is held


def test_the_file_lock_never_asks_done(tmp_path: Path) -> None:
    """The file lock waits for itself (`file_lock_factory`): `done` is never asked, and a
    block always holds it; the timeout path is unchanged."""
    asked: list[int] = []

    def done() -> str:
        asked.append(1)
        return "at-sibling"

    first = make(Recording(), tmp_path)
    second = make(Recording(), tmp_path)
    with first.lock(5, done=done) as lock:
        assert lock.held
        with pytest.raises(LockTimeoutError), second.lock(0.1, done=done):
            pass
    with second.lock(5, done=done) as lock:
        assert lock.held
        assert second.confirm_lock()
    assert asked == []


def test_the_lock_turned_off_never_asks_done(tmp_path: Path) -> None:
    store = SecretsSessionStore(Recording(), KEY, lock_dir=tmp_path, cross_process_lock=False)
    with store.lock(5, done=lambda: "at-sibling") as lock:
        assert lock.held
        assert store.confirm_lock()
