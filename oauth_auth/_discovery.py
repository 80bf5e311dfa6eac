"""OpenID provider metadata: parsing and validation (pure) and a per-process cache.

Discovery happens once per process per issuer, not on every refresh. The document must
name the configured issuer (a mismatch is the classic mix-up attack), and every endpoint
must be https unless both it and the issuer are on a loopback address (local test
providers).
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

from .errors import ConfigError

if TYPE_CHECKING:
    from ._http import IdPHttp

__all__ = [
    "ProviderMetadata",
    "clear_discovery_cache",
    "discover",
    "discovery_url",
    "is_loopback_host",
    "parse_metadata",
]

_ENDPOINTS = (
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "device_authorization_endpoint",
    "revocation_endpoint",
    "introspection_endpoint",
    "end_session_endpoint",
    "userinfo_endpoint",
)


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of an OpenID provider's metadata that oauth-auth uses."""

    issuer: str
    token_endpoint: str
    authorization_endpoint: str = ""
    jwks_uri: str = ""
    device_authorization_endpoint: str = ""
    revocation_endpoint: str = ""
    introspection_endpoint: str = ""
    code_challenge_methods_supported: tuple[str, ...] = ()
    iss_parameter_supported: bool = False
    id_token_signing_alg_values_supported: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def is_loopback_host(host: str | None) -> bool:
    """True for a loopback IP address (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104) and for
    the name `localhost` itself; the one rule of "loopback" everywhere in the library.

    Decided by address: any other name (`idp.localhost`, `localhost.example`) goes to
    the resolver, which may answer with any address, so it is not loopback. `localhost`
    is the one name kept (RFC 6761 section 6.3: resolvers answer it with loopback
    themselves, from the hosts file, without asking DNS), because the redirect URI and
    every local test provider use it.
    """
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def same_issuer(a: str, b: str) -> bool:
    """Issuer identifiers compare exactly, except for one trailing slash."""
    return a.rstrip("/") == b.rstrip("/")


def discovery_url(issuer: str) -> str:
    """The OIDC discovery URL for an issuer (OIDC Discovery section 4)."""
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def _split(url: str, what: str) -> SplitResult:
    """urlsplit, with a malformed URL ("https://[x") as a ConfigError, not a ValueError."""
    try:
        return urlsplit(url)
    except ValueError:
        raise ConfigError(f"{what} is not a valid URL", hint="check the issuer URL") from None


def check_issuer_url(issuer: str) -> None:
    """Raise ConfigError unless the issuer is an absolute https (or loopback http) URL."""
    parts = _split(issuer, f"issuer {issuer!r}")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(
            f"issuer {issuer!r} is not an absolute http(s) URL",
            hint="pass the issuer URL, for example https://auth.example.com",
        )
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigError(
            f"issuer {issuer!r} must use https (plain http is allowed only on loopback)",
            hint="use the https issuer URL",
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"issuer {issuer!r} must not have a query or fragment")


def parse_metadata(doc: Mapping[str, Any], expected_issuer: str) -> ProviderMetadata:
    """Validate a discovery document against the configured issuer.

    Raises:
        ConfigError: wrong issuer, missing token endpoint, or a non-https endpoint for a
            non-loopback issuer.
    """
    if not isinstance(doc, Mapping):
        raise ConfigError("the discovery document is not a JSON object")
    issuer = doc.get("issuer")
    if not isinstance(issuer, str) or not same_issuer(issuer, expected_issuer):
        raise ConfigError(
            f"the provider's discovery document names issuer {issuer!r}, not the configured"
            f" {expected_issuer!r}",
            hint="check the issuer URL; a mismatch can mean a mix-up attack",
        )
    loopback = is_loopback_host(_split(expected_issuer, "the configured issuer").hostname)
    endpoints: dict[str, str] = {}
    for name in _ENDPOINTS:
        value = doc.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ConfigError(f"discovery document member {name!r} is not a string")
        parts = _split(value, f"discovery document member {name!r}")
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigError(f"discovery document member {name!r} is not an absolute URL")
        if parts.scheme != "https" and not (loopback and is_loopback_host(parts.hostname)):
            # The endpoint's own host counts too: a loopback issuer naming a plain-http
            # endpoint elsewhere would send the refresh token there in clear text.
            raise ConfigError(
                f"the provider's {name} is not https",
                hint="plain http endpoints are accepted only on a loopback address, for a"
                " loopback issuer",
            )
        endpoints[name] = value
    if "token_endpoint" not in endpoints:
        raise ConfigError("the discovery document has no token_endpoint")

    def strings(name: str) -> tuple[str, ...]:
        value = doc.get(name)
        if isinstance(value, list):
            return tuple(v for v in value if isinstance(v, str))
        return ()

    return ProviderMetadata(
        issuer=issuer,
        token_endpoint=endpoints["token_endpoint"],
        authorization_endpoint=endpoints.get("authorization_endpoint", ""),
        jwks_uri=endpoints.get("jwks_uri", ""),
        device_authorization_endpoint=endpoints.get("device_authorization_endpoint", ""),
        revocation_endpoint=endpoints.get("revocation_endpoint", ""),
        introspection_endpoint=endpoints.get("introspection_endpoint", ""),
        code_challenge_methods_supported=strings("code_challenge_methods_supported"),
        iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported")
        is True,
        id_token_signing_alg_values_supported=strings("id_token_signing_alg_values_supported"),
        raw=dict(doc),
    )


_cache: dict[str, ProviderMetadata] = {}
_cache_lock = threading.Lock()


def discover(issuer: str, http: IdPHttp) -> ProviderMetadata:
    """The provider's metadata, fetched once per process per issuer.

    Failures are not cached, so a provider that was down is asked again next time.
    """
    cached = _cache.get(issuer)
    if cached is not None:
        return cached
    with _cache_lock:
        cached = _cache.get(issuer)
        if cached is not None:
            return cached
        check_issuer_url(issuer)
        meta = parse_metadata(http.get_json(discovery_url(issuer)), issuer)
        _cache[issuer] = meta
        return meta


def clear_discovery_cache() -> None:
    """Forget every cached provider document (tests; a provider that changed its keys)."""
    with _cache_lock:
        _cache.clear()
