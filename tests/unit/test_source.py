"""Unit tests of OAuthTokenSource's tiers with a fake clock and a MockTransport provider."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from oauth_auth import (
    ConfigError,
    InvalidGrantError,
    LockTimeoutError,
    LoginRequiredError,
    MemorySecrets,
    OAuthError,
    OAuthTokenSource,
    OIDCParams,
    SecretsError,
    TransportError,
)
from oauth_auth._token import decode_at_entry, format_rfc3339
from tests.support.fakes import ISSUER, CountingSecrets, FakeClock, FakeProvider, LeasedSecrets

KEY = "TEST_OAUTH_0000abcd"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def secrets() -> CountingSecrets:
    return CountingSecrets(MemorySecrets())


def make_source(
    idp: FakeProvider,
    clock: FakeClock,
    secrets: Any,
    tmp_path: Any = None,
    **kwargs: Any,
) -> OAuthTokenSource:
    oidc = kwargs.pop("oidc", OIDCParams(ISSUER, "cli", audience=kwargs.pop("audience", "")))
    return OAuthTokenSource(
        oidc,
        key_provider=lambda: KEY,
        secrets_provider=secrets,
        clock=clock,
        transport=idp.transport(),
        max_retries=kwargs.pop("max_retries", 0),
        lock_dir=str(tmp_path) if tmp_path is not None else None,
        **kwargs,
    )


@pytest.fixture
def source(fake_idp: FakeProvider, clock: FakeClock, secrets: CountingSecrets,
           tmp_path: Any) -> OAuthTokenSource:
    return make_source(fake_idp, clock, secrets, tmp_path)


def test_tier3_restores_session_and_persists_rotation(
    fake_idp: FakeProvider, clock: FakeClock, secrets: CountingSecrets, tmp_path: Any
) -> None:
    persisted: list[tuple[str, datetime]] = []
    source = make_source(fake_idp, clock, secrets, tmp_path,
                         config_persister=lambda k, e: persisted.append((k, e)))
    secrets.inner.set_secret(KEY, fake_idp.seed("rt-0"))

    assert source.token() == "at-1"

    assert fake_idp.counts["refresh"] == 1
    assert secrets.inner.get_secret(KEY) == "rt-1"  # rotated token written back
    entry = decode_at_entry(secrets.inner.get_secret(KEY + "_AT"))
    assert entry is not None
    assert entry.access_token == "at-1"
    assert entry.expiry == int(clock.now + 3600)
    assert secrets.inner.get_secret(KEY + "_AT").endswith("Z")
    assert len(persisted) == 1
    key, expiry = persisted[0]
    assert key == KEY
    assert expiry.tzinfo is not None
    assert expiry.utcoffset() == timedelta(0)
    assert expiry == datetime.fromtimestamp(clock.now + 3600, tz=timezone.utc)


def test_persister_not_called_on_routine_refresh(
    fake_idp: FakeProvider, clock: FakeClock, secrets: CountingSecrets, tmp_path: Any
) -> None:
    fake_idp.rotate = False
    persisted: list[str] = []
    source = make_source(fake_idp, clock, secrets, tmp_path,
                         config_persister=lambda k, e: persisted.append(k))
    secrets.inner.set_secret(KEY, fake_idp.seed("rt-0"))
    assert source.token() == "at-1"
    clock.advance(3600)
    assert source.token() == "at-2"
    assert fake_idp.counts["refresh"] == 2
    assert persisted == []
    assert secrets.inner.get_secret(KEY) == "rt-0"


def test_rotation_order_refresh_token_before_access_token(
    fake_idp: FakeProvider, clock: FakeClock, tmp_path: Any
) -> None:
    order: list[str] = []

    class Recording(MemorySecrets):
        def set_secret(self, name: str, value: str) -> None:
            order.append(name)
            super().set_secret(name, value)

    store = Recording()
    source = make_source(fake_idp, clock, store, tmp_path,
                         config_persister=lambda k, e: order.append("persister"))
    store.set_secret(KEY, fake_idp.seed())
    order.clear()
    source.token()
    assert order == [KEY, KEY + "_AT", "persister"]


def test_memory_hit_costs_no_io(source: OAuthTokenSource, fake_idp: FakeProvider,
                                secrets: CountingSecrets) -> None:
    secrets.inner.set_secret(KEY, fake_idp.seed())
    first = source.token()
    calls = dict(secrets.calls)
    for _ in range(1000):
        assert source.token() == first
    assert dict(secrets.calls) == calls
    assert fake_idp.counts["refresh"] == 1


def test_exactly_one_refresh_per_window(source: OAuthTokenSource, fake_idp: FakeProvider,
                                        clock: FakeClock, secrets: CountingSecrets) -> None:
    secrets.inner.set_secret(KEY, fake_idp.seed())
    assert source.token() == "at-1"
    clock.advance(3600 - 30 - 1)  # just outside the window
    assert source.token() == "at-1"
    clock.advance(2)  # inside the 30 s window
    results = {source.token() for _ in range(500)}
    assert results == {"at-2"}
    assert fake_idp.counts["refresh"] == 2


def test_short_lived_tokens_cannot_cause_a_refresh_loop(
    fake_idp: FakeProvider, clock: FakeClock, secrets: CountingSecrets, tmp_path: Any
) -> None:
    fake_idp.expires_in = 10  # shorter than the 30 s window
    source = make_source(fake_idp, clock, secrets, tmp_path)
    secrets.inner.set_secret(KEY, fake_idp.seed())
    for _ in range(200):
        source.token()
    assert fake_idp.counts["refresh"] == 1
    clock.advance(4.9)
    source.token()
    assert fake_idp.counts["refresh"] == 1
    clock.advance(0.2)  # past half the life: one more refresh, then quiet again
    for _ in range(200):
        source.token()
    assert fake_idp.counts["refresh"] == 2


def test_tier2_shared_cache_serves_second_source_without_token_request(
    fake_idp: FakeProvider, clock: FakeClock, secrets: CountingSecrets, tmp_path: Any
) -> None:
    first = make_source(fake_idp, clock, secrets, tmp_path)
    secrets.inner.set_secret(KEY, fake_idp.seed())
    token = first.token()
    second = make_source(fake_idp, clock, secrets, tmp_path)
    before = secrets.calls["get"]
    assert second.token() == token
    assert fake_idp.counts["refresh"] == 1
    # a tier-2 hit stays in memory: a hot loop does not touch the backend
    reads = secrets.calls["get"]
    assert reads == before + 1
    for _ in range(100):
        assert second.token() == token
    assert secrets.calls["get"] == reads


def test_tier2_entry_inside_reader_window_is_not_served(
    fake_idp: FakeProvider, clock: FakeClock, secrets: CountingSecrets, tmp_path: Any
) -> None:
    source = make_source(fake_idp, clock, secrets, tmp_path, preemptive_refresh_window=600)
    expiry = datetime.fromtimestamp(clock.now + 300, tz=timezone.utc)
    secrets.inner.set_secret(KEY + "_AT", f"cached|{expiry:%Y-%m-%dT%H:%M:%SZ}")
    secrets.inner.set_secret(KEY, fake_idp.seed())
    assert source.token() == "at-1"
    assert fake_idp.counts["refresh"] == 1


@pytest.mark.parametrize(
    "entry",
    [
        "",
        "no-separator",
        "|2030-01-01T00:00:00Z",
        "tok|not-a-date",
        "tok|2020-01-01T00:00:00Z",  # expired
        "tok|2030-01-01T00:00:00",  # no zone
        "a|b|2030-01-01T00:00:00Z",
        "tok|" + "9" * 100,
    ],
)
def test_malformed_or_expired_tier2_entries_are_ignored(
    fake_idp: FakeProvider, clock: FakeClock, secrets: CountingSecrets, tmp_path: Any, entry: str
) -> None:
    clock.now = datetime(2026, 6, 1, tzinfo=timezone.utc).timestamp()
    source = make_source(fake_idp, clock, secrets, tmp_path)
    secrets.inner.set_secret(KEY + "_AT", entry)
    secrets.inner.set_secret(KEY, fake_idp.seed())
    assert source.token() == "at-1"


def test_go_style_offset_timestamp_is_accepted(
    fake_idp: FakeProvider, clock: FakeClock, secrets: CountingSecrets, tmp_path: Any
) -> None:
    clock.now = datetime(2026, 6, 1, tzinfo=timezone.utc).timestamp()
    source = make_source(fake_idp, clock, secrets, tmp_path)
    secrets.inner.set_secret(KEY + "_AT", "shared|2026-06-01T03:00:00+02:00")
    assert source.token() == "shared"
    assert fake_idp.counts["refresh"] == 0


def test_empty_stored_refresh_token_is_a_miss(source: OAuthTokenSource,
                                              secrets: CountingSecrets) -> None:
    secrets.inner.set_secret(KEY, "")
    with pytest.raises(LoginRequiredError, match="no usable credentials"):
        source.token()


def test_fallback_error_is_raised_when_nothing_went_wrong(
    fake_idp: FakeProvider, clock: FakeClock, secrets: CountingSecrets, tmp_path: Any
) -> None:
    class Custom(Exception):
        pass

    source = make_source(fake_idp, clock, secrets, tmp_path, fallback_error=Custom("run login"))
    with pytest.raises(Custom, match="run login"):
        source.token()
    assert fake_idp.counts["refresh"] == 0


def test_invalid_grant_deletes_dead_refresh_token(
    source: OAuthTokenSource, fake_idp: FakeProvider, secrets: CountingSecrets
) -> None:
    secrets.inner.set_secret(KEY, "rt-dead")
    with pytest.raises(InvalidGrantError) as info:
        source.token()
    assert info.value.error == "invalid_grant"
    assert secrets.inner.get_secret(KEY) is None
    assert fake_idp.counts["invalid_grant"] == 1
    # next call: a plain miss now
    with pytest.raises(LoginRequiredError):
        source.token()


def test_invalid_grant_retries_once_with_a_sibling_rotated_token(
    fake_idp: FakeProvider, clock: FakeClock, tmp_path: Any
) -> None:
    fake_idp.seed("rt-new")

    class Rotating(MemorySecrets):
        """The first read returns a stale token; then a 'sibling' has written the new one."""

        reads = 0

        def get_secret(self, name: str) -> str | None:
            if name == KEY:
                self.reads += 1
                return "rt-old" if self.reads == 1 else "rt-new"
            return super().get_secret(name)

    store = Rotating()
    source = make_source(fake_idp, clock, store, tmp_path)
    assert source.token() == "at-1"
    assert fake_idp.counts["invalid_grant"] == 1
    assert fake_idp.counts["refresh"] == 1


@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [
        (503, {"error": "temporarily_unavailable"}, {"Retry-After": "0"}),
        (500, "oops", {}),
        (429, "", {"Retry-After": "0"}),
    ],
)
def test_transient_failure_keeps_refresh_token(
    source: OAuthTokenSource, fake_idp: FakeProvider, secrets: CountingSecrets,
    status: int, body: Any, headers: dict[str, str],
) -> None:
    secrets.inner.set_secret(KEY, fake_idp.seed("rt-0"))
    fake_idp.faults.append((status, body, headers))
    with pytest.raises(TransportError) as info:
        source.token()
    assert info.value.status_code == status
    assert info.value.retryable
    assert secrets.inner.get_secret(KEY) == "rt-0"
    assert source.token() == "at-1"  # the fault cleared: no login needed


def test_retries_honour_retry_after_and_are_bounded(
    fake_idp: FakeProvider, clock: FakeClock, secrets: CountingSecrets, tmp_path: Any
) -> None:
    source = make_source(fake_idp, clock, secrets, tmp_path, max_retries=2)
    sleeps: list[float] = []
    source._http()._sleep = sleeps.append
    secrets.inner.set_secret(KEY, fake_idp.seed())
    fake_idp.faults.extend([(503, "", {"Retry-After": "2"}), (500, "", {})])
    assert source.token() == "at-1"
    assert sleeps == [2.0, 1.0]  # Retry-After honoured, then backoff 0.5 * 2
    fake_idp.faults.extend([(503, "", {})] * 3)
    clock.advance(4000)
    with pytest.raises(TransportError):
        source.token()
    assert fake_idp.counts["fault_503"] == 4


def test_proactive_refresh_failure_serves_valid_token_and_backs_off(
    source: OAuthTokenSource, fake_idp: FakeProvider, clock: FakeClock, secrets: CountingSecrets,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secrets.inner.set_secret(KEY, fake_idp.seed())
    assert source.token() == "at-1"
    clock.advance(3600 - 20)  # inside the window, still valid
    fake_idp.faults.extend([(503, "", {})] * 10)
    with caplog.at_level(logging.WARNING, logger="oauth_auth"):
        for _ in range(50):
            assert source.token() == "at-1"
    assert fake_idp.counts["fault_503"] == 1  # not one attempt per call
    assert any("serving the current one" in r.getMessage() for r in caplog.records)
    fake_idp.faults.clear()
    clock.advance(6)  # past the 5 s backoff
    assert source.token() == "at-2"


def test_no_secrets_provider_gives_actionable_error(fake_idp: FakeProvider,
                                                     clock: FakeClock) -> None:
    source = make_source(fake_idp, clock, None)
    with pytest.raises(SecretsError, match="no secrets provider") as info:
        source.token()
    assert "KeyringSecrets" in str(info.value)


def test_without_a_secrets_provider_no_lock_is_ever_taken(
    fake_idp: FakeProvider, clock: FakeClock, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing is shared, so there is nothing to serialize across processes: neither a
    refresh nor a miss touches the lock directory or the lock."""
    from oauth_auth import _locking

    def no_lock(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("process_lock was called without a secrets provider")

    monkeypatch.setattr(_locking, "process_lock", no_lock)
    locks = tmp_path / "locks"
    source = make_source(fake_idp, clock, None, locks)
    with pytest.raises(SecretsError):
        source.token()
    source._refresh_token = fake_idp.seed("rt-mem")  # as after a login in this process
    assert source.token() == "at-1"
    clock.advance(3600)
    assert source.token() == "at-2"
    assert fake_idp.counts["refresh"] == 2
    assert not locks.exists()


def test_secrets_read_failure_is_raised_not_fallback(
    source: OAuthTokenSource, secrets: CountingSecrets, fake_idp: FakeProvider
) -> None:
    secrets.inner.set_secret(KEY, fake_idp.seed())
    secrets.fail_reads.update({KEY, KEY + "_AT"})
    with pytest.raises(SecretsError, match="locked"):
        source.token()
    assert fake_idp.counts["refresh"] == 0  # a failed read is not a miss that refreshes


def test_access_cache_write_failure_does_not_fail_token(
    source: OAuthTokenSource, secrets: CountingSecrets, fake_idp: FakeProvider
) -> None:
    secrets.inner.set_secret(KEY, fake_idp.seed())
    secrets.fail_writes.add(KEY + "_AT")
    assert source.token() == "at-1"


def test_audience_is_sent_as_resource(fake_idp: FakeProvider, clock: FakeClock,
                                      secrets: CountingSecrets, tmp_path: Any) -> None:
    source = make_source(fake_idp, clock, secrets, tmp_path, audience="https://api.example.test")
    secrets.inner.set_secret(KEY, fake_idp.seed())
    source.token()
    assert fake_idp.requests[-1]["resource"] == "https://api.example.test"
    assert fake_idp.requests[-1]["client_id"] == "cli"
    assert "scope" not in fake_idp.requests[-1]


def test_discovery_happens_once_per_process(fake_idp: FakeProvider, clock: FakeClock,
                                            tmp_path: Any) -> None:
    for _ in range(3):
        store = MemorySecrets()
        store.set_secret(KEY, fake_idp.seed(f"seed-{_}"))
        make_source(fake_idp, clock, store, tmp_path).token()
    assert fake_idp.counts["discovery"] == 1
    assert fake_idp.counts["refresh"] == 3


def test_discovery_issuer_mismatch_is_refused(fake_idp: FakeProvider, clock: FakeClock,
                                              secrets: CountingSecrets, tmp_path: Any) -> None:
    fake_idp.metadata_overrides["issuer"] = "https://evil.example.test"
    source = make_source(fake_idp, clock, secrets, tmp_path)
    secrets.inner.set_secret(KEY, fake_idp.seed())
    with pytest.raises(ConfigError, match="evil"):
        source.token()
    assert secrets.inner.get_secret(KEY) == "rt-0"


def test_http_endpoint_refused_for_non_loopback_issuer(
    fake_idp: FakeProvider, clock: FakeClock, secrets: CountingSecrets, tmp_path: Any
) -> None:
    fake_idp.metadata_overrides["token_endpoint"] = "http://idp.example.test/token"
    source = make_source(fake_idp, clock, secrets, tmp_path)
    secrets.inner.set_secret(KEY, fake_idp.seed())
    with pytest.raises(ConfigError, match="not https"):
        source.token()


@pytest.mark.parametrize(
    ("expires_in", "token_type", "message"),
    [(-5, "Bearer", "already expired"), (0, "Bearer", "already expired"),
     ("soon", "Bearer", "not a number"), (3600, "mac", "not Bearer")],
)
def test_bad_token_responses_are_typed_errors(
    fake_idp: FakeProvider, clock: FakeClock, secrets: CountingSecrets, tmp_path: Any,
    expires_in: Any, token_type: str, message: str,
) -> None:
    fake_idp.expires_in = expires_in
    fake_idp.token_type = token_type
    source = make_source(fake_idp, clock, secrets, tmp_path)
    secrets.inner.set_secret(KEY, fake_idp.seed())
    with pytest.raises(OAuthError, match=message) as info:
        source.token()
    assert info.value.error == "invalid_response"


def test_huge_expires_in_is_clamped(fake_idp: FakeProvider, clock: FakeClock,
                                    secrets: CountingSecrets, tmp_path: Any) -> None:
    fake_idp.expires_in = 10**30
    source = make_source(fake_idp, clock, secrets, tmp_path)
    secrets.inner.set_secret(KEY, fake_idp.seed())
    assert source.token() == "at-1"
    assert source._memory is not None
    assert source._memory.expiry is not None
    assert source._memory.expiry - clock.now <= 10 * 365 * 24 * 3600


def test_invalidate_only_drops_the_rejected_token(
    source: OAuthTokenSource, fake_idp: FakeProvider, secrets: CountingSecrets, clock: FakeClock
) -> None:
    secrets.inner.set_secret(KEY, fake_idp.seed())
    token = source.token()
    # another process wrote a fresher token meanwhile: it must survive
    expiry = datetime.fromtimestamp(clock.now + 3000, tz=timezone.utc)
    fresher = f"sibling|{expiry:%Y-%m-%dT%H:%M:%SZ}"
    secrets.inner.set_secret(KEY + "_AT", fresher)
    source.invalidate(token)
    assert secrets.inner.get_secret(KEY + "_AT") == fresher
    assert source.token() == "sibling"
    source.invalidate("sibling")
    assert secrets.inner.get_secret(KEY + "_AT") is None
    assert source.token() == "at-2"
    assert fake_idp.counts["refresh"] == 2


def test_invalidate_leaves_the_entry_to_a_process_that_is_refreshing(
    source: OAuthTokenSource, fake_idp: FakeProvider, secrets: CountingSecrets, tmp_path: Any
) -> None:
    """The check-and-delete of `_AT` runs under the refresh lock, without waiting: while
    another process holds it (it is refreshing and will replace the entry), nothing is
    deleted, so its fresh token cannot be lost between our read and our delete."""
    import time

    from oauth_auth._locking import lock_path, process_lock

    secrets.inner.set_secret(KEY, fake_idp.seed())
    token = source.token()
    with process_lock(lock_path(KEY, str(tmp_path)), 5):  # "another process" refreshing
        started = time.monotonic()
        source.invalidate(token)
        assert time.monotonic() - started < 2  # did not wait for the holder
        assert (secrets.inner.get_secret(KEY + "_AT") or "").startswith(token + "|")
    assert source._memory is None  # tier 1 dropped all the same
    source.invalidate(token)  # the lock is free: the rejected entry goes
    assert secrets.inner.get_secret(KEY + "_AT") is None
    assert source.token() == "at-2"


def test_invalidate_without_argument_drops_tiers_1_and_2(
    source: OAuthTokenSource, fake_idp: FakeProvider, secrets: CountingSecrets
) -> None:
    secrets.inner.set_secret(KEY, fake_idp.seed())
    source.token()
    source.invalidate()
    assert secrets.inner.get_secret(KEY + "_AT") is None
    assert secrets.inner.get_secret(KEY) == "rt-1"
    assert source.token() == "at-2"


def test_rejected_token_is_not_served_again_even_if_backend_keeps_it(
    source: OAuthTokenSource, fake_idp: FakeProvider, secrets: CountingSecrets, clock: FakeClock
) -> None:
    secrets.inner.set_secret(KEY, fake_idp.seed())
    expiry = datetime.fromtimestamp(clock.now + 3000, tz=timezone.utc)
    secrets.inner.set_secret(KEY + "_AT", f"bad|{expiry:%Y-%m-%dT%H:%M:%SZ}")
    assert source.token() == "bad"
    original = secrets.inner.delete_secret
    secrets.inner.delete_secret = lambda name: None  # the delete silently fails
    source.invalidate("bad")
    secrets.inner.delete_secret = original
    assert source.token() == "at-1"


def test_logout_revokes_and_deletes(source: OAuthTokenSource, fake_idp: FakeProvider,
                                    secrets: CountingSecrets) -> None:
    secrets.inner.set_secret(KEY, fake_idp.seed())
    source.token()
    result = source.logout_result()
    assert result.revoked
    assert result.deleted
    # The refresh token alone: the provider revokes the grant's access tokens with it.
    assert fake_idp.revoked == ["rt-1"]
    assert not result.access_token_revoked
    assert secrets.inner.get_secret(KEY) is None
    assert secrets.inner.get_secret(KEY + "_AT") is None
    with pytest.raises(LoginRequiredError):
        source.token()


def test_logout_deletes_locally_when_revocation_fails(
    source: OAuthTokenSource, fake_idp: FakeProvider, secrets: CountingSecrets
) -> None:
    secrets.inner.set_secret(KEY, fake_idp.seed())
    fake_idp.metadata_overrides["revocation_endpoint"] = f"{ISSUER}/missing"
    source.logout()
    assert secrets.inner.get_secret(KEY) is None


def test_constructor_validation(fake_idp: FakeProvider, clock: FakeClock) -> None:
    oidc = OIDCParams(ISSUER, "cli")
    with pytest.raises(TypeError, match="key_provider"):
        OAuthTokenSource(oidc)
    with pytest.raises(ValueError, match="negative"):
        OAuthTokenSource(oidc, key_provider=lambda: KEY, preemptive_refresh_window=-1)
    with pytest.raises(ValueError, match="negative"):
        OAuthTokenSource(oidc, key_provider=lambda: KEY,
                         preemptive_refresh_window=timedelta(seconds=-1))
    src = OAuthTokenSource(oidc, key_provider=lambda: KEY,
                           preemptive_refresh_window=timedelta(minutes=10))
    assert src.preemptive_refresh_window == 600
    assert OAuthTokenSource(oidc, key_provider=lambda: KEY).preemptive_refresh_window == 30
    with pytest.raises(ValueError, match="login_method"):
        OAuthTokenSource(oidc, key_provider=lambda: KEY, login_method="carrier-pigeon")
    assert OIDCParams(ISSUER, "cli").port == 8666
    assert OIDCParams(ISSUER, "cli", callback_port=9000).port == 9000
    assert OIDCParams(ISSUER, "cli").callback_port == 8666
    plain = OAuthTokenSource(OIDCParams("http://idp.example.test", "cli"),
                             key_provider=lambda: KEY, secrets_provider=MemorySecrets({KEY: "rt"}),
                             transport=fake_idp.transport())
    with pytest.raises(ConfigError, match="https"):  # plain http off loopback: at discovery
        plain.token()
    with pytest.raises(ConfigError):
        OIDCParams(ISSUER, "cli", scopes="openid email")


def test_key_provider_must_return_a_key(fake_idp: FakeProvider, clock: FakeClock,
                                        tmp_path: Any) -> None:
    source = OAuthTokenSource(OIDCParams(ISSUER, "cli"), key_provider=lambda: "",
                              secrets_provider=MemorySecrets(), clock=clock,
                              transport=fake_idp.transport(), lock_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="empty"):
        source.token()


def test_reprs_hold_no_secret(source: OAuthTokenSource, fake_idp: FakeProvider,
                              secrets: CountingSecrets) -> None:
    secrets.inner.set_secret(KEY, fake_idp.seed("rt-secret-value"))
    token = source.token()
    assert token not in repr(source)
    assert source._memory is not None
    text = repr(source._memory)
    assert token not in text
    assert "rt-" not in text
    assert "expiry=" in text


def test_64_threads_make_exactly_one_refresh(
    fake_idp: FakeProvider, clock: FakeClock, secrets: CountingSecrets, tmp_path: Any
) -> None:
    fake_idp.delay = 0.05  # a slow provider widens the race window
    source = make_source(fake_idp, clock, secrets, tmp_path)
    secrets.inner.set_secret(KEY, fake_idp.seed())
    barrier = threading.Barrier(64)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            results.append(source.token())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 64
    assert set(results) == {"at-1"}
    assert fake_idp.counts["refresh"] == 1


async def test_1000_tasks_make_one_refresh_and_the_loop_keeps_serving(
    fake_idp: FakeProvider, clock: FakeClock, secrets: CountingSecrets, tmp_path: Any
) -> None:
    fake_idp.delay = 0.3  # the refresh blocks a worker thread for 300 ms
    window: list[float] = []
    handle = fake_idp.handle

    def timed(request: Any) -> Any:
        if request.url.path == "/token":
            window.append(time.perf_counter())
            try:
                return handle(request)
            finally:
                window.append(time.perf_counter())
        return handle(request)

    fake_idp.handle = timed  # type: ignore[method-assign]
    source = make_source(fake_idp, clock, secrets, tmp_path)
    secrets.inner.set_secret(KEY, fake_idp.seed())
    ticks: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.005)
            ticks.append(time.perf_counter())

    tick = asyncio.create_task(ticker())
    results = await asyncio.gather(*(source.atoken() for _ in range(1000)))
    stop.set()
    await tick
    assert set(results) == {"at-1"}
    assert len(results) == 1000
    assert fake_idp.counts["refresh"] == 1
    # The loop kept running other tasks while the refresh was in flight: a loop blocked by
    # the refresh would show no tick at all inside that 300 ms window.
    begin, end = window
    during = [t for t in ticks if begin < t < end]
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    print(f"\n{len(during)} loop ticks during the 300 ms refresh; longest gap"
          f" {max(gaps) * 1000:.1f} ms")
    assert len(during) >= 5


def test_waiting_for_another_process_is_bounded_and_names_the_lock_file(
    fake_idp: FakeProvider, clock: FakeClock, secrets: CountingSecrets, tmp_path: Any
) -> None:
    import filelock

    from oauth_auth import LockTimeoutError

    source = make_source(fake_idp, clock, secrets, tmp_path, lock_timeout=0.3)
    secrets.inner.set_secret(KEY, fake_idp.seed())
    path = source.lock_file
    assert path.parent == tmp_path
    holder = filelock.FileLock(str(path), thread_local=False, mode=0o600)
    with holder:  # "another process" holds the refresh lock
        started = time.monotonic()
        with pytest.raises(LockTimeoutError) as info:
            source.token()
        assert time.monotonic() - started < 2
    assert str(path) in str(info.value)
    assert info.value.path == str(path)
    assert fake_idp.counts["refresh"] == 0
    assert source.token() == "at-1"  # free again
    path.unlink()
    source.invalidate()
    assert source.token() == "at-2"  # this refresh created the lock file itself
    assert (path.stat().st_mode & 0o777) == 0o600


def test_default_lock_file_is_private_and_not_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import os

    from oauth_auth._locking import default_lock_dir, lock_path

    monkeypatch.delenv("OAUTH_AUTH_LOCK_DIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    path = lock_path("SOME_KEY")
    assert path.parent == default_lock_dir()
    assert str(path).startswith(str(tmp_path))
    assert not str(path).startswith(os.getcwd())
    assert "SOME_KEY" not in path.name
    monkeypatch.setenv("OAUTH_AUTH_LOCK_DIR", str(tmp_path / "x"))
    assert lock_path("K").parent == tmp_path / "x"


@pytest.mark.parametrize(
    ("fault", "expect_login"),
    [
        ((400, {"error": "invalid_grant"}, {}), True),
        ((400, {"error": "invalid_scope"}, {}), True),
        ((400, {"error": "invalid_client"}, {}), False),
        ((200, "<html>proxy</html>", {}), False),
        ((503, "", {}), False),
    ],
)
def test_interactive_logs_in_only_when_a_login_can_cure_the_refresh_error(
    fake_idp: FakeProvider, clock: FakeClock, secrets: CountingSecrets, tmp_path: Any,
    fault: tuple[int, Any, dict[str, str]], expect_login: bool,
) -> None:
    from oauth_auth import OAuthAuthError
    from oauth_auth._token import Token

    source = make_source(fake_idp, clock, secrets, tmp_path, interactive=True)
    logins: list[str] = []

    def fake_login(store: Any, held: str | None) -> Token:
        logins.append(store.key)
        return source._install(store, Token("login-token", clock.now + 3600, "rt-login"), held)

    source._login_and_store = fake_login  # type: ignore[method-assign]
    secrets.inner.set_secret(KEY, fake_idp.seed())
    fake_idp.faults.append(fault)
    if expect_login:
        assert source.token() == "login-token"
        assert logins == [KEY]
        assert secrets.inner.get_secret(KEY) == "rt-login"
    else:
        with pytest.raises(OAuthAuthError):
            source.token()
        assert logins == []
        assert secrets.inner.get_secret(KEY) == "rt-0"  # nothing lost


# ------------------------------------------------ regressions (each failed before its fix)


def test_an_unusable_lock_directory_is_a_typed_error_and_keeps_the_session(
    tmp_path: Path,
) -> None:
    from oauth_auth import ConfigError, MemorySecrets, OAuthTokenSource, OIDCParams
    from tests.support.fakes import ISSUER, FakeClock, FakeProvider

    base = tmp_path
    (base / "file").write_text("not a directory")
    provider = FakeProvider()
    store = MemorySecrets({"K": provider.seed("rt-0")})
    source = OAuthTokenSource(OIDCParams(ISSUER, "cli"), key_provider=lambda: "K",
                              secrets_provider=store, lock_dir=base / "file" / "locks",
                              transport=provider.transport(), clock=FakeClock())
    with pytest.raises(ConfigError, match="cannot create the refresh lock file") as info:
        source.token()
    assert "lock_dir" in info.value.hint
    assert store.get_secret("K") == "rt-0"
    assert provider.counts["refresh"] == 0
    (base / "file").unlink()
    assert source.token() == "at-1"


def test_a_rotated_refresh_token_the_store_refused_is_kept_and_stored_later(
    tmp_path: Path,
) -> None:
    """The store fails the write of a rotated refresh token (keyring gone for a moment):
    the stored one is spent, so the next refresh must use the new one from memory and
    store it, not spend the stored one and end the session with invalid_grant."""
    from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCParams
    from tests.support.fakes import ISSUER, CountingSecrets, FakeClock, FakeProvider

    provider = FakeProvider()
    inner = MemorySecrets({"K": provider.seed("rt-0")})
    store = CountingSecrets(inner)
    store.fail_writes = {"K"}
    clock = FakeClock()
    source = OAuthTokenSource(OIDCParams(ISSUER, "cli"), key_provider=lambda: "K",
                              secrets_provider=store, transport=provider.transport(),
                              clock=clock, lock_dir=tmp_path)
    assert source.token() == "at-1"  # served; rt-1 lives only in memory
    assert inner.get_secret("K") == "rt-0"

    clock.advance(3600)  # still failing: refresh with rt-1, remember rt-2
    assert source.token() == "at-2"
    assert inner.get_secret("K") == "rt-0"

    store.fail_writes.clear()  # the backend is back
    clock.advance(3600)
    assert source.token() == "at-3"
    assert provider.counts["invalid_grant"] == 0
    assert inner.get_secret("K") == "rt-3"


def _refusing_source(tmp_path: Path) -> tuple[Any, Any, Any]:
    from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCParams
    from tests.support.fakes import ISSUER, CountingSecrets, FakeClock, FakeProvider

    provider = FakeProvider()
    inner = MemorySecrets({"K": provider.seed("rt-0")})
    store = CountingSecrets(inner)
    store.fail_writes = {"K"}
    source = OAuthTokenSource(OIDCParams(ISSUER, "cli"), key_provider=lambda: "K",
                              secrets_provider=store, transport=provider.transport(),
                              clock=FakeClock(), lock_dir=tmp_path)
    assert source.token() == "at-1"  # rt-0 spent, rt-1 refused by the store
    assert inner.get_secret("K") == "rt-0"
    return source, store, inner


def test_a_refused_rotation_is_stored_when_the_source_goes_away(tmp_path: Path) -> None:
    """Before: a process that ended before its next refresh took the only copy of the new
    refresh token with it, and the next process met invalid_grant."""
    import gc

    source, store, inner = _refusing_source(tmp_path)
    store.fail_writes.clear()  # the backend is back before the process ends
    writes = store.calls["set"]
    del source
    gc.collect()
    assert inner.get_secret("K") == "rt-1"
    assert store.calls["set"] == writes + 1


def test_the_last_try_never_overwrites_another_processs_login(tmp_path: Path) -> None:
    import gc

    source, store, inner = _refusing_source(tmp_path)
    store.fail_writes.clear()
    inner.set_secret("K", "rt-from-a-new-login")  # another process logged in meanwhile
    del source
    gc.collect()
    assert inner.get_secret("K") == "rt-from-a-new-login"


def test_logout_forgets_a_refused_rotation(tmp_path: Path) -> None:
    import gc

    source, store, inner = _refusing_source(tmp_path)
    store.fail_writes.clear()
    source.logout()
    assert inner.get_secret("K") is None
    del source
    gc.collect()
    assert inner.get_secret("K") is None  # nothing written back after the logout


def test_a_refused_rotation_is_stored_when_the_process_exits(tmp_path: Path) -> None:
    """The same at a real interpreter exit, with the source still alive (a module global)."""
    import subprocess
    import sys
    import textwrap

    from tests.support.filesecrets import FileSecrets

    root = Path(__file__).resolve().parents[2]
    store_dir = tmp_path / "store"
    FileSecrets(store_dir).set_secret("K", "rt-0")
    code = textwrap.dedent(f"""
        import sys
        from oauth_auth import OAuthTokenSource, OIDCParams, SecretsError
        from tests.support.fakes import ISSUER, FakeClock, FakeProvider
        from tests.support.filesecrets import FileSecrets

        class Refusing(FileSecrets):
            refuse = True
            def set_secret(self, name, value):
                if self.refuse and name == "K":
                    raise SecretsError("backend read-only (test)")
                super().set_secret(name, value)

        provider = FakeProvider()
        provider.seed("rt-0")
        store = Refusing({str(store_dir)!r})
        SOURCE = OAuthTokenSource(OIDCParams(ISSUER, "cli"), key_provider=lambda: "K",
                                  secrets_provider=store, transport=provider.transport(),
                                  clock=FakeClock(), lock_dir={str(tmp_path)!r})
        print(SOURCE.token(), store.get_secret("K"))
        store.refuse = False
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=root, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["at-1", "rt-0"]
    assert FileSecrets(store_dir).get_secret("K") == "rt-1"
    assert "rt-1" not in result.stderr
    assert "rt-0" not in result.stderr


# ------------------------------------------------------------- a herd on a fleet store
#
# A sibling host holds the refresh lease; this source waits for it on `LeasedSecrets`
# (the real `_lease.hold_lease` loop on a fake backend and the fake clock), whose sleep
# plays the sibling's steps. The e2e proofs (tests/e2e/test_fleet_proof.py) run the same
# herd on real Redis and PostgreSQL.

SIBLING = "host-a:4242:sibling"


def _fleet(fake_idp: FakeProvider, clock: FakeClock, tmp_path: Any, **kwargs: Any
           ) -> tuple[OAuthTokenSource, LeasedSecrets, list[str | None]]:
    """A source on a leased store that the sibling holds; the store holds rt-0 and an
    expired shared token. Returns the source, the store, and who held the lease at each
    token request."""
    secrets = LeasedSecrets(clock)
    secrets.set_secret(KEY, fake_idp.seed("rt-0"))
    secrets.set_secret(KEY + "_AT", f"at-old|{format_rfc3339(clock() - 60)}")
    assert secrets.backend.try_lease(KEY, SIBLING, 30.0) is None
    holders: list[str | None] = []
    handle = fake_idp.handle

    def recording(request: Any) -> Any:
        if request.url.path == "/token":
            holders.append(secrets.backend.holder(KEY))
        return handle(request)

    fake_idp.handle = recording  # type: ignore[method-assign]
    return make_source(fake_idp, clock, secrets, tmp_path, **kwargs), secrets, holders


def _share(secrets: LeasedSecrets, access: str, expiry: float, key: str = KEY) -> None:
    secrets.set_secret(key + "_AT", f"{access}|{format_rfc3339(expiry)}")


def test_a_waiter_serves_the_siblings_token_without_taking_the_lease(
    fake_idp: FakeProvider, clock: FakeClock, tmp_path: Any
) -> None:
    source, secrets, holders = _fleet(fake_idp, clock, tmp_path)
    secrets.during_sleep = [
        lambda: None,  # the sibling is still at the token endpoint
        lambda: secrets.set_secret(KEY, "rt-sibling"),  # it stored its rotation...
        lambda: _share(secrets, "at-sibling", clock() + 3600),  # ...then the access token
    ]  # and it has not released its lease yet
    assert source.token() == "at-sibling"
    assert secrets.backend.taken == [SIBLING]  # this source never held the lease
    assert secrets.backend.holder(KEY) == SIBLING
    assert secrets.dones == 3
    assert holders == []  # no token request at all
    assert fake_idp.counts["refresh"] == 0
    assert secrets.get_secret(KEY) == "rt-sibling"  # nothing written over the sibling's
    before = secrets.backend.tries
    assert source.token() == "at-sibling"  # from memory now
    assert secrets.backend.tries == before


async def test_an_async_waiter_serves_the_siblings_token_too(
    fake_idp: FakeProvider, clock: FakeClock, tmp_path: Any
) -> None:
    """`atoken()` runs the same engine in a worker thread: the same wait, the same rule."""
    source, secrets, holders = _fleet(fake_idp, clock, tmp_path)
    secrets.during_sleep = [lambda: _share(secrets, "at-sibling", clock() + 3600)]
    results = await asyncio.gather(*(source.atoken() for _ in range(5)))
    assert results == ["at-sibling"] * 5
    assert secrets.backend.taken == [SIBLING]
    assert holders == []
    assert fake_idp.counts["refresh"] == 0


@pytest.mark.parametrize("unservable", ["expired", "inside our window", "rejected",
                                        "another key's"])
def test_a_shared_token_that_is_not_servable_does_not_end_the_wait(
    fake_idp: FakeProvider, clock: FakeClock, tmp_path: Any, unservable: str
) -> None:
    """Only what tier 2 would serve ends the wait; otherwise the waiter keeps waiting, takes
    the lease once the sibling lets go, and refreshes while it holds it (once)."""
    source, secrets, holders = _fleet(fake_idp, clock, tmp_path, preemptive_refresh_window=60)
    if unservable == "rejected":
        source.invalidate("at-refused")  # a resource server refused it: never served
        assert secrets.backend.taken == [SIBLING]  # invalidate's lock(0) found it held
    write = {
        "expired": lambda: _share(secrets, "at-expired", clock() - 1),
        "inside our window": lambda: _share(secrets, "at-short", clock() + 30),
        "rejected": lambda: _share(secrets, "at-refused", clock() + 3600),
        # another issuer's or profile's session: another key, never this one's `_AT`
        "another key's": lambda: _share(secrets, "at-elsewhere", clock() + 3600,
                                        key="OTHER_ISSUER_KEY"),
    }[unservable]
    secrets.during_sleep = [write, lambda: None,
                            lambda: secrets.backend.release_lease(KEY, SIBLING)]
    assert source.token() == "at-1"
    assert secrets.dones >= 3  # asked after each pause, never satisfied
    assert len(secrets.backend.taken) == 2
    waiter = secrets.backend.taken[1]
    assert waiter != SIBLING
    assert holders == [waiter]  # the one token request, made while holding the lease
    assert fake_idp.counts["refresh"] == 1
    assert fake_idp.counts["invalid_grant"] == 0
    assert secrets.get_secret(KEY) == "rt-1"
    shared = decode_at_entry(secrets.get_secret(KEY + "_AT"))
    assert shared is not None
    assert shared.access_token == "at-1"
    assert secrets.backend.holder(KEY) is None  # released


def test_a_waiter_refreshes_only_while_it_holds_the_lease(
    fake_idp: FakeProvider, clock: FakeClock, tmp_path: Any
) -> None:
    """The sibling gives up without sharing a token (its refresh failed): the waiter takes
    the lease, and its one refresh happens under it, never before."""
    source, secrets, holders = _fleet(fake_idp, clock, tmp_path)
    secrets.during_sleep = [lambda: None] * 4 + [
        lambda: secrets.backend.release_lease(KEY, SIBLING)]
    assert source.token() == "at-1"
    assert secrets.dones == 5
    assert holders == [secrets.backend.taken[-1]]
    assert secrets.backend.taken[-1] != SIBLING
    assert fake_idp.counts["refresh"] == 1


def test_a_sibling_that_never_shares_nor_lets_go_is_a_lock_timeout(
    fake_idp: FakeProvider, clock: FakeClock, tmp_path: Any
) -> None:
    source, secrets, holders = _fleet(fake_idp, clock, tmp_path, lock_timeout=3)
    secrets.during_sleep = [lambda: _share(secrets, "at-expired", clock() - 1)]
    start = clock()
    with pytest.raises(LockTimeoutError) as caught:
        source.token()
    assert 3 <= clock() - start < 3.6  # the lock_timeout, and not much more
    assert "process 4242 on host-a" in str(caught.value)
    assert secrets.dones == len(secrets.sleeps) >= 5  # it kept looking while it waited
    assert secrets.backend.taken == [SIBLING]
    assert holders == []
    assert fake_idp.counts["refresh"] == 0
    assert secrets.get_secret(KEY) == "rt-0"  # nothing spent, nothing lost
