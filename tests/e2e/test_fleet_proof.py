"""Issue 16, item 6: one session across many hosts, proven on real Redis and PostgreSQL.

Hosts are process groups that share nothing local (own HOME, XDG_RUNTIME_DIR and lock
directory: tests/support/fleet.py), only the store's server; the real oidc-provider
rotates the refresh token on every refresh and, on reuse of a spent one, answers
invalid_grant and revokes the whole grant. Its admin counts are the referee.

- the herd: 4 hosts x 4 processes at expiry make exactly 1 refresh, 0 invalid_grant, all
  get one token, and the stored refresh token is the newest and still active;
- the control: the same herd with the lock off races (so the herd proves something);
- a killed holder (SIGKILL) blocks the others for no longer than `lock_lease`;
- a lease that runs out during a slow refresh: its holder does not spend the token it read;
- a paused holder (SIGSTOP past its lease) never writes its older token over a newer one;
- a restart of the server mid-run: typed errors with a hint during the outage, no refresh
  token lost, and the next call works.

Leases are short (a few seconds) so that the whole file stays fast.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from oauth_auth import OAuthTokenSource, OIDCParams, SecretsError
from oauth_auth._sealing import generate_key
from oauth_auth._store import SecretsSessionStore
from oauth_auth._store_url import KEY_ENV, store_from_url
from oauth_auth._token import Token, decode_at_entry
from tests.support.fakes import FakeClock
from tests.support.fleet import Fleet, is_stopped
from tests.support.hygiene import LEDGER
from tests.support.idp import IdP, obtain_tokens, refresh_count

STORE_KEY = generate_key()
LEDGER.secret(STORE_KEY, "the fleet store's encryption key")
KEY = "OAUTH_AUTH_FLEET_SESSION"
#: Scheduling slack on a loaded 2-core machine, over a lease's length.
SLACK = 2.5

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses /proc and signals")


@dataclass
class Backend:
    """A store on the session's server, in a namespace (Redis) or table (PostgreSQL) of
    the test's own."""

    kind: str
    server_url: str
    name: str
    made: list[Any] = field(default_factory=list)

    def url(self, lock_lease: float | None = None) -> str:
        param = "namespace" if self.kind == "redis" else "table"
        url = f"{self.server_url}?{param}={self.name}"
        return url if lock_lease is None else f"{url}&lock_lease={lock_lease:g}"

    def store(self, lock_lease: float | None = None) -> Any:
        """A store object of its own (another "host"), closed after the test."""
        self.made.append(store_from_url(self.url(lock_lease), {KEY_ENV: STORE_KEY}))
        return self.made[-1]

    def close(self) -> None:
        for store in self.made:
            store.close()


def _backend(kind: str, request: pytest.FixtureRequest, server: Any = None) -> Backend:
    name = f"fleet_{uuid.uuid4().hex[:10]}"
    if kind == "redis":
        server = server or request.getfixturevalue("redis_server")
        return Backend(kind, server.url, name)
    server = server or request.getfixturevalue("postgres_server")
    return Backend(kind, server.dsn, name)


@pytest.fixture(params=["redis", "postgres"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    made = _backend(request.param, request)
    yield made
    made.close()


def seed(idp: IdP, store: Any) -> str:
    """Log in with the bench's own client; store its refresh token and an expired access
    token; reset the provider's counts. Returns the seeded refresh token."""
    tokens = obtain_tokens(idp)
    refresh = str(tokens["refresh_token"])
    LEDGER.secret(refresh, "seeded refresh token")
    LEDGER.secret(tokens["access_token"], "seeded access token")
    store.set_secret(KEY, refresh)
    store.set_secret(KEY + "_AT", f"{tokens['access_token']}|2001-01-01T00:00:00Z")
    idp.reset_counts()
    return refresh


def fleet(tmp_path: Path, idp: IdP, url: str) -> Fleet:
    base = {"issuer": idp.issuer, "client_id": idp.client_id, "key": KEY, "store": url}
    return Fleet(tmp_path, base, {KEY_ENV: STORE_KEY})


def stored_refresh(backend: Backend) -> str | None:
    value = backend.store().get_secret(KEY)
    if value:
        LEDGER.secret(value, "refresh token the hosts left")
    return value


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"{what} within {timeout:g} s")


# --------------------------------------------------------------------- the herd


def test_the_herd_makes_one_refresh(real_idp: IdP, backend: Backend, tmp_path: Path) -> None:
    """4 hosts x 4 processes, an expired access token, one rotating refresh token."""
    seeded = seed(real_idp, backend.store())
    with fleet(tmp_path, real_idp, backend.url(lock_lease=20)) as hosts:
        procs = hosts.start(hosts=4, per_host=4)
        assert len({os.getpgid(p.pid) for p in procs}) == 4  # four process groups
        hosts.go()
        results = hosts.finish()
    assert len(results) == 16
    assert all(r.startswith("TOKEN ") for r in results), results
    tokens = {r.split()[1] for r in results}
    assert len(tokens) == 1  # one token for all 16
    counts = real_idp.counts()
    assert refresh_count(counts) == 1, counts
    assert refresh_count(counts, "invalid_grant") == 0, counts
    (token,) = tokens
    assert real_idp.active(token)
    stored = stored_refresh(backend)
    assert stored is not None
    assert stored != seeded  # the rotation was stored...
    assert real_idp.active(stored)  # ...and it is the newest: the grant is alive with it
    assert not real_idp.active(seeded)
    shared = decode_at_entry(backend.store().get_secret(KEY + "_AT"))
    assert shared is not None
    assert shared.access_token == token
    # Waiters take the holder's token as soon as it is shared, without the lease (one
    # pause each, not one lease after another); the holder's refresh lasts far longer
    # than the first pauses, so some of the 15 are waiting when it lands.
    waited = [p for p in procs if "served without taking the lock" in p.stderr]
    assert 1 <= len(waited) <= 15, [p.stderr[-400:] for p in procs]


def test_control_without_the_lock_the_herd_races(real_idp: IdP, backend: Backend,
                                                 tmp_path: Path) -> None:
    """The same herd with the session lock off: the race the lease prevents is real."""
    seed(real_idp, backend.store())
    with fleet(tmp_path, real_idp, backend.url(lock_lease=20)) as hosts:
        hosts.start(hosts=4, per_host=4, lock=False)
        hosts.go()
        results = hosts.finish()
    counts = real_idp.counts()
    assert refresh_count(counts, "invalid_grant") >= 1, (counts, results)
    assert any(r.startswith("ERROR InvalidGrantError") for r in results) or (
        refresh_count(counts) > 1
    ), (counts, results)


# --------------------------------------------------------------------- holders that stop


def test_a_killed_holder_blocks_others_no_longer_than_its_lease(
    real_idp: IdP, backend: Backend, tmp_path: Path
) -> None:
    """The first lease holder hangs in discovery (the provider delays it) and is killed
    with SIGKILL: the others wait for its lease to run out, no longer, then one of them
    refreshes for all."""
    lease = 3.0
    seed(real_idp, backend.store())
    real_idp.inject_fault("/.well-known/openid-configuration", delay_ms=30_000, count=1)
    probe = backend.store()
    with fleet(tmp_path, real_idp, backend.url(lock_lease=lease)) as hosts:
        procs = hosts.start(hosts=2, per_host=2)
        hosts.go()
        holder = wait_for(lambda: probe.lease_holder(KEY), 30, "no process took the lease")
        taken = time.monotonic()
        # Kill it once it is inside the refresh (its discovery request is being delayed),
        # not before: otherwise the next holder would get the delay.
        wait_for(lambda: not real_idp.faults(), 10, "the holder never called the provider")
        match = re.match(r"process (\d+) on ", holder)
        assert match, holder
        victim = next(p for p in procs if p.pid == int(match.group(1)))
        os.kill(victim.pid, signal.SIGKILL)
        survivors = [p for p in procs if p is not victim]
        results = hosts.finish(survivors)
        blocked = max(p.done_at for p in survivors) - taken
        hosts.finish([victim])
    assert victim.popen.returncode == -signal.SIGKILL
    assert all(r.startswith("TOKEN ") for r in results), results
    assert len({r.split()[1] for r in results}) == 1
    counts = real_idp.counts()
    assert refresh_count(counts) == 1, counts
    assert refresh_count(counts, "invalid_grant") == 0, counts
    # The dead holder's lease was honoured to its end, and not a moment longer than needed.
    assert lease - 0.5 < blocked < lease + SLACK, blocked
    stored = stored_refresh(backend)
    assert stored is not None
    assert real_idp.active(stored)


def test_a_lease_that_runs_out_during_a_slow_refresh_spends_nothing(
    real_idp: IdP, backend: Backend, tmp_path: Path
) -> None:
    """The pitfall of a lease shorter than the refresh: the first holder's discovery takes
    longer than its lease, another host takes the lease and refreshes. The first holder
    then finds its lease gone and does not spend the token it read (a reuse would revoke
    the grant): it uses the other's token. (Without the renewal before spending: one
    invalid_grant and a revoked session.)"""
    lease = 2.0
    seed(real_idp, backend.store())
    real_idp.inject_fault("/.well-known/openid-configuration", delay_ms=3500, count=1)
    with fleet(tmp_path, real_idp, backend.url(lock_lease=lease)) as hosts:
        procs = hosts.start(hosts=2, per_host=1)
        hosts.go()
        results = hosts.finish()
    assert all(r.startswith("TOKEN ") for r in results), results
    assert len({r.split()[1] for r in results}) == 1
    counts = real_idp.counts()
    assert not real_idp.faults()  # the slow discovery did happen
    assert refresh_count(counts) == 1, counts
    assert refresh_count(counts, "invalid_grant") == 0, counts
    slow = [p for p in procs if "the refresh token is not spent" in p.stderr]
    assert len(slow) == 1, [p.stderr[-1500:] for p in procs]
    stored = stored_refresh(backend)
    assert stored is not None
    assert real_idp.active(stored)


def test_a_paused_holder_never_writes_an_older_token_over_a_newer_one(
    real_idp: IdP, backend: Backend, tmp_path: Path
) -> None:
    """A holder stops (SIGSTOP) after the provider rotated its token and before it wrote
    it, and stays stopped past its lease. Another host takes the lease once it runs out
    and stores a newer session (a new login). Resumed (SIGCONT), the paused holder's
    compare-and-set finds the newer token and leaves it: the stored token is the newest
    and active. (A plain write would put back a token of the older grant.)"""
    lease = 3.0
    seeded = seed(real_idp, backend.store())
    other = backend.store(lock_lease=lease)
    with fleet(tmp_path, real_idp, backend.url(lock_lease=lease)) as hosts:
        (paused,) = hosts.start(hosts=1, per_host=1, pause_before_write=True)
        hosts.go()
        assert paused.paused.wait(30), paused.stderr[-800:]
        wait_for(lambda: is_stopped(paused.pid), 10, "the holder did not stop")
        assert refresh_count(real_idp.counts()) == 1  # it spent the seeded token
        assert other.lease_holder(KEY) == f"process {paused.pid} on {os.uname().nodename}"
        # Another host: waits for the lease to run out, then a person logs in there.
        session = SecretsSessionStore(other, KEY, lock_dir=tmp_path / "other-locks")
        started = time.monotonic()
        with session.lock(timeout=lease + SLACK):
            waited = time.monotonic() - started
            login = obtain_tokens(real_idp)
            newer = str(login["refresh_token"])
            LEDGER.secret(newer, "the other host's login")
            LEDGER.secret(login["access_token"], "the other host's access token")
            assert session.read_refresh_token().held == seeded
            assert session.save(Token(login["access_token"], time.time() + 3600, newer),
                                previous=seeded)
        assert 0 < waited < lease + SLACK, waited
        assert is_stopped(paused.pid)  # still paused: the lease did not wait for it
        os.kill(paused.pid, signal.SIGCONT)
        (result,) = hosts.finish([paused])
    assert result.startswith("TOKEN "), result  # its caller still got a valid token
    assert "the newer one is kept" in paused.stderr
    stored = stored_refresh(backend)
    assert stored == newer  # not the paused holder's older rotation
    assert real_idp.active(stored)
    counts = real_idp.counts()
    assert refresh_count(counts) == 1, counts
    assert refresh_count(counts, "invalid_grant") == 0, counts


# --------------------------------------------------------------------- a restart


@pytest.mark.parametrize("kind", ["redis", "postgres"])
def test_a_server_restart_mid_run_loses_no_refresh_token(
    real_idp: IdP, kind: str, request: pytest.FixtureRequest
) -> None:
    """The server goes down while a host's refresh is at the provider, stays down a while,
    and comes back on the same port and data.

    During the outage every call is a SecretsError with a hint and spends nothing; the
    rotation the provider issued while the server was down is kept in memory and written
    at the host's next call, so no refresh token is lost; every next call works."""
    factory = request.getfixturevalue("redis_factory" if kind == "redis" else "postgres_factory")
    server = factory()
    backend = _backend(kind, request, server)
    request.addfinalizer(backend.close)
    lease = 2.0
    store_a, store_b = backend.store(lock_lease=lease), backend.store(lock_lease=lease)
    seeded = seed(real_idp, store_a)
    clock = FakeClock(time.time())

    def source(store: Any, name: str) -> OAuthTokenSource:
        return OAuthTokenSource(OIDCParams(real_idp.issuer, real_idp.client_id),
                                key_provider=lambda: KEY, secrets_provider=store,
                                lock_dir=str(request.getfixturevalue("tmp_path") / name),
                                lock_timeout=lease + SLACK, http_timeout=10, clock=clock)

    host_a, host_b = source(store_a, "a"), source(store_b, "b")
    # 1. The server stops while host A's refresh is at the provider (delayed 1.5 s).
    real_idp.inject_fault("/token", delay_ms=1500, count=1)
    got: list[str] = []
    worker = threading.Thread(target=lambda: got.append(host_a.token()))
    worker.start()
    wait_for(lambda: store_b.lease_holder(KEY), 20, "host A did not take the lease")
    # Its token request has reached the provider (the delay fault is taken): stop now.
    wait_for(lambda: not real_idp.faults(), 20, "host A never called the token endpoint")
    server.stop()
    worker.join(30)
    assert len(got) == 1  # its caller got the new token: kept in memory
    LEDGER.secret(got[0], "host A's token")
    assert refresh_count(real_idp.counts()) == 1
    # 2. The outage: a typed error with a hint, on every host, and nothing spent.
    clock.advance(4000)  # host A's token has expired too
    for host in (host_a, host_b):
        with pytest.raises(SecretsError) as caught:
            host.token()
        assert "running and reachable" in caught.value.hint, caught.value.hint
        assert "session is kept" in caught.value.hint
    assert refresh_count(real_idp.counts()) == 1
    # 3. Back: host A's next call stores the rotation it kept, then spends it.
    server.start()
    renewed = host_a.token()
    LEDGER.secret(renewed, "host A's token after the restart")
    assert renewed != got[0]
    assert host_b.token() == renewed  # a tier-2 hit from the server
    counts = real_idp.counts()
    assert refresh_count(counts) == 2, counts
    assert refresh_count(counts, "invalid_grant") == 0, counts
    stored = store_b.get_secret(KEY)
    assert stored not in (None, seeded)
    LEDGER.secret(stored, "refresh token after the restart")
    assert real_idp.active(str(stored))
    host_a.close()
    host_b.close()
