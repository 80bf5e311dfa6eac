"""OIDCParams: what identifies one OAuth client at one OpenID provider or OAuth server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal, get_args

from ._keys import checked_scopes
from .errors import ConfigError
from .presets import PRESET_NAMES, FrozenMap, Preset, get_preset, preset_for_issuer

__all__ = [
    "AUDIENCE_PARAMS",
    "CALLBACK_HOSTS",
    "DEFAULT_CALLBACK_PORT",
    "ENDPOINT_NAMES",
    "LOGIN_METHODS",
    "PROTECTED_AUTH_PARAMS",
    "LoginMethod",
    "OIDCParams",
    "merge_auth_params",
]

#: ToolHive's loopback callback port, so one client registration serves both tools.
DEFAULT_CALLBACK_PORT = 8666
#: The loopback hosts a redirect URI may name (RFC 8252 section 7.3).
CALLBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
#: How an interactive login runs: "auto" picks the browser when one can be shown (or
#: `open_browser` is given), else the device grant when the provider advertises it.
LoginMethod = Literal["auto", "browser", "device"]
LOGIN_METHODS: tuple[str, ...] = get_args(LoginMethod)
#: How `audience` travels: RFC 8707 `resource`, Auth0's `audience`, or not at all.
AUDIENCE_PARAMS = ("resource", "audience", "")
#: The provider metadata members `endpoints` may fill in or override.
ENDPOINT_NAMES = (
    "authorization_endpoint",
    "token_endpoint",
    "revocation_endpoint",
    "device_authorization_endpoint",
    "jwks_uri",
    "userinfo_endpoint",
)
#: Parameters that bind a response to its request (state, nonce, PKCE, redirect URI,
#: client): `auth_params` may not set them, or the login's checks would be void.
PROTECTED_AUTH_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    }
)


class _Unset(str):
    """A default that reads as its value but tells "not given" from "given the same"."""

    __slots__ = ()


_RESOURCE = _Unset("resource")


def _string_map(value: object, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"OIDCParams.{what} must be a mapping of strings to strings")
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or not isinstance(item, str):
            raise ConfigError(
                f"OIDCParams.{what} must map non-empty strings to strings",
                hint=f"for example {what}={{'name': 'value'}}",
            )
        result[key] = item
    return result


def merge_auth_params(*layers: Mapping[str, str] | None) -> dict[str, str]:
    """Merge authorization parameters, later layers over earlier ones (pure).

    Raises:
        ConfigError: a layer tries to set a parameter in `PROTECTED_AUTH_PARAMS`.
    """
    merged: dict[str, str] = {}
    for layer in layers:
        if not layer:
            continue
        forbidden = sorted(PROTECTED_AUTH_PARAMS.intersection(layer))
        if forbidden:
            raise ConfigError(
                f"auth_params may not set {', '.join(forbidden)}",
                hint="state, nonce, PKCE, redirect_uri and client_id bind the response to"
                " this login and are always set by oauth-auth",
            )
        merged.update(layer)
    return merged


@dataclass(frozen=True)
class OIDCParams:
    """The provider and client to get tokens from.

    Hashable and immutable; `client_secret` is never shown by `repr` or `str`. A preset
    (chosen by name, or from the issuer's host) only supplies defaults for the fields left
    unset; `auth_params` and `endpoints` are merged key by key, the caller's over the
    preset's.

    Attributes:
        issuer: the provider's issuer URL (https, or http on a loopback host).
        client_id: the client registered at the provider.
        scopes: scopes to request; `openid` (unless the server is OAuth-only) and
            `offline_access` (see `offline_access`) are added for logins.
        audience: the API the access token is for; sent as `audience_param`.
        callback_port: loopback port of the redirect URI; 0 becomes 8666 (ToolHive's).
        client_secret: the client's secret, for confidential or "desktop" clients
            (client_secret_basic, or client_secret_post when that is all the provider
            lists); "" for a public client.
        preset: a name of `oauth_auth.presets.PRESETS`; None picks one from the issuer's
            host, else "generic".
        offline_access: None asks for `offline_access` when the provider lists it in
            `scopes_supported` or lists no scopes; True always; False never.
        prompt: None sends `prompt=consent` exactly when `offline_access` is asked for
            (unless the preset says otherwise: Entra's sends none); "" sends none;
            anything else is sent as given.
        audience_param: "resource" (RFC 8707), "audience" (Auth0) or "" (not sent).
        auth_params: extra parameters of the authorization and device authorization
            requests (not state, nonce, PKCE, redirect_uri or client_id).
        endpoints: provider metadata to fill in or override (`ENDPOINT_NAMES`); with the
            authorization and token endpoints, no discovery is done at all.
        callback_host: the redirect URI's host: "localhost", "127.0.0.1" or "::1".
    """

    issuer: str
    client_id: str
    scopes: Sequence[str] = field(default=())
    audience: str = ""
    callback_port: int = 0
    _: KW_ONLY
    client_secret: str = field(default="", repr=False)
    preset: str | None = None
    offline_access: bool | None = None
    prompt: str | None = None
    audience_param: str = _RESOURCE
    auth_params: Mapping[str, str] = field(default_factory=FrozenMap)
    endpoints: Mapping[str, str] = field(default_factory=FrozenMap)
    callback_host: str = "localhost"

    def __post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer:
            raise ConfigError("OIDCParams.issuer is required", hint="pass the issuer URL")
        # The issuer's scheme (https, or http on loopback) is checked at discovery, where
        # it matters, so that building params for key derivation never fails.
        if not isinstance(self.client_id, str) or not self.client_id:
            raise ConfigError("OIDCParams.client_id is required", hint="pass the client id")
        set_ = object.__setattr__
        set_(self, "scopes", checked_scopes(self.scopes, "OIDCParams.scopes",
                                            '["openid", "email"]'))
        # tolerate None from config files, which the annotation does not admit
        set_(self, "audience", self.audience or "")
        if not isinstance(self.callback_port, int) or not 0 <= self.callback_port <= 65535:
            raise ConfigError(
                f"callback_port {self.callback_port!r} is not a TCP port (0-65535)",
                hint="0 means the default, 8666",
            )
        if self.callback_port == 0:
            set_(self, "callback_port", DEFAULT_CALLBACK_PORT)
        secret: object = self.client_secret
        if secret is None:  # config files may hold null
            set_(self, "client_secret", "")
        elif not isinstance(secret, str):
            raise ConfigError("OIDCParams.client_secret must be a string")

        preset = self._resolve_preset()
        if self.offline_access is not None and not isinstance(self.offline_access, bool):
            raise ConfigError("OIDCParams.offline_access must be None, True or False")
        if self.offline_access is None:
            set_(self, "offline_access", preset.offline_access)
        if self.prompt is not None and not isinstance(self.prompt, str):
            raise ConfigError("OIDCParams.prompt must be None or a string")
        if self.prompt is None:
            set_(self, "prompt", preset.prompt)
        audience_param: Any = self.audience_param
        derived = type(audience_param) is _Unset
        if derived:
            audience_param = (
                preset.audience_param if preset.audience_param is not None else "resource"
            )
        if audience_param is None:
            audience_param = ""
        if audience_param not in AUDIENCE_PARAMS:
            raise ConfigError(
                f"audience_param {audience_param!r} is not one of 'resource', 'audience', ''",
                hint="'resource' is RFC 8707, 'audience' is Auth0's, '' sends none",
            )
        # A derived value stays marked as such, so `dataclasses.replace(params, preset=...)`
        # still lets the new preset choose it.
        set_(self, "audience_param", _Unset(audience_param) if derived else str(audience_param))

        given_params = _string_map(self.auth_params, "auth_params")
        set_(self, "auth_params", FrozenMap(merge_auth_params(preset.auth_params, given_params)))

        given_endpoints = _string_map(self.endpoints, "endpoints")
        unknown = sorted(set(given_endpoints) - set(ENDPOINT_NAMES))
        if unknown:
            raise ConfigError(
                f"unknown endpoint name(s): {', '.join(unknown)}",
                hint=f"endpoints may name {', '.join(ENDPOINT_NAMES)}",
            )
        if any(not url for url in given_endpoints.values()):
            raise ConfigError("an endpoint URL in OIDCParams.endpoints is empty")
        set_(
            self,
            "endpoints",
            FrozenMap({**preset.endpoints_for(self.issuer), **given_endpoints}),
        )

        host = self.callback_host
        if isinstance(host, str) and host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if host not in CALLBACK_HOSTS:
            raise ConfigError(
                f"callback_host {self.callback_host!r} is not one of"
                f" {', '.join(CALLBACK_HOSTS)}",
                hint="the redirect URI must be a loopback address (RFC 8252 section 7.3)",
            )
        set_(self, "callback_host", host)

    def _resolve_preset(self) -> Preset:
        if self.preset is None:
            return preset_for_issuer(self.issuer)
        if not isinstance(self.preset, str) or self.preset not in PRESET_NAMES:
            raise ConfigError(
                f"unknown preset {self.preset!r}",
                hint=f"use one of {', '.join(PRESET_NAMES)}, or None to choose by issuer",
            )
        return get_preset(self.preset)

    @property
    def port(self) -> int:
        """The loopback callback port (8666 when 0 was given)."""
        return self.callback_port

    @property
    def provider_preset(self) -> Preset:
        """The preset in force: the one named, or the one the issuer's host selects."""
        return self._resolve_preset()
