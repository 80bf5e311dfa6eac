"""Resources that say where to log in: `resource_auth(url)` (RFC 9728, RFC 7591, MCP).

Given only a resource's URL (an MCP server, an API), find its authorization server, get a
client registration, and serve tokens for it like any other session:

1. the protected-resource metadata: the URL named by the resource's 401
   (`WWW-Authenticate: Bearer resource_metadata="..."`), else
   `/.well-known/oauth-protected-resource` with the path inserted, else at the root;
   its `resource` must be the URL's canonical form;
2. its first authorization server, whose metadata is read as for any provider (OpenID
   discovery, else RFC 8414) and must name the same issuer; it must offer PKCE with S256;
3. the client: `client_id=` when given, else the registration kept in the config file from
   an earlier run (for this issuer and redirect URI), else a new RFC 7591 registration of
   a public client with the loopback redirect URI, kept in the config file;
4. a session per (resource, issuer) under
   `derive_secret_key("RESOURCE_OAUTH_", <canonical resource>, issuer)`, with `resource`
   (RFC 8707) on the authorization, token and refresh requests, shared by every process
   through the same store, lock and tiers as every other session.

Discovery and registration run once, in `resource_auth()`, and only while the config file
does not already know the resource: a later process starts from the config file and makes
no network call before its first token.

A registered client the authorization server forgets (a reset; an MCP server that keeps
clients in memory, restarted) is registered anew, once, by `_Reregistration`: the one
place that decides it. A login refused for the unknown client (`invalid_client`, or the
CLI's preflight refused before any browser opened) registers again, replaces the
registration in the config file and logs in once more; a refresh refused with
`invalid_client` takes a registration another process kept meanwhile, else registers at
the next interactive login. A client id the user gave is never replaced.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._authorize import format_redirect_uri
from ._config import RESOURCES, Config, existing_key
from ._discovery import discover
from ._keys import normalize_scopes
from ._params import DEFAULT_CALLBACK_PORT
from ._resource import (
    ProtectedResource,
    canonical_resource,
    check_metadata_url,
    metadata_from_challenges,
    parse_protected_resource,
    parse_registration,
    protected_resource_urls,
    registration_request,
)
from .errors import ConfigError, LoginError, LoginRequiredError, OAuthAuthError, TransportError

if TYPE_CHECKING:
    from ._discovery import ProviderMetadata
    from ._http import IdPHttp
    from ._params import OIDCParams
    from .auth import OIDCAuth
    from .profiles import Session

__all__ = ["discover_resource", "resource_auth"]

log = logging.getLogger("oauth_auth")

#: Grant types a registration asks for; the device grant only where the server has it.
_GRANTS = ("authorization_code", "refresh_token")
_DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def discover_resource(resource_url: str, http: IdPHttp) -> tuple[ProtectedResource, str]:
    """The resource's protected-resource metadata, and the scope its 401 asked for.

    Tries the URL its anonymous 401 names first, then the well-known locations in
    RFC 9728's order. A location that answers 404 (or anything but a JSON object) is
    skipped; a document for another resource is an error, not a miss.

    Raises:
        ConfigError: no metadata anywhere, or metadata that fails its checks.
        TransportError: the resource could not be reached.
    """
    resource = canonical_resource(resource_url)
    candidates: list[str] = []
    scope = ""
    status, challenges = http.probe(resource)
    if status == 401:
        named = metadata_from_challenges(challenges)
        if named:
            candidates.append(check_metadata_url(named, resource))
        from ._protocol import parse_bearer_challenges

        scope = next((c.params["scope"] for c in parse_bearer_challenges(challenges)
                      if c.params.get("scope")), "")
    candidates += [u for u in protected_resource_urls(resource) if u not in candidates]
    tried: list[str] = []
    for url in candidates:
        try:
            doc = http.get_json(url)
        except TransportError as exc:
            if exc.status_code is None:
                raise  # the resource's host is unreachable: no other location helps
            tried.append(f"{url} (HTTP {exc.status_code})")
            continue
        return parse_protected_resource(doc, resource, metadata_url=url), scope
    raise ConfigError(
        f"{resource} publishes no protected-resource metadata (RFC 9728); tried "
        + ", ".join(tried),
        hint="pass issuer= and client_id= (or --issuer/--client-id) to log in without"
        " discovery",
    )


def _check_pkce(meta: ProviderMetadata) -> None:
    if "S256" not in meta.code_challenge_methods_supported:
        offered = ", ".join(meta.code_challenge_methods_supported) or "none"
        raise ConfigError(
            f"the authorization server {meta.issuer} does not list PKCE with S256 in"
            f" code_challenge_methods_supported (it lists: {offered})",
            hint="MCP and OAuth 2.1 clients require S256; ask the server's operator to"
            " enable it",
        )


def _register(
    meta: ProviderMetadata, http: IdPHttp, redirect_uri: str, scopes: Sequence[str]
) -> str:
    endpoint = meta.raw.get("registration_endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise ConfigError(
            f"the authorization server {meta.issuer} offers no dynamic client registration"
            " (RFC 7591) and no client_id was given",
            hint="register a public client with redirect URI "
            f"{redirect_uri} and pass client_id= (or --client-id)",
        )
    grants = list(_GRANTS)
    if meta.device_authorization_endpoint:
        grants.append(_DEVICE_GRANT)
    if meta.scopes_supported:
        # A server may refuse to register a scope it does not list (oidc-provider does:
        # `invalid_client_metadata`), though it grants a resource's own scopes through
        # RFC 8707 at login: register only the ones it lists, and ask for all of them then.
        scopes = [s for s in scopes if s in meta.scopes_supported]
    _, doc = http.post_json(endpoint, registration_request([redirect_uri], scopes, grants))
    client_id = parse_registration(doc)
    log.info("registered client %s at %s (RFC 7591)", client_id, meta.issuer)
    return client_id


def _registration_scopes(wanted: Sequence[str], found: ProtectedResource) -> list[str]:
    """What a client is registered for: every scope the resource names, not only today's
    (a step-up later asks for more, and a server checks them against these)."""
    return normalize_scopes(wanted, add=found.scopes_supported)


def _registered_client(entry: dict[str, Any]) -> str:
    """The client id oauth-auth registered for a `resources` entry; "" when none.

    `registered_client_id` names it: `client_id` may be the user's since (a login with
    `--client-id` saves that one), and a client the user named is never replaced. An
    entry written before that field says `registered` beside its `client_id`.
    """
    named = entry.get("registered_client_id")
    if named is not None:
        return str(named)
    return str(entry.get("client_id") or "") if entry.get("registered") else ""


def _registration_fields(registered_client: str) -> dict[str, Any]:
    """The entry fields that say which client, if any, oauth-auth registered."""
    return {"registered": bool(registered_client),
            "registered_client_id": registered_client or None}


class _Reregistration:
    """Registers a resource's client anew when the authorization server forgot it.

    The `ClientRenewal` (`oauth_auth.source`) of a session whose client oauth-auth itself
    registered (RFC 7591), never of one whose client id the user gave. A server that
    cannot find a client answers `invalid_client` (token endpoint, RFC 6749 section 5.2),
    or refuses the authorization request without a redirect, since it cannot trust a
    redirect URI of a client it does not know (the MCP SDK: 400 "Client ID ... not found");
    the preflight sees that before any browser opens. A client registered here has exactly
    the redirect URI the login uses, so such a refusal means the client is gone.

    The source calls it under the session's cross-process lock, so sibling processes
    renew one at a time; each first takes a registration another one kept meanwhile
    (no second registration), and the config file is changed by a compare-and-set under
    its own lock: the kept client is replaced only while it is still the refused one.
    """

    def __init__(self, config: Config, resource: str, issuer: str, redirect_uri: str,
                 options: dict[str, Any]) -> None:
        self.config, self.resource, self.issuer = config, resource, issuer
        self.redirect_uri = redirect_uri
        self._transport = options.get("transport")
        self._verify = options.get("verify", True)

    def unknown_client(self, failure: OAuthAuthError) -> bool:
        from ._login import PreflightRefused  # the login's module: loaded by a login only

        if isinstance(failure, PreflightRefused):
            return True
        return getattr(failure, "error", "") == "invalid_client"

    def renew(self, oidc: OIDCParams, *, register: bool) -> OIDCParams | None:
        refused = oidc.client_id
        kept = self._kept_client()
        if kept and kept != refused:
            return dataclasses.replace(oidc, client_id=kept)
        if not register:
            return None
        client = self._register(oidc.scopes)

        def replace_refused(doc: dict[str, Any]) -> bool:
            entries: dict[str, Any] = doc[RESOURCES]
            name = existing_key(entries, self.resource, RESOURCES)
            entry = entries.get(name)
            if (not isinstance(entry, dict) or entry.get("client_id") != refused
                    or _registered_client(entry) != refused):
                log.info("the client of %s changed meanwhile; keeping it", self.resource)
                return False
            entries[name] = {**entry, "client_id": client, **_registration_fields(client)}
            return True

        self.config.update(replace_refused)
        log.warning("the authorization server %s no longer knows client %s; registered"
                    " client %s for %s instead", self.issuer, refused, client, self.resource)
        return dataclasses.replace(oidc, client_id=client)

    def explain(self, failure: OAuthAuthError, *, renewed: bool) -> OAuthAuthError:
        why = getattr(failure, "error", "") or type(failure).__name__
        if renewed:
            return LoginError(
                f"the authorization server {self.issuer} refused the client registered for"
                f" {self.resource} just now too ({why}), after it had forgotten the kept one",
                error=str(getattr(failure, "error", "") or "invalid_client"),
                description=str(getattr(failure, "description", "")),
                hint="the server does not keep or accept its dynamic registrations: register"
                " a public client by hand and pass client_id= (--client-id), or ask its"
                " operator",
            )
        return LoginRequiredError(
            f"the authorization server {self.issuer} no longer knows the client registered"
            f" for {self.resource} ({why}; a server that keeps registrations in memory"
            " forgets them when it restarts)",
            hint=f"log in again, which registers anew: oauth-auth login --resource"
            f" {self.resource} (or interactive=True)",
        )

    def _kept_client(self) -> str:
        """The client of the config file's registration for this issuer and redirect URI."""
        entry = self.config.entry(RESOURCES, self.resource) or {}
        kept = _registered_client(entry)
        if (kept and kept == entry.get("client_id") and entry.get("issuer") == self.issuer
                and entry.get("redirect_uri") == self.redirect_uri):
            return kept
        return ""

    def _register(self, scopes: Sequence[str]) -> str:
        from ._http import IdPHttp

        http = IdPHttp(transport=self._transport, verify=self._verify)
        try:
            found, _ = discover_resource(self.resource, http)
            if self.issuer not in found.authorization_servers:
                raise ConfigError(
                    f"the resource {self.resource} no longer names the authorization server"
                    f" {self.issuer} its session was made with",
                    hint=f"log out and in again: oauth-auth logout --resource {self.resource},"
                    " then delete its entry under 'resources' in the config file",
                )
            meta = discover(self.issuer, http)
            _check_pkce(meta)
            return _register(meta, http, self.redirect_uri, _registration_scopes(scopes, found))
        finally:
            http.close()


def resource_auth(
    resource_url: str,
    *,
    client_id: str | None = None,
    scopes: Sequence[str] | None = None,
    interactive: bool | None = None,
    config_path: str | None = None,
    callback_port: int | None = None,
    **source_options: Any,
) -> OIDCAuth:
    """A ready `OIDCAuth` for a resource that says where to log in (RFC 9728).

    Args:
        resource_url: the resource (an MCP server's URL, an API's base URL).
        client_id: a client registered by hand; None uses the registration kept in the
            config file, else registers one (RFC 7591) and keeps it there.
        scopes: scopes to ask for; None: the config file's, else the scope the resource's
            401 asks for, else its metadata's `scopes_supported`.
        interactive: whether a login may run (default: stdin and stderr are terminals).
        config_path: another config file (default: `OAUTH_AUTH_CONFIG` or the platform's).
        callback_port: loopback port of the redirect URI (default: the config file's, else
            8666).
        **source_options: any `OAuthTokenSource` keyword (``open_browser=``,
            ``login_method=``, ``secrets_provider=``, ``callback_host=``...).

    Raises:
        ConfigError: no metadata, a metadata check failed, no S256, no registration.
        TransportError, OAuthError: the resource or its server failed.
    """
    from .auth import OIDCAuth

    session = resource_session(
        resource_url, client_id=client_id, scopes=scopes, interactive=interactive,
        config_path=config_path, callback_port=callback_port, **source_options,
    )
    source = session.source
    if not source.interactive:
        return OIDCAuth(source)
    config, resource = session.config, session.name or ""

    def step_up(more: Sequence[str]) -> str | None:
        """The source's step-up login; its scopes are then the resource's in the config
        file, so a later process's login asks for them at once."""
        token = source.step_up(more)
        if token is not None:
            config.set_entry(RESOURCES, resource, {"scopes": list(source.oidc.scopes)})
        return token

    return OIDCAuth(source, step_up=step_up)


def resource_session(
    resource_url: str,
    *,
    client_id: str | None = None,
    scopes: Sequence[str] | None = None,
    interactive: bool | None = None,
    config_path: str | None = None,
    callback_port: int | None = None,
    discover_missing: bool = True,
    **options: Any,
) -> Session:
    """The session of a resource: what `resource_auth` and `oauth-auth ... --resource` use.

    Starts from the config file's `resources` entry; discovers and registers (once, kept
    there) only when it does not know the issuer or the client yet, and then only with
    `discover_missing` (the CLI's `token`, `status` and `logout` make no network call for a
    resource nobody logged in to). `options` go to `profiles.open_session` and from there
    to `OAuthTokenSource`.

    Raises:
        NotConfiguredError: the resource is unknown and `discover_missing` is False.
        ConfigError, TransportError, OAuthError: as `resource_auth`.
    """
    from .profiles import RESOURCE, NotConfiguredError, open_session

    resource = canonical_resource(resource_url)
    config = Config(config_path)
    entry = config.entry(RESOURCES, resource) or {}
    host = str(options.get("callback_host") or (options.get("provider") or {}).get(
        "callback_host") or entry.get("callback_host") or "localhost")
    port = callback_port or int(entry.get("callback_port") or 0) or DEFAULT_CALLBACK_PORT
    redirect_uri = format_redirect_uri(host, port)
    issuer = str(entry.get("issuer") or "")
    client = client_id or ""
    if not client and issuer and entry.get("redirect_uri") == redirect_uri:
        client = str(entry.get("client_id") or "")
    wanted = normalize_scopes(scopes if scopes is not None else entry.get("scopes") or [])

    if (not issuer or not client) and not discover_missing:
        raise NotConfiguredError(
            f"no session for the resource {resource}: nobody logged in to it with this"
            " config file", hint=f"run: oauth-auth login --resource {resource}")
    registered = False
    if not issuer or not client:
        from ._http import IdPHttp

        http = IdPHttp(transport=options.get("transport"), verify=options.get("verify", True))
        try:
            found, asked = discover_resource(resource, http)
            issuer = found.authorization_servers[0]
            meta = discover(issuer, http)
            _check_pkce(meta)
            if scopes is None and not wanted:
                wanted = normalize_scopes([asked] if asked else found.scopes_supported)
            if not client:
                client = _register(meta, http, redirect_uri,
                                   _registration_scopes(wanted, found))
                registered = True
        finally:
            http.close()
        config.set_entry(RESOURCES, resource, {
            "issuer": issuer, "client_id": client, "scopes": wanted,
            "callback_port": port, "callback_host": host, "redirect_uri": redirect_uri,
            "audience": resource, **_registration_fields(
                client if registered or _registered_client(entry) == client else ""),
        })
    # Only a client registered here is ever registered anew, never one the user named.
    if not client_id and (registered or _registered_client(entry) == client):
        options.setdefault("renew_client", _Reregistration(
            config, resource, issuer, redirect_uri, options))
        if not registered:
            # A registration from an earlier run may have been forgotten since: the
            # login's preflight then tells at once, not a browser page nobody leaves.
            options.setdefault("preflight", True)

    return open_session(
        RESOURCE, resource, issuer=issuer, client_id=client, scopes=wanted,
        audience=resource, callback_port=port, interactive=interactive,
        config_path=config_path, **options,
    )
