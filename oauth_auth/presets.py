"""Provider presets: what differs between the OpenID providers and OAuth servers people use.

Data only, one entry per provider, and every setting names the provider documentation it
follows (`Preset.sources`). A preset only supplies defaults: `OIDCParams` applies them to
the fields the caller left unset, and every field given explicitly wins (a mapping field
such as `auth_params` is merged key by key, the caller's keys over the preset's).

`preset=None` picks the preset from the issuer's host (`preset_for_issuer`), else
"generic". The generic rules are OpenID Connect's and OAuth's own: discovery, `openid`
and (when offered) `offline_access`, `resource` (RFC 8707) for the audience, exact issuer
checks. Okta, Keycloak and Dex follow them, so their presets add nothing but citations.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "OAUTH_ERROR_ALIASES",
    "PRESETS",
    "PRESET_NAMES",
    "FrozenMap",
    "Preset",
    "get_preset",
    "preset_for_issuer",
]


class FrozenMap(Mapping[str, str]):
    """An immutable, hashable str -> str mapping (for fields of frozen dataclasses).

    Compares equal to any mapping with the same items, so `params.auth_params == {}` holds.
    """

    __slots__ = ("_hash", "_items")

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, str] = dict(items or {})
        self._hash: int | None = None

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._items.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._items == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"


@dataclass(frozen=True)
class Preset:
    """The defaults and issuer rules of one provider.

    Attributes:
        name: the preset's name, as `OIDCParams(preset=...)` takes it.
        hosts: issuer hosts that select this preset when `preset` is None, as shell-style
            patterns ("*.auth0.com", "cognito-idp.*.amazonaws.com").
        offline_access: the default of `OIDCParams.offline_access` (None: the generic rule).
        audience_param: the default of `OIDCParams.audience_param` (None: "resource").
        prompt: the default of `OIDCParams.prompt` (None: the generic rule, `consent`
            exactly when `offline_access` is asked for).
        auth_params: extra authorization (and device authorization) parameters.
        endpoints: provider metadata to use instead of discovery; "{issuer}" in a value
            is replaced by the configured issuer without its trailing slash.
        id_token_issuers: further `iss` values an ID token may carry besides the issuer.
        client_auth_methods: the token endpoint authentication methods to assume when the
            metadata lists none (GitHub documents only client_id and client_secret in the
            form).
        tenant_issuers: Microsoft Entra's multi-tenant rule: a configured issuer ending in
            /common/v2.0, /organizations/v2.0 or /consumers/v2.0 accepts the discovery
            document's `.../{tenantid}/v2.0` issuer, and an ID token only when its `iss`
            is that template with `{tenantid}` replaced by the token's `tid` claim.
        sources: for each setting, the documentation URL it follows.
    """

    name: str
    hosts: tuple[str, ...] = ()
    offline_access: bool | None = None
    audience_param: str | None = None
    prompt: str | None = None
    auth_params: Mapping[str, str] = field(default_factory=FrozenMap)
    endpoints: Mapping[str, str] = field(default_factory=FrozenMap)
    id_token_issuers: tuple[str, ...] = ()
    client_auth_methods: tuple[str, ...] = ()
    tenant_issuers: bool = False
    sources: Mapping[str, str] = field(default_factory=FrozenMap, compare=False)

    def endpoints_for(self, issuer: str) -> dict[str, str]:
        """The preset's endpoints with "{issuer}" filled in."""
        base = issuer.rstrip("/")
        return {name: url.replace("{issuer}", base) for name, url in self.endpoints.items()}

    def matches_host(self, host: str) -> bool:
        """Whether an issuer on `host` selects this preset."""
        host = host.lower().rstrip(".")
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.hosts)


def _preset(**kwargs: Any) -> Preset:
    for name in ("auth_params", "endpoints", "sources"):
        if name in kwargs:
            kwargs[name] = FrozenMap(kwargs[name])
    return Preset(**kwargs)


_GOOGLE_NATIVE = "https://developers.google.com/identity/protocols/oauth2/native-app"
_GOOGLE_OFFLINE = _GOOGLE_NATIVE + "#step-2:-send-a-request-to-googles-oauth-2.0-server"
_GOOGLE_OIDC = "https://developers.google.com/identity/openid-connect/openid-connect"
_ENTRA_TOKENS = "https://learn.microsoft.com/en-us/entra/identity-platform/access-tokens"
_ENTRA_SCOPES = "https://learn.microsoft.com/en-us/entra/identity-platform/scopes-oidc"
_ENTRA_ERRORS = "https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes"
_ENTRA_CODE_FLOW = "https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow"
_ENTRA_CONSENT = (
    "https://learn.microsoft.com/en-us/entra/identity/enterprise-apps/configure-user-consent"
)
_GITHUB_APPS = (
    "https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps"
)
_GITHUB_ERRORS = (
    "https://docs.github.com/en/apps/oauth-apps/maintaining-oauth-apps/"
    "troubleshooting-oauth-app-access-token-request-errors"
)

#: Every preset, by name. Adding a provider means adding an entry here, with its sources.
PRESETS: Mapping[str, Preset] = {
    p.name: p
    for p in (
        _preset(
            name="generic",
            sources={
                "discovery": "https://openid.net/specs/openid-connect-discovery-1_0.html",
                "offline_access": "https://openid.net/specs/openid-connect-core-1_0.html#OfflineAccess",
                "audience_param": "https://www.rfc-editor.org/rfc/rfc8707",
                "rfc8414": "https://www.rfc-editor.org/rfc/rfc8414#section-3.1",
            },
        ),
        _preset(
            name="google",
            hosts=("accounts.google.com",),
            # Google refuses the offline_access scope (invalid_scope) and issues a refresh
            # token for access_type=offline instead.
            offline_access=False,
            auth_params={"access_type": "offline"},
            # "The value of iss in the ID token is https://accounts.google.com or
            # accounts.google.com."
            id_token_issuers=("accounts.google.com",),
            sources={
                "offline_access": _GOOGLE_OFFLINE,
                "auth_params": _GOOGLE_OFFLINE,
                "id_token_issuers": _GOOGLE_OIDC + "#validatinganidtoken",
                "client_secret": _GOOGLE_NATIVE + "#exchange-authorization-code",
            },
        ),
        _preset(
            name="entra",
            hosts=("login.microsoftonline.com", "login.microsoft.com"),
            # v2 endpoints take API permissions as scopes; `resource` is AADSTS901002.
            audience_param="",
            tenant_issuers=True,
            # No prompt: Entra issues a refresh token for offline_access without one, and
            # prompt=consent shows "Need admin approval" in tenants that restrict user
            # consent, even when an admin has consented for everyone.
            prompt="",
            sources={
                "tenant_issuers": _ENTRA_TOKENS + "#validate-the-issuer",
                "audience_param": _ENTRA_SCOPES,
                "AADSTS901002": _ENTRA_ERRORS,
                "prompt": _ENTRA_CODE_FLOW + "#request-an-authorization-code",
                "offline_access": _ENTRA_SCOPES + "#offline_access",
                "user_consent": _ENTRA_CONSENT,
            },
        ),
        _preset(
            name="auth0",
            hosts=("*.auth0.com",),
            audience_param="audience",
            sources={
                "audience_param": "https://auth0.com/docs/secure/tokens/access-tokens/get-access-tokens",
                "offline_access": "https://auth0.com/docs/secure/tokens/refresh-tokens/get-refresh-tokens",
            },
        ),
        _preset(
            name="okta",
            hosts=("*.okta.com", "*.oktapreview.com", "*.okta-emea.com"),
            sources={
                "generic": "https://developer.okta.com/docs/reference/api/oidc/",
                "offline_access": "https://developer.okta.com/docs/guides/refresh-tokens/main/",
            },
        ),
        _preset(
            name="keycloak",
            sources={
                "generic": "https://www.keycloak.org/securing-apps/oidc-layers",
                "offline_access": "https://www.keycloak.org/docs/latest/server_admin/#_offline-access",
            },
        ),
        _preset(
            name="cognito",
            hosts=("cognito-idp.*.amazonaws.com",),
            # Cognito's scopes are openid, email, phone, profile, aws.cognito.signin.user.admin
            # and resource-server scopes; the code grant returns a refresh token anyway.
            # Its discovery document names no revocation endpoint: pass
            # endpoints={"revocation_endpoint": "https://<domain>/oauth2/revoke"}.
            offline_access=False,
            sources={
                "offline_access": "https://docs.aws.amazon.com/cognito/latest/developerguide/authorization-endpoint.html",
                "refresh_token": "https://docs.aws.amazon.com/cognito/latest/developerguide/token-endpoint.html",
                "revocation_endpoint": "https://docs.aws.amazon.com/cognito/latest/developerguide/revocation-endpoint.html",
            },
        ),
        _preset(
            name="gitlab",
            hosts=("gitlab.com",),
            # GitLab's OIDC scopes are openid, profile, email; refresh tokens always come.
            offline_access=False,
            sources={
                "offline_access": "https://docs.gitlab.com/integration/openid_connect_provider/",
                "refresh_token": "https://docs.gitlab.com/api/oauth2/",
            },
        ),
        _preset(
            name="github",
            hosts=("github.com",),
            # No discovery, no ID token (OAuth only: no jwks_uri, so no openid scope), no
            # RFC 7009 revocation endpoint, and token errors come with HTTP 200.
            offline_access=False,
            endpoints={
                "authorization_endpoint": "{issuer}/login/oauth/authorize",
                "token_endpoint": "{issuer}/login/oauth/access_token",
                "device_authorization_endpoint": "{issuer}/login/device/code",
            },
            client_auth_methods=("client_secret_post",),
            sources={
                "endpoints": _GITHUB_APPS,
                "client_auth_methods": _GITHUB_APPS + "#web-application-flow",
                "device_authorization_endpoint": _GITHUB_APPS + "#device-flow",
                "errors": _GITHUB_ERRORS,
            },
        ),
        _preset(
            name="dex",
            sources={
                "generic": "https://dexidp.io/docs/configuration/custom-scopes-claims-clients/",
            },
        ),
    )
}

#: Token endpoint error codes some providers use instead of RFC 6749's (section 5.2) and
#: RFC 8628's, and the standard code each means, so that every caller handles them alike:
#: a dead refresh token is `invalid_grant` (and deleted), wrong client credentials are
#: `invalid_client` (and keep the refresh token). GitHub answers these with HTTP 200:
#: https://docs.github.com/en/apps/oauth-apps/maintaining-oauth-apps/troubleshooting-oauth-app-access-token-request-errors
#: (code exchange), .../authorizing-oauth-apps#error-codes-for-the-device-flow (device
#: grant), https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens
#: (refresh). No standard code is among the keys, so the table applies to every provider.
OAUTH_ERROR_ALIASES: Mapping[str, str] = FrozenMap({
    "bad_verification_code": "invalid_grant",  # the code is wrong, expired or spent
    "bad_refresh_token": "invalid_grant",  # the refresh token is wrong or expired
    "incorrect_device_code": "invalid_grant",  # the device code is not valid
    "redirect_uri_mismatch": "invalid_grant",  # RFC 6749 section 4.1.3's redirect_uri check
    "incorrect_client_credentials": "invalid_client",
    "device_flow_disabled": "unauthorized_client",  # the app may not use the device grant
})

#: The names `OIDCParams(preset=...)` accepts.
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called `name`.

    Raises:
        KeyError: no such preset (OIDCParams turns this into a ConfigError).
    """
    return PRESETS[name]


def preset_for_issuer(issuer: str) -> Preset:
    """The preset an issuer's host selects, else "generic"."""
    try:
        host = urlsplit(issuer).hostname or ""
    except ValueError:
        host = ""
    for preset in PRESETS.values():
        if preset.hosts and preset.matches_host(host):
            return preset
    return PRESETS["generic"]
