"""Shared pieces of the reliability suite: a seeded session on the real provider, the
checks every fault test makes, a small filesystem that can be full or read-only, and the
run's figures (printed at the end; `OAUTH_AUTH_RELIABILITY_REPORT=<file>` also writes
them as JSON, which is where README's "Reliability" table comes from).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from oauth_auth import MemorySecrets, OAuthAuthError, OAuthTokenSource, OIDCParams
from oauth_auth._discovery import clear_discovery_cache
from oauth_auth._idtoken import clear_jwks_cache
from tests.support.idp import IdP, obtain_tokens
from tests.support.require import missing

# ------------------------------------------------------------------------------ figures


@dataclass
class Figures:
    """Cases tried per fault or input class, and what happened (for the README table)."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, klass: str, outcome: str, cases: int = 1, **extra: Any) -> None:
        row = self.rows.setdefault(klass, {"cases": 0, "outcomes": []})
        row["cases"] += cases
        if outcome not in row["outcomes"]:
            row["outcomes"].append(outcome)
        row.update(extra)


FIGURES = Figures()


@pytest.fixture
def figures() -> Figures:
    return FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES.rows:
        return
    tr = terminalreporter
    tr.section("reliability figures", sep="-")
    for klass, row in FIGURES.rows.items():
        extra = {k: v for k, v in row.items() if k not in ("cases", "outcomes")}
        more = f" {json.dumps(extra, sort_keys=True)}" if extra else ""
        tr.write_line(f"{klass}: {row['cases']} case(s): {'; '.join(row['outcomes'])}{more}")
    target = os.environ.get("OAUTH_AUTH_RELIABILITY_REPORT")
    if target:
        # In the order the suite ran (README lists them so: tests/reliability/readme.py).
        Path(target).write_text(json.dumps(FIGURES.rows, indent=2) + "\n")


# ------------------------------------------------------------------------------ the session


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    """Discovery and JWKS are cached per process: every test starts without them."""
    clear_discovery_cache()
    clear_jwks_cache()
    yield
    clear_discovery_cache()
    clear_jwks_cache()


@dataclass
class Session:
    """A refresh token stored under `key`, obtained from the real provider by the bench."""

    idp: IdP
    store: Any
    key: str
    refresh_token: str
    tmp: Path

    def source(self, **kw: Any) -> OAuthTokenSource:
        kw.setdefault("lock_dir", self.tmp / "locks")
        kw.setdefault("http_timeout", 2.0)
        kw.setdefault("max_retries", 1)
        oidc = kw.pop("oidc", None) or OIDCParams(self.idp.issuer, self.idp.client_id)
        return OAuthTokenSource(oidc, key_provider=lambda: self.key,
                                secrets_provider=self.store, **kw)

    def stored(self) -> str | None:
        value: str | None = self.store.get_secret(self.key)
        return value

    def active(self, token: str) -> bool:
        response = httpx.post(self.idp.introspection_endpoint, data={"token": token},
                              auth=(self.idp.api_client_id, self.idp.api_client_secret),
                              timeout=10)
        assert response.status_code == 200, response.text
        return bool(response.json().get("active"))


def seed(idp: IdP, store: Any, tmp: Path, key: str | None = None) -> Session:
    """Log in with the bench's own client and store the refresh token; reset the counts."""
    key = key or f"REL_{uuid.uuid4().hex[:8]}"
    tokens = obtain_tokens(idp)
    store.set_secret(key, tokens["refresh_token"])
    idp.reset_counts()
    return Session(idp, store, key, tokens["refresh_token"], tmp)


@pytest.fixture
def session(real_idp: IdP, tmp_path: Path) -> Session:
    return seed(real_idp, MemorySecrets(), tmp_path)


def logins(idp: IdP) -> int:
    """Authorization code and device grants the provider answered since the last reset."""
    token = idp.counts().get("token", {})
    return sum(
        sum(token.get(grant, {}).values())
        for grant in ("authorization_code", "urn:ietf:params:oauth:grant-type:device_code")
    )


def assert_typed(exc: BaseException, cls: type[OAuthAuthError], *fragments: str) -> None:
    """A typed error of the library, of this class, naming the cause, with a hint."""
    assert isinstance(exc, OAuthAuthError), f"{type(exc).__name__}: {exc}"
    assert isinstance(exc, cls), f"{type(exc).__name__} is not a {cls.__name__}: {exc}"
    text = str(exc)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    assert exc.hint.strip(), f"no hint in {type(exc).__name__}: {text}"


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(result or raised OAuthAuthError, seconds)."""
    started = time.monotonic()
    try:
        result: Any = fn()
    except OAuthAuthError as exc:
        result = exc
    return result, time.monotonic() - started


def recover(session: Session, source: OAuthTokenSource) -> str:
    """The next call after the fault cleared works from the stored session, no login."""
    session.idp.clear_faults()
    token = source.token()
    assert session.active(token)
    assert logins(session.idp) == 0
    stored = session.stored()
    assert stored is not None
    assert session.active(stored)
    return token


# ------------------------------------------------------------------------------ filesystems


class SmallFs:
    """A private tmpfs (root only): `fill()` makes it full, `read_only()` remounts it ro."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fill(self) -> None:
        """Use every block and every inode (ENOSPC for data and for new files)."""
        with contextlib.suppress(OSError), open(self.path / "ballast", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        i = 0
        with contextlib.suppress(OSError):
            while True:
                (self.path / f"inode-{i}").touch()
                i += 1

    def empty(self) -> None:
        for child in self.path.iterdir():
            if child.name.startswith(("ballast", "inode-")):
                child.unlink()

    def remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True,
                       capture_output=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFs]:
    """A 256 KiB, 64-inode tmpfs under tmp_path; where mounting is not allowed, skipped
    locally and failed in CI (CI runs as root)."""
    mountpoint = tmp_path / "smallfs"
    mountpoint.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,nr_inodes=64,mode=0700", "tmpfs",
         str(mountpoint)], capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        missing("a small tmpfs", f"mounting one failed ({result.stderr.strip()}); the full-disk"
                " and read-only cases need root or CAP_SYS_ADMIN, as CI has")
    try:
        yield SmallFs(mountpoint)
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)
