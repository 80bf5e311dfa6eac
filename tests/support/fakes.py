"""Fast fakes for unit tests: a fake clock and an in-process OAuth provider on MockTransport.

Every behaviour tested with these is also proven end to end against the real provider.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx

ISSUER = "https://idp.example.test"


class FakeClock:
    """Seconds since the epoch, moved only by the test."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


@dataclass
class FakeProvider:
    """An OAuth provider behind httpx.MockTransport.

    Issues access tokens `at-<n>` and, with rotation, refresh tokens `rt-<n>`; a spent
    refresh token is `invalid_grant` (and, like oidc-provider, revokes its family).
    `faults` is a list of (status, json body, headers) answered before normal service.
    """

    issuer: str = ISSUER
    expires_in: Any = 3600
    rotate: bool = True
    delay: float = 0.0
    valid_refresh: set[str] = field(default_factory=set)
    faults: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    metadata_overrides: dict[str, Any] = field(default_factory=dict)
    revoked: list[str] = field(default_factory=list)
    token_type: str = "Bearer"

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._n = 0

    def seed(self, refresh_token: str = "rt-0") -> str:
        self.valid_refresh.add(refresh_token)
        return refresh_token

    def metadata(self) -> dict[str, Any]:
        doc = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/auth",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "revocation_endpoint": f"{self.issuer}/revoke",
            "device_authorization_endpoint": f"{self.issuer}/device",
        }
        doc.update(self.metadata_overrides)
        return doc

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/.well-known/openid-configuration"):
            self.counts["discovery"] += 1
            return httpx.Response(200, json=self.metadata())
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if path == "/revoke":
            self.counts["revocation"] += 1
            self.revoked.append(form.get("token", ""))
            with self._lock:
                self.valid_refresh.discard(form.get("token", ""))
            return httpx.Response(200)
        if path != "/token":
            return httpx.Response(404)
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.requests.append(form)
            if self.faults:
                status, fault, headers = self.faults.pop(0)
                self.counts[f"fault_{status}"] += 1
                if isinstance(fault, (bytes, str)):
                    return httpx.Response(status, content=fault, headers=headers)
                return httpx.Response(status, json=fault, headers=headers)
            grant = form.get("grant_type")
            if grant != "refresh_token":
                return httpx.Response(400, json={"error": "unsupported_grant_type"})
            rt = form.get("refresh_token", "")
            if rt not in self.valid_refresh:
                self.counts["invalid_grant"] += 1
                return httpx.Response(
                    400, json={"error": "invalid_grant", "error_description": "grant not found"}
                )
            self.counts["refresh"] += 1
            self._n += 1
            body: dict[str, Any] = {
                "access_token": f"at-{self._n}",
                "token_type": self.token_type,
                "scope": "openid offline_access",
            }
            if self.expires_in is not None:
                body["expires_in"] = self.expires_in
            if self.rotate:
                self.valid_refresh.discard(rt)
                new_rt = f"rt-{self._n}"
                self.valid_refresh.add(new_rt)
                body["refresh_token"] = new_rt
            return httpx.Response(200, content=json.dumps(body).encode(),
                                  headers={"Content-Type": "application/json"})


class FakeLeaseBackend:
    """A `_lease.LeaseBackend` in a dict, with expiries on a fake clock.

    `taken` lists every holder that took a lease, in order; `tries` counts the tries.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.leases: dict[str, tuple[str, float]] = {}
        self.taken: list[str] = []
        self.tries = 0
        self.fail_release = False

    def try_lease(self, name: str, holder: str, seconds: float) -> str | None:
        self.tries += 1
        current = self.leases.get(name)
        if current is not None and current[1] > self.clock():
            return current[0]
        self.leases[name] = (holder, self.clock() + seconds)
        self.taken.append(holder)
        return None

    def release_lease(self, name: str, holder: str) -> None:
        if self.fail_release:
            from oauth_auth.errors import SecretsError

            raise SecretsError("server down")
        if self.leases.get(name, ("", 0.0))[0] == holder:
            del self.leases[name]

    def renew_lease(self, name: str, holder: str, seconds: float) -> bool:
        if self.leases.get(name, ("", 0.0))[0] != holder:
            return False
        self.leases[name] = (holder, self.clock() + seconds)
        return True

    def holder(self, name: str) -> str | None:
        """Who holds the lease of `name` now (None: free or run out)."""
        current = self.leases.get(name)
        return current[0] if current is not None and current[1] > self.clock() else None


class LeasedSecrets:
    """A fleet store without a server: `MemorySecrets` plus the three capabilities, its lock
    being the real `_lease.hold_lease` loop on a `FakeLeaseBackend` and a `FakeClock`.

    Its sleep advances the clock, then runs the next of `during_sleep` (what a sibling host
    does meanwhile: write the shared token, release its lease), so a test scripts a herd
    without threads. `dones` counts the `done` checks the wait made.
    """

    def __init__(self, clock: FakeClock, lease: float = 30.0) -> None:
        from oauth_auth import MemorySecrets

        self.inner = MemorySecrets()
        self.clock = clock
        self.lease = lease
        self.backend = FakeLeaseBackend(clock)
        self.during_sleep: list[Callable[[], object]] = []
        self.sleeps: list[float] = []
        self.dones = 0

    def get_secret(self, name: str) -> str | None:
        return self.inner.get_secret(name)

    def set_secret(self, name: str, value: str) -> None:
        self.inner.set_secret(name, value)

    def delete_secret(self, name: str) -> None:
        self.inner.delete_secret(name)

    def compare_and_set(self, name: str, expected: str | None, value: str) -> bool:
        if (self.inner.get_secret(name) or None) != expected:
            return False
        self.inner.set_secret(name, value)
        return True

    def compare_and_delete(self, name: str, expected: str) -> bool:
        if self.inner.get_secret(name) != expected:
            return False
        self.inner.delete_secret(name)
        return True

    def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)
        if self.during_sleep:
            self.during_sleep.pop(0)()

    def lock(self, name: str, *, timeout: float, done: Callable[[], bool] | None = None
             ) -> contextlib.AbstractContextManager[object]:
        from oauth_auth._lease import hold_lease

        def counted() -> bool:
            assert done is not None
            self.dones += 1
            return done()

        return hold_lease(self.backend, name, timeout=timeout, lease=self.lease,
                          where="fake://", done=None if done is None else counted,
                          clock=self.clock, sleep=self._sleep)


class CountingSecrets:
    """Wraps a secrets provider and counts calls by method (for "no keyring in hot loop")."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.fail_reads: set[str] = set()
        self.fail_writes: set[str] = set()

    def get_secret(self, name: str) -> str | None:
        self.calls["get"] += 1
        if name in self.fail_reads:
            from oauth_auth.errors import SecretsError

            raise SecretsError("backend locked (test)")
        value: str | None = self.inner.get_secret(name)
        return value

    def set_secret(self, name: str, value: str) -> None:
        self.calls["set"] += 1
        if name in self.fail_writes:
            from oauth_auth.errors import SecretsError

            raise SecretsError("backend read-only (test)")
        self.inner.set_secret(name, value)

    def delete_secret(self, name: str) -> None:
        self.calls["delete"] += 1
        self.inner.delete_secret(name)
