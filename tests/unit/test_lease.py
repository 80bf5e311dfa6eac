"""The lease lock's waiting loop (`oauth_auth._lease`), on a fake backend and a fake clock."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from oauth_auth import ConfigError, LockTimeoutError
from oauth_auth._lease import DEFAULT_LOCK_LEASE, describe_holder, hold_lease, lease_seconds
from tests.support.fakes import FakeLeaseBackend


@pytest.fixture
def clock() -> list[float]:
    return [1000.0]


def run(backend: FakeLeaseBackend, clock: list[float], timeout: float, lease: float = 10.0):  # type: ignore[no-untyped-def]
    def sleep(seconds: float) -> None:
        assert seconds >= 0
        clock[0] += seconds

    return hold_lease(backend, "K", timeout=timeout, lease=lease, where="fake://",
                      clock=lambda: clock[0], sleep=sleep)


def test_free_lease_is_taken_at_once_and_released_by_its_holder(clock: list[float]) -> None:
    backend = FakeLeaseBackend(lambda: clock[0])
    with run(backend, clock, 5) as lease:
        assert backend.leases["K"][0] == lease.holder
        assert backend.tries == 1
    assert "K" not in backend.leases


def test_release_deletes_only_our_own_lease(clock: list[float]) -> None:
    backend = FakeLeaseBackend(lambda: clock[0])
    with run(backend, clock, 5, lease=1):
        clock[0] += 2  # our lease ran out; someone else takes it
        assert backend.try_lease("K", "other:1:x", 10) is None
    assert backend.leases["K"][0] == "other:1:x"


def test_a_dead_holders_lease_blocks_no_longer_than_it_lasts(
    clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    backend = FakeLeaseBackend(lambda: clock[0])
    backend.try_lease("K", "host-a:4242:dead", 3.0)  # taken, never released
    start = clock[0]
    with caplog.at_level(logging.INFO, logger="oauth_auth"), run(backend, clock, 60):
        waited = clock[0] - start
    assert 3.0 <= waited < 3.0 + 0.75  # at most one poll interval past the lease
    waits = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert waits == ["waiting for process 4242 on host-a, which holds the refresh lease of K"
                     " on fake://"]  # said once, naming the holder's process


def test_backoff_grows_to_its_cap(clock: list[float]) -> None:
    backend = FakeLeaseBackend(lambda: clock[0])
    backend.try_lease("K", "h:1:x", 30.0)
    with run(backend, clock, 60):
        pass
    # 10 ms doubling to 500 ms with jitter: about 60 tries for 30 s, not thousands.
    assert 40 <= backend.tries <= 140


def test_timeout_is_a_lock_timeout_naming_the_holder(clock: list[float]) -> None:
    backend = FakeLeaseBackend(lambda: clock[0])
    backend.try_lease("K", "host-b:77:x", 100.0)
    with pytest.raises(LockTimeoutError) as caught, run(backend, clock, 2):
        pass
    assert "process 77 on host-b" in str(caught.value)
    assert "lock_lease" in caught.value.hint


def test_timeout_zero_tries_once_and_says_nothing(
    clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    backend = FakeLeaseBackend(lambda: clock[0])
    backend.try_lease("K", "h:1:x", 100.0)
    with caplog.at_level(logging.INFO, logger="oauth_auth"), pytest.raises(LockTimeoutError), \
            run(backend, clock, 0):
        pass
    assert backend.tries == 2  # ours plus the one that took it
    assert not [r for r in caplog.records if "waiting" in r.getMessage()]


def test_a_failed_release_is_logged_not_raised(
    clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    backend = FakeLeaseBackend(lambda: clock[0])
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
    backend = FakeLeaseBackend(lambda: clock[0])
    with run(backend, clock, 5, lease=2) as lease:
        clock[0] += 1.5
        assert lease.renew()  # still ours: it lasts 2 s from now
        assert backend.leases["K"][1] == clock[0] + 2
        clock[0] += 3  # ran out, and another holder took it
        assert backend.try_lease("K", "other:1:x", 10) is None
        assert not lease.renew()  # never extends another's lease
        assert backend.leases["K"][0] == "other:1:x"
    assert lease.holder not in repr(lease)  # the random id stays out of logs


# ------------------------------------------------------------- `done`: the wait can end


def run_until(backend: FakeLeaseBackend, clock: list[float], timeout: float,
              done: Callable[[], bool], events: list[str]):  # type: ignore[no-untyped-def]
    """`run` with a `done` check; every sleep and check is logged in `events`."""

    def sleep(seconds: float) -> None:
        events.append("sleep")
        clock[0] += seconds

    def check() -> bool:
        events.append("done?")
        return done()

    return hold_lease(backend, "K", timeout=timeout, lease=10.0, where="fake://",
                      done=check, clock=lambda: clock[0], sleep=sleep)


def test_done_ends_the_wait_without_taking_the_lease(clock: list[float]) -> None:
    """A waiter whose check finds the holder's result never holds the lease: it yields
    None, and the holder's lease is untouched (nothing of ours to release)."""
    backend = FakeLeaseBackend(lambda: clock[0])
    backend.try_lease("K", "host-a:1:x", 30.0)
    answers = iter([False, False, True])
    events: list[str] = []
    with run_until(backend, clock, 60, lambda: next(answers), events) as lease:
        assert lease is None
        assert backend.holder("K") == "host-a:1:x"
    assert backend.taken == ["host-a:1:x"]  # ours never
    assert backend.leases["K"][0] == "host-a:1:x"  # and the holder's still there
    # After our first failed try: pause, ask, try again; the third answer ends it before
    # a fourth try.
    assert events == ["sleep", "done?", "sleep", "done?", "sleep", "done?"]
    assert backend.tries == 1 + 1 + 2  # the holder's, our first, two after a False


def test_done_is_asked_before_the_next_try(clock: list[float]) -> None:
    """The holder shares its result before it releases, so after a pause the check comes
    first: a waiter that wakes to a released lease *and* a shared result takes the result,
    not the lease."""
    backend = FakeLeaseBackend(lambda: clock[0])
    backend.try_lease("K", "host-a:1:x", 30.0)
    shared: list[bool] = [False]

    def done() -> bool:
        return shared[0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds
        shared[0] = True  # the holder wrote its token...
        backend.release_lease("K", "host-a:1:x")  # ...then released its lease

    with hold_lease(backend, "K", timeout=60, lease=10.0, where="fake://", done=done,
                    clock=lambda: clock[0], sleep=sleep) as lease:
        assert lease is None
    assert backend.taken == ["host-a:1:x"]


def test_a_free_lease_is_taken_without_asking_done(clock: list[float]) -> None:
    backend = FakeLeaseBackend(lambda: clock[0])
    events: list[str] = []
    with run_until(backend, clock, 5, lambda: True, events) as lease:
        assert lease is not None
        assert backend.holder("K") == lease.holder
    assert events == []  # the caller read before it asked for the lock
    assert "K" not in backend.leases


def test_done_false_takes_the_lease_once_it_is_released(clock: list[float]) -> None:
    backend = FakeLeaseBackend(lambda: clock[0])
    backend.try_lease("K", "host-a:1:x", 0.05)  # runs out during our pauses
    events: list[str] = []
    with run_until(backend, clock, 60, lambda: False, events) as lease:
        assert lease is not None
        assert backend.taken == ["host-a:1:x", lease.holder]
    assert events.count("done?") == events.count("sleep") >= 1


def test_done_false_still_times_out_with_a_lock_timeout(clock: list[float]) -> None:
    backend = FakeLeaseBackend(lambda: clock[0])
    backend.try_lease("K", "host-b:77:x", 100.0)
    events: list[str] = []
    with pytest.raises(LockTimeoutError) as caught, \
            run_until(backend, clock, 2, lambda: False, events):
        pass
    assert "process 77 on host-b" in str(caught.value)
    assert events.count("done?") == events.count("sleep") >= 3  # asked after each pause
    assert backend.taken == ["host-b:77:x"]
