"""Shared pieces of the benchmarks: statistics, the machine, the local provider, logins.

Every figure is a median with its spread (the 25th to 75th percentile, IQR), measured in
the same run as the thing it is compared with. All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import os
import platform
import secrets
import statistics
import sys
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

#: Bench client registered next to the provider's public one, for peers that insist on
#: sending a client secret (google-auth's Credentials.refresh requires one).
CONFIDENTIAL_CLIENT_ID = "bench-confidential"
CONFIDENTIAL_CLIENT_SECRET = "bench-confidential-secret"
CONFIDENTIAL_CLIENT = {
    "client_id": CONFIDENTIAL_CLIENT_ID,
    "client_secret": CONFIDENTIAL_CLIENT_SECRET,
    "client_name": "benchmark confidential client (client_secret_post)",
    "application_type": "native",
    "token_endpoint_auth_method": "client_secret_post",
    "redirect_uris": ["http://127.0.0.1/callback", "http://localhost/callback"],
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
}


@dataclass
class Stat:
    """A sample's median and its interquartile range."""

    median: float
    p25: float
    p75: float
    n: int
    samples: list[float] = field(default_factory=list, repr=False)

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stat:
        values = sorted(samples)
        if len(values) == 1:
            return cls(values[0], values[0], values[0], 1, values)
        q = statistics.quantiles(values, n=4, method="inclusive")
        return cls(statistics.median(values), q[0], q[2], len(values), values)

    def scaled(self, factor: float) -> Stat:
        return Stat(self.median * factor, self.p25 * factor, self.p75 * factor, self.n,
                    [s * factor for s in self.samples])

    def as_dict(self) -> dict[str, Any]:
        return {"median": self.median, "p25": self.p25, "p75": self.p75, "n": self.n}


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, OS, Python: what the figures were measured on."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / (1024 * 1024)
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count() or 0,
        "memory_gib": round(mem_gib, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "executable": sys.executable,
    }


def versions(names: Sequence[str]) -> dict[str, str]:
    """Installed versions of the given distributions ("absent" if not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def login(
    idp: Any,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    scopes: Sequence[str] = ("openid", "offline_access"),
) -> dict[str, Any]:
    """Authorization code + PKCE through the bench's HTTP browser; the token response.

    Unlike `tests.support.idp.obtain_tokens`, the code exchange can authenticate with a
    client secret (client_secret_post), for the confidential bench client.
    """
    import httpx

    from tests.support.browser import http_browser_login
    from tests.support.idp import authorization_url, make_pkce

    verifier, challenge = make_pkce()
    state = secrets.token_urlsafe(16)
    redirect_uri = f"http://127.0.0.1:{20000 + secrets.randbelow(30000)}/callback"
    url = authorization_url(idp, redirect_uri=redirect_uri, code_challenge=challenge,
                            state=state, scopes=scopes, client_id=client_id)
    callback = http_browser_login(url, follow_callback=False)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback).query))
    if query.get("state") != state or "code" not in query:
        raise RuntimeError(f"login failed: {sorted(query)}")
    form = {"grant_type": "authorization_code", "code": query["code"],
            "redirect_uri": redirect_uri, "code_verifier": verifier,
            "client_id": client_id or idp.client_id}
    if client_secret:
        form["client_secret"] = client_secret
    response = httpx.post(idp.token_endpoint, data=form, timeout=10)
    if response.status_code != 200:
        raise RuntimeError(f"code exchange failed: HTTP {response.status_code}")
    tokens: dict[str, Any] = response.json()
    return tokens


def start_provider(**settings: Any) -> Any:
    """The bench's oidc-provider on loopback, with the confidential client registered too."""
    from tests.support.idp import start_idp

    settings.setdefault("extra_clients", [CONFIDENTIAL_CLIENT])
    return start_idp(**settings)


def introspect_active(idp: Any, token: str) -> bool:
    """Whether the provider still accepts `token` (an access or refresh token)."""
    import httpx

    response = httpx.post(idp.introspection_endpoint, data={"token": token},
                          auth=(idp.api_client_id, idp.api_client_secret), timeout=10)
    return bool(response.status_code == 200 and response.json().get("active"))


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} µs"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def child_env(pycache: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for timed child interpreters: bytecode cached, as installed.

    This workplace sets PYTHONDONTWRITEBYTECODE, so an editable checkout would be compiled
    from source on every start, which an installed package never is (pip compiles it at
    install time). Children get a private bytecode cache instead (PYTHONPYCACHEPREFIX),
    the same for every command compared; warm-up runs fill it.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env.update(extra or {})
    return env
