"""The lease lock's waiting loop (`oauth_auth._lease`), on a fake backend and a fake clock."""

from __future__ import annotations

import logging

import pytest

from oauth_auth import ConfigError, LockTimeoutError, SecretsError
from oauth_auth._lease import DEFAULT_LOCK_LEASE, describe_holder, hold_lease, lease_seconds


class FakeBackend:
    """A lease table in a dict, with expiries on the fake clock."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.leases: dict[str, tuple[str, float]] = {}
        self.tries = 0
        self.fail_release = False

    def try_lease(self, name: str, holder: str, seconds: float) -> str | None:
        self.tries += 1
        current = self.leases.get(name)
        if current is not None and current[1] > self.clock[0]:
            return current[0]
        self.leases[name] = (holder, self.clock[0] + seconds)
        return None

    def release_lease(self, name: str, holder: str) -> None:
        if self.fail_release:
            raise SecretsError("server down")
        if self.leases.get(name, ("", 0.0))[0] == holder:
            del self.leases[name]

    def renew_lease(self, name: str, holder: str, seconds: float) -> bool:
        if self.leases.get(name, ("", 0.0))[0] != holder:
            return False
        self.leases[name] = (holder, self.clock[0] + seconds)
        return True


@pytest.fixture
def clock() -> list[float]:
    return [1000.0]


def run(backend: FakeBackend, clock: list[float], timeout: float, lease: float = 10.0):  # type: ignore[no-untyped-def]
    def sleep(seconds: float) -> None:
        assert seconds >= 0
        clock[0] += seconds

    return hold_lease(backend, "K", timeout=timeout, lease=lease, where="fake://",
                      clock=lambda: clock[0], sleep=sleep)


def test_free_lease_is_taken_at_once_and_released_by_its_holder(clock: list[float]) -> None:
    backend = FakeBackend(clock)
    with run(backend, clock, 5) as lease:
        assert backend.leases["K"][0] == lease.holder
        assert backend.tries == 1
    assert "K" not in backend.leases


def test_release_deletes_only_our_own_lease(clock: list[float]) -> None:
    backend = FakeBackend(clock)
    with run(backend, clock, 5, lease=1):
        clock[0] += 2  # our lease ran out; someone else takes it
        assert backend.try_lease("K", "other:1:x", 10) is None
    assert backend.leases["K"][0] == "other:1:x"


def test_a_dead_holders_lease_blocks_no_longer_than_it_lasts(
    clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    backend = FakeBackend(clock)
    backend.try_lease("K", "host-a:4242:dead", 3.0)  # taken, never released
    start = clock[0]
    with caplog.at_level(logging.INFO, logger="oauth_auth"), run(backend, clock, 60):
        waited = clock[0] - start
    assert 3.0 <= waited < 3.0 + 0.75  # at most one poll interval past the lease
    waits = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert waits == ["waiting for process 4242 on host-a, which holds the refresh lease of K"
                     " on fake://"]  # said once, naming the holder's process


def test_backoff_grows_to_its_cap(clock: list[float]) -> None:
    backend = FakeBackend(clock)
    backend.try_lease("K", "h:1:x", 30.0)
    with run(backend, clock, 60):
        pass
    # 10 ms doubling to 500 ms with jitter: about 60 tries for 30 s, not thousands.
    assert 40 <= backend.tries <= 140


def test_timeout_is_a_lock_timeout_naming_the_holder(clock: list[float]) -> None:
    backend = FakeBackend(clock)
    backend.try_lease("K", "host-b:77:x", 100.0)
    with pytest.raises(LockTimeoutError) as caught, run(backend, clock, 2):
        pass
    assert "process 77 on host-b" in str(caught.value)
    assert "lock_lease" in caught.value.hint


def test_timeout_zero_tries_once_and_says_nothing(
    clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    backend = FakeBackend(clock)
    backend.try_lease("K", "h:1:x", 100.0)
    with caplog.at_level(logging.INFO, logger="oauth_auth"), pytest.raises(LockTimeoutError), \
            run(backend, clock, 0):
        pass
    assert backend.tries == 2  # ours plus the one that took it
    assert not [r for r in caplog.records if "waiting" in r.getMessage()]


def test_a_failed_release_is_logged_not_raised(
    clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    backend = FakeBackend(clock)
    backend.fail_release = True
    with caplog.at_level(logging.WARNING, logger="oauth_auth"), run(backend, clock, 5):
        pass
    assert any("ends by itself" in r.getMessage() for r in caplog.records)


def test_lease_seconds() -> None:
    assert lease_seconds(None) == DEFAULT_LOCK_LEASE
    assert lease_seconds(2) == 2.0
    for bad in (0, -1, float("nan")):
        with pytest.raises(ConfigError):
            lease_seconds(bad)
    assert describe_holder("h:12:abc") == "process 12 on h"


def test_a_lease_renews_only_while_it_is_ours(clock: list[float]) -> None:
    backend = FakeBackend(clock)
    with run(backend, clock, 5, lease=2) as lease:
        clock[0] += 1.5
        assert lease.renew()  # still ours: it lasts 2 s from now
        assert backend.leases["K"][1] == clock[0] + 2
        clock[0] += 3  # ran out, and another holder took it
        assert backend.try_lease("K", "other:1:x", 10) is None
        assert not lease.renew()  # never extends another's lease
        assert backend.leases["K"][0] == "other:1:x"
    assert lease.holder not in repr(lease)  # the random id stays out of logs
