"""Provider metadata: OIDC discovery, RFC 8414, `endpoints`; validation (pure) and a cache.

Discovery happens once per process per issuer, not on every refresh. The document must
name the configured issuer (a mismatch is the classic mix-up attack), and every endpoint
must be https unless both it and the issuer are on a loopback address (local test
providers).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

from ._keys import same_url
from .errors import ConfigError, TransportError

if TYPE_CHECKING:
    from ._http import IdPHttp

__all__ = [
    "ProviderMetadata",
    "clear_discovery_cache",
    "discover",
    "discovery_url",
    "is_loopback_host",
    "merge_documents",
    "oauth_metadata_urls",
    "parse_metadata",
    "tenant_issuer_template",
]

log = logging.getLogger("oauth_auth")

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
    """The parts of a provider's metadata (OIDC discovery or RFC 8414) that oauth-auth uses.

    `tenant_issuer_template` is True when `issuer` is Microsoft Entra's multi-tenant
    template (`.../{tenantid}/v2.0`), accepted only under the Entra preset's rule.
    """

    issuer: str
    token_endpoint: str
    authorization_endpoint: str = ""
    jwks_uri: str = ""
    device_authorization_endpoint: str = ""
    revocation_endpoint: str = ""
    introspection_endpoint: str = ""
    userinfo_endpoint: str = ""
    code_challenge_methods_supported: tuple[str, ...] = ()
    iss_parameter_supported: bool = False
    id_token_signing_alg_values_supported: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] = ()
    token_endpoint_auth_methods_supported: tuple[str, ...] = ()
    revocation_endpoint_auth_methods_supported: tuple[str, ...] = ()
    tenant_issuer_template: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def issues_id_tokens(self) -> bool:
        """False for an OAuth-only server: no `jwks_uri`, or `openid` not among the
        `scopes_supported` it lists. Then no `openid` scope is asked for and no ID token
        is required."""
        if not self.jwks_uri:
            return False
        return not self.scopes_supported or "openid" in self.scopes_supported


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


#: The path ends of Microsoft Entra's multi-tenant issuers (see `presets`, "entra").
TENANT_ISSUER_ENDS = ("/common/v2.0", "/organizations/v2.0", "/consumers/v2.0")
#: What Entra's multi-tenant discovery documents name in place of the tenant.
TENANT_PLACEHOLDER = "{tenantid}"


def tenant_issuer_template(configured: str) -> str | None:
    """The `{tenantid}` issuer template a multi-tenant Entra issuer's discovery names;
    None when the configured issuer is not one of those (pure)."""
    base = configured.rstrip("/")
    for end in TENANT_ISSUER_ENDS:
        if base.endswith(end):
            return base[: -len(end)] + "/" + TENANT_PLACEHOLDER + "/v2.0"
    return None


def parse_metadata(
    doc: Mapping[str, Any], expected_issuer: str, *, tenant_issuers: bool = False
) -> ProviderMetadata:
    """Validate a metadata document (OIDC discovery or RFC 8414) against the issuer.

    Issuers compare exactly (one trailing slash aside). The one exception, with
    `tenant_issuers` (the Entra preset): a configured `.../common/v2.0` (or
    organizations, consumers) accepts a document naming `.../{tenantid}/v2.0`.

    Raises:
        ConfigError: wrong issuer, missing token endpoint, or a non-https endpoint for a
            non-loopback issuer.
    """
    if not isinstance(doc, Mapping):
        raise ConfigError("the discovery document is not a JSON object")
    issuer = doc.get("issuer")
    template = tenant_issuer_template(expected_issuer) if tenant_issuers else None
    is_template = isinstance(issuer, str) and template is not None and issuer == template
    if not isinstance(issuer, str) or not (
        same_url(issuer, expected_issuer) or is_template
    ):
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
        raise ConfigError(
            "the provider's metadata has no token_endpoint",
            hint="pass endpoints={'token_endpoint': ...} (--endpoint token_endpoint=URL)",
        )

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
        userinfo_endpoint=endpoints.get("userinfo_endpoint", ""),
        code_challenge_methods_supported=strings("code_challenge_methods_supported"),
        iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported")
        is True,
        id_token_signing_alg_values_supported=strings("id_token_signing_alg_values_supported"),
        scopes_supported=strings("scopes_supported"),
        token_endpoint_auth_methods_supported=strings("token_endpoint_auth_methods_supported"),
        revocation_endpoint_auth_methods_supported=strings(
            "revocation_endpoint_auth_methods_supported"
        ),
        tenant_issuer_template=is_template and not same_url(issuer, expected_issuer),
        raw=dict(doc),
    )


def oauth_metadata_urls(issuer: str) -> list[str]:
    """Where an RFC 8414 server's metadata may be, in the order they are tried.

    First the well-known name with the issuer's path inserted after the host (RFC 8414
    section 3.1, computed by authlib), then the same name appended to the issuer, which
    servers mounted under a path serve (django-oauth-toolkit under `/o/`).
    """
    from authlib.oauth2.rfc8414 import get_well_known_url

    base = issuer.rstrip("/")  # section 3.1: a terminating "/" is removed first
    urls = [str(get_well_known_url(base, external=True))]
    appended = base + "/.well-known/oauth-authorization-server"
    if appended not in urls:
        urls.append(appended)
    return urls


def merge_documents(
    oidc: Mapping[str, Any] | None, oauth: Mapping[str, Any] | None
) -> dict[str, Any]:
    """One metadata document from the OIDC one and the RFC 8414 one (pure).

    The OIDC document's members stand; a member only the RFC 8414 one has (a
    `revocation_endpoint` or `device_authorization_endpoint`, as django-oauth-toolkit
    publishes them) is taken from it.
    """
    return {**(oauth or {}), **(oidc or {})}


def _absent(exc: TransportError) -> bool:
    """Whether a failed metadata fetch means "no document here" rather than an outage:
    a 4xx (other than 429) or a 200 that is not JSON."""
    code = exc.status_code
    return code is not None and (code == 200 or (400 <= code < 500 and code != 429))


def _fetch(url: str, http: IdPHttp) -> dict[str, Any] | None:
    try:
        return http.get_json(url)
    except TransportError as exc:
        if _absent(exc):
            log.debug("no metadata at %s (HTTP %s)", url, exc.status_code)
            return None
        raise


def _fetch_oauth_document(
    issuer: str, http: IdPHttp, tenant_issuers: bool
) -> dict[str, Any] | None:
    """The first RFC 8414 document that names this issuer; None when there is none."""
    for url in oauth_metadata_urls(issuer):
        doc = _fetch(url, http)
        if doc is None:
            continue
        try:
            parse_metadata(doc, issuer, tenant_issuers=tenant_issuers)
        except ConfigError as exc:
            log.debug("ignoring the metadata at %s: %s", url, exc)
            continue
        return doc
    return None


@dataclass
class _Entry:
    meta: ProviderMetadata
    oidc_doc: dict[str, Any] | None
    oauth_tried: bool


_cache: dict[tuple[str, frozenset[tuple[str, str]], bool], _Entry] = {}
_cache_lock = threading.Lock()


def discover(
    issuer: str,
    http: IdPHttp,
    *,
    endpoints: Mapping[str, str] | None = None,
    tenant_issuers: bool = False,
    want: Collection[str] = (),
) -> ProviderMetadata:
    """The provider's metadata, fetched once per process per issuer (and `endpoints`).

    OpenID discovery first. Where it is absent, RFC 8414 (`oauth_metadata_urls`). Where
    it lacks a member named in `want` (the device or revocation endpoint, asked for by
    the flows that need them, so that a refresh never pays for it), the RFC 8414
    document is fetched too and its members fill the gaps. `endpoints` fill in or
    override the result; when they name the authorization and token endpoints, nothing
    is fetched at all. Failures are not cached, so a provider that was down is asked
    again next time.

    Raises:
        TransportError: no document could be fetched (the OIDC attempt's error).
        ConfigError: a document names another issuer, or an endpoint is not https.
    """
    extra = dict(endpoints or {})
    key = (issuer, frozenset(extra.items()), tenant_issuers)
    entry = _cache.get(key)
    if entry is not None and (entry.oauth_tried or _has(entry.meta, want)):
        return entry.meta
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None and (entry.oauth_tried or _has(entry.meta, want)):
            return entry.meta
        check_issuer_url(issuer)
        if entry is not None:
            # The OIDC document lacks something a flow needs: look at RFC 8414 too.
            oauth_doc = _fetch_oauth_document(issuer, http, tenant_issuers)
            doc = merge_documents(entry.oidc_doc, oauth_doc)
            entry = _Entry(_parse(doc, extra, issuer, tenant_issuers), entry.oidc_doc, True)
        elif "authorization_endpoint" in extra and "token_endpoint" in extra:
            entry = _Entry(_parse({"issuer": issuer}, extra, issuer, tenant_issuers), None, True)
        else:
            entry = _discover(issuer, http, extra, tenant_issuers, want)
        _cache[key] = entry
        return entry.meta


def _has(meta: ProviderMetadata, want: Collection[str]) -> bool:
    return all(getattr(meta, name, "") for name in want)


def _parse(
    doc: Mapping[str, Any], extra: Mapping[str, str], issuer: str, tenant_issuers: bool
) -> ProviderMetadata:
    return parse_metadata({**doc, **extra}, issuer, tenant_issuers=tenant_issuers)


def _discover(
    issuer: str,
    http: IdPHttp,
    extra: Mapping[str, str],
    tenant_issuers: bool,
    want: Collection[str],
) -> _Entry:
    try:
        oidc_doc = http.get_json(discovery_url(issuer))
    except TransportError as exc:
        if not _absent(exc):
            raise
        oauth_doc = _fetch_oauth_document(issuer, http, tenant_issuers)
        if oauth_doc is None:
            raise
        return _Entry(_parse(oauth_doc, extra, issuer, tenant_issuers), None, True)
    meta = _parse(oidc_doc, extra, issuer, tenant_issuers)
    if _has(meta, want):
        return _Entry(meta, oidc_doc, False)
    oauth_doc = _fetch_oauth_document(issuer, http, tenant_issuers)
    doc = merge_documents(oidc_doc, oauth_doc)
    return _Entry(_parse(doc, extra, issuer, tenant_issuers), oidc_doc, True)


def clear_discovery_cache() -> None:
    """Forget every cached provider document (tests; a provider that changed its keys)."""
    with _cache_lock:
        _cache.clear()
