"""Sans-IO protected-resource discovery and dynamic client registration (RFC 9728, 7591).

A resource that says where to log in: its 401 names its protected-resource metadata
(`WWW-Authenticate: Bearer resource_metadata="..."`), else the metadata sits at
`/.well-known/oauth-protected-resource` with the resource's path inserted (RFC 9728
section 3.1), else at the root. The metadata's `authorization_servers` name the issuer
whose own metadata is read as for any provider (`oauth_auth._discovery`). A client that has
no registration registers itself once (RFC 7591) as a public native client with a
loopback redirect URI.

Pure functions only; `oauth_auth.resource` does the I/O. Nothing here holds a secret: a
public client's registration response carries no client secret we keep (one that does is
refused, since this library registers public clients only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from ._discovery import is_loopback_host
from ._protocol import parse_bearer_challenges
from .errors import ConfigError

__all__ = [
    "PRM_WELL_KNOWN",
    "ProtectedResource",
    "canonical_resource",
    "metadata_from_challenges",
    "parse_protected_resource",
    "parse_registration",
    "protected_resource_urls",
    "registration_request",
]

#: RFC 9728 section 3: the well-known name of protected-resource metadata.
PRM_WELL_KNOWN = "/.well-known/oauth-protected-resource"
#: RFC 7591 client name this library registers under (shown on consent pages).
CLIENT_NAME = "oauth-auth"
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class ProtectedResource:
    """What a resource's RFC 9728 metadata says that oauth-auth uses.

    Attributes:
        resource: the resource identifier, checked equal to the URL it was found for.
        authorization_servers: issuer identifiers of the servers that issue its tokens.
        scopes_supported: the scopes the resource knows (asked for when none are given).
        metadata_url: where the document was read (for messages).
    """

    resource: str
    authorization_servers: tuple[str, ...]
    scopes_supported: tuple[str, ...] = ()
    metadata_url: str = ""


def _split(url: str, what: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port out of range raises here, not later
    except ValueError:
        raise ConfigError(f"{what} {url!r} is not a valid URL") from None
    return parts


def canonical_resource(url: str) -> str:
    """The canonical URI of a resource (RFC 8707 section 2, as MCP uses it).

    Absolute http(s), scheme and host lower-cased, the default port and any fragment
    dropped, the path kept without a trailing slash (so `https://api.example.com/mcp/` and
    `https://API.example.com:443/mcp` are one resource, and one session). Plain http is
    allowed only for a loopback host.

    Raises:
        ConfigError: not an absolute http(s) URL, http to a non-loopback host, or a URL
            with user-info.
    """
    parts = _split(url.strip(), "resource URL")
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigError(
            f"resource URL {url!r} is not an absolute http(s) URL",
            hint="pass the resource's URL, for example https://mcp.example.com/mcp",
        )
    if scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigError(
            f"resource URL {url!r} must use https (plain http is allowed only on loopback)",
            hint="use the https URL of the resource",
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"resource URL {url!r} must not carry user-info")
    host = parts.hostname.lower()
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None and parts.port != _DEFAULT_PORTS[scheme]:
        netloc += f":{parts.port}"
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def protected_resource_urls(resource: str) -> list[str]:
    """Where the resource's metadata may be, in order (RFC 9728 section 3.1).

    The well-known name inserted between the host and the path, then (for a resource with
    a path) at the root, which is where servers that predate path insertion publish it.
    """
    parts = urlsplit(canonical_resource(resource))
    inserted = urlunsplit((parts.scheme, parts.netloc, PRM_WELL_KNOWN + parts.path, "", ""))
    urls = [inserted]
    if parts.path:
        urls.append(urlunsplit((parts.scheme, parts.netloc, PRM_WELL_KNOWN, "", "")))
    return urls


def metadata_from_challenges(www_authenticate: Iterable[str]) -> str | None:
    """The `resource_metadata` URL of a 401's Bearer challenge (RFC 9728 section 5.1)."""
    for challenge in parse_bearer_challenges(www_authenticate):
        url = challenge.params.get("resource_metadata", "")
        if url:
            return url
    return None


def check_metadata_url(url: str, resource: str) -> str:
    """A `resource_metadata` URL named by the resource, checked before it is fetched.

    It must be https (or http on loopback) and on the resource's own origin: the 401 of
    a resource may not send the client to read another host's document, which would let
    it name any authorization server (RFC 9728 section 7.3 leaves this to the client).

    Raises:
        ConfigError: another origin, or not http(s).
    """
    named = _split(url, "resource_metadata")
    own = urlsplit(canonical_resource(resource))
    if named.scheme.lower() not in _DEFAULT_PORTS or not named.hostname:
        raise ConfigError(f"the resource's resource_metadata {url!r} is not an http(s) URL")
    if _origin(named) != _origin(own):
        raise ConfigError(
            f"the resource's 401 names metadata on another origin ({_origin(named)})",
            hint="the protected-resource metadata must be served by the resource itself",
        )
    return url


def _origin(parts: SplitResult) -> str:
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


def _strings(doc: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = doc.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"the protected-resource metadata's {name!r} is not a list of strings")
    return tuple(value)


def parse_protected_resource(
    doc: Mapping[str, Any], resource: str, *, metadata_url: str = ""
) -> ProtectedResource:
    """Validate a protected-resource metadata document for `resource`.

    RFC 9728 section 3.3: the `resource` member must be the resource the client asked
    about, or the document belongs to another resource (an impersonation). Compared in
    canonical form.

    Raises:
        ConfigError: not an object, another resource, or no authorization server.
    """
    if not isinstance(doc, Mapping):
        raise ConfigError("the protected-resource metadata is not a JSON object")
    named = doc.get("resource")
    expected = canonical_resource(resource)
    if not isinstance(named, str) or not named:
        raise ConfigError("the protected-resource metadata has no 'resource' member")
    try:
        same = canonical_resource(named) == expected
    except ConfigError:
        same = False
    if not same:
        raise ConfigError(
            f"the protected-resource metadata is for {named!r}, not {expected!r}",
            hint="check the resource URL; a mismatch can mean another resource's document",
        )
    servers = _strings(doc, "authorization_servers")
    if not servers:
        raise ConfigError(
            f"the protected-resource metadata of {expected} names no authorization server",
            hint="pass issuer= and client_id= to use the resource with a known provider",
        )
    return ProtectedResource(
        resource=expected,
        authorization_servers=servers,
        scopes_supported=_strings(doc, "scopes_supported"),
        metadata_url=metadata_url,
    )


def registration_request(
    redirect_uris: Sequence[str], scopes: Sequence[str], grant_types: Sequence[str]
) -> dict[str, Any]:
    """An RFC 7591 registration of a public native client (RFC 8252).

    No client secret: `token_endpoint_auth_method` is `none`, and PKCE protects the code.
    """
    doc: dict[str, Any] = {
        "client_name": CLIENT_NAME,
        "redirect_uris": list(redirect_uris),
        "grant_types": list(grant_types),
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    }
    if scopes:
        doc["scope"] = " ".join(scopes)
    return doc


def parse_registration(doc: Mapping[str, Any]) -> str:
    """The `client_id` of an RFC 7591 registration response.

    Raises:
        ConfigError: no client id, or the server made a confidential client of it (a
            secret this library did not ask for and would have to keep).
    """
    client_id = doc.get("client_id") if isinstance(doc, Mapping) else None
    if not isinstance(client_id, str) or not client_id:
        raise ConfigError("the registration response has no client_id")
    method = doc.get("token_endpoint_auth_method", "none")
    if doc.get("client_secret") and method != "none":
        raise ConfigError(
            "the authorization server registered a confidential client although a public"
            " one was asked for",
            hint="register a public client by hand and pass client_id=",
        )
    return client_id
