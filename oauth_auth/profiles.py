"""Turnkey profiles: `registry_auth` and `llm_gateway_auth`, and the sessions behind the CLI.

A profile knows where its OAuth settings live (the oauth-auth config file, see
`oauth_auth._config`), how its secrets key is named (ToolHive's derivation, so ToolHive and
oauth-auth share sessions), which secrets provider holds its tokens, and which command the
user runs to log in. One store serves the library and the `oauth-auth` command:
``KeyringSecrets(service="oauth-auth")``, so a login by the command serves the library.

Kinds of session:

=========  ================================  ====================  =====================
kind       config entry                      key prefix / resource  secrets
=========  ================================  ====================  =====================
registry   ``registries[<registry url>]``    REGISTRY_OAUTH_ / url  keyring, scoped
                                                                    ``__thv_registry_``
llm        ``llm_gateways[<gateway url>]``   LLM_OAUTH_ / url       env, then keyring,
                                                                    scoped ``__thv_llm_``
profile    ``profiles[<name>]``              OAUTH_AUTH_<NAME>_ /   keyring
                                             audience or client id
ad hoc     none                              OAUTH_AUTH_ /          keyring
                                             audience or client id
=========  ================================  ====================  =====================

The key is the entry's ``cached_refresh_token_ref`` when it has one written for this
session (the entry's issuer is the one in use, and a derived ref derives from this issuer
and this registry, gateway, audience or client: `_keys.ref_written_for`), else
``derive_secret_key(prefix, resource, issuer)`` with the issuer's trailing slash dropped
(`_naming`); a named profile's prefix carries its name, so two profiles never share an
entry. After a login or a rotation of the refresh token the entry gets
``cached_refresh_token_ref`` and ``cached_token_expiry`` (RFC 3339 UTC).

This module imports neither requests nor httpx: `registry_auth` and `llm_gateway_auth`
load `OIDCAuth` when called, and the CLI uses `open_session` directly, so `oauth-auth
token` on a cache hit stays fast.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._config import (
    LLM_GATEWAYS,
    PROFILES,
    REGISTRIES,
    RESOURCES,
    Config,
    existing_key,
)
from ._keys import (
    LLM_KEY_PREFIX,
    LLM_SCOPE,
    LOGIN_SCOPES,
    REGISTRY_KEY_PREFIX,
    REGISTRY_SCOPE,
    normalize_scopes,
)
from ._naming import KEYRING_SERVICE, LLM_PREEMPTIVE_WINDOW, profile_key_prefix, session_key
from ._params import DEFAULT_CALLBACK_PORT, OIDCParams
from ._token import format_rfc3339
from .errors import ConfigError, LoginRequiredError
from .secrets import (
    ChainSecrets,
    EnvironmentSecrets,
    KeyringSecrets,
    ScopedSecrets,
    is_writable,
)
from .source import OAuthTokenSource

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from .auth import OIDCAuth
    from .secrets import SecretsProvider

__all__ = [
    "ADHOC",
    "LLM",
    "PROFILE",
    "REGISTRY",
    "RESOURCE",
    "KEYRING_SERVICE",
    "NotConfiguredError",
    "ProfileKind",
    "Session",
    "default_interactive",
    "default_store",
    "llm_gateway_auth",
    "open_session",
    "registry_auth",
]

log = logging.getLogger("oauth_auth")

#: `OIDCParams` keyword fields a profile keeps as the user gave them (never client_secret).
PROVIDER_FIELDS = ("preset", "offline_access", "prompt", "audience_param", "auth_params",
                   "endpoints", "callback_host")
#: The secrets entry beside a session's refresh token that holds its client secret.
CLIENT_SECRET_SUFFIX = "_CLIENT_SECRET"



class NotConfiguredError(ConfigError, LoginRequiredError):
    """No issuer or client id is known for this registry, gateway or profile.

    Both a `ConfigError` (a setting is missing) and a `LoginRequiredError` (the remedy is
    the login command, and the CLI exits 4 for it).
    """


@dataclass(frozen=True)
class ProfileKind:
    """What differs between the registry, LLM gateway, named-profile and ad-hoc sessions."""

    name: str
    section: str | None  # config section; None: ad hoc, nothing in the config
    prefix: str  # derive_secret_key prefix
    describe: str  # "registry", "LLM gateway", ...
    command: str  # the CLI group, "" for the top-level commands
    name_flag: str  # "--registry", "--gateway", "--profile", ""
    scope: str = ""  # ScopedSecrets scope ("" for none)
    env_first: bool = False  # consult EnvironmentSecrets before the store
    window: float | None = None  # preemptive refresh window (None: the source's default)
    key_from_url: bool = True  # derive the key from the URL (else from audience/client id)
    # add "openid" to the configured scopes (ToolHive's rule; offline_access is always
    # left to the login's offline_access rule); False leaves openid to the login's
    # provider rules too (an OAuth-only resource server never registered it)
    oidc_scopes: bool = True
    # the key prefix is `prefix` + the entry's name (named profiles, `_naming`)
    prefix_per_name: bool = False

    def key_prefix(self, name: str | None) -> str:
        """The `derive_secret_key` prefix of the session `name` of this kind."""
        return profile_key_prefix(name) if self.prefix_per_name and name else self.prefix

    def login_command(self, name: str | None, oidc: OIDCParams | None = None,
                      *, full: bool = False) -> str:
        """The exact `oauth-auth ... login` command for this session."""
        parts = ["oauth-auth"]
        if self.command:
            parts.append(self.command)
        parts.append("login")
        if self.name_flag and name:
            parts += [self.name_flag, name]
        if full or self.section is None:
            if oidc is not None:
                parts += ["--issuer", oidc.issuer, "--client-id", oidc.client_id]
                if oidc.audience:
                    parts += ["--audience", oidc.audience]
                for scope in normalize_scopes(oidc.scopes, drop=LOGIN_SCOPES):
                    parts += ["--scope", scope]
                if oidc.callback_port != DEFAULT_CALLBACK_PORT:
                    parts += ["--callback-port", str(oidc.callback_port)]
            else:
                parts += ["--issuer", "ISSUER", "--client-id", "CLIENT_ID"]
        return " ".join(_quote(p) for p in parts)


REGISTRY = ProfileKind("registry", REGISTRIES, REGISTRY_KEY_PREFIX, "registry", "registry",
                       "--registry", scope=REGISTRY_SCOPE)
LLM = ProfileKind("llm", LLM_GATEWAYS, LLM_KEY_PREFIX, "LLM gateway", "llm", "--gateway",
                  scope=LLM_SCOPE, env_first=True, window=LLM_PREEMPTIVE_WINDOW)
PROFILE = ProfileKind("profile", PROFILES, "OAUTH_AUTH_", "profile", "", "--profile",
                      key_from_url=False, prefix_per_name=True)
ADHOC = ProfileKind("adhoc", None, "OAUTH_AUTH_", "client", "", "", key_from_url=False)
#: A resource found by RFC 9728 discovery (`oauth_auth.resource`): one session per
#: (canonical resource URL, issuer).
RESOURCE = ProfileKind("resource", RESOURCES, "RESOURCE_OAUTH_", "resource", "",
                       "--resource", oidc_scopes=False)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def default_interactive() -> bool:
    """Whether a person can answer a login: stdin and stderr are both terminals."""
    try:
        return bool(sys.stdin and sys.stdin.isatty() and sys.stderr and sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def default_store(config: Config | None = None) -> SecretsProvider:
    """The store shared by the library and the command: the OS keychain, service
    "oauth-auth". The backend is looked up (and keyring imported) only when first used.

    A fleet names a shared server instead, by URL: the environment variable
    ``OAUTH_AUTH_STORE``, else the config file's top-level ``store`` (``redis://...`` or
    ``postgresql://...``; see `oauth_auth._store_url` for its key and parameters).
    """
    import os

    from ._store_url import STORE_ENV, store_from_url

    url = os.environ.get(STORE_ENV, "").strip()
    if not url and config is not None:
        value = config.load().get("store") or ""
        if not isinstance(value, str):
            raise ConfigError(f"the config file's `store` must be a URL string ({config.path})")
        url = value.strip()
    if url:
        return store_from_url(url)
    return KeyringSecrets(service=KEYRING_SERVICE)


@dataclass
class Session:
    """One resolved session: its settings, secrets key, secrets provider and token source.

    Attributes:
        kind: registry, llm, profile or ad hoc.
        name: the registry or gateway URL, the profile name, or None (ad hoc).
        oidc: the effective OAuth settings: the source's, which may change (a step-up's
            scopes, a client registered anew), so what a login saves is what it used.
        key: the secrets key (the refresh token's entry; the access token is `key + "_AT"`).
        store: the writable store (normally `KeyringSecrets`), before scoping.
        secrets: what the token source uses (the store, scoped and chained as the kind says).
        config: the config file.
        entry: the config entry as read (None when there is none).
        source: the token source.
    """

    kind: ProfileKind
    name: str | None
    key: str
    store: SecretsProvider | None
    secrets: SecretsProvider | None
    config: Config
    entry: dict[str, Any] | None
    source: OAuthTokenSource = field(repr=False)
    settings: dict[str, Any] = field(default_factory=dict)  # PROVIDER_FIELDS, as given
    confidential: bool = False  # the client has a secret (kept in the store, not here)

    @property
    def oidc(self) -> OIDCParams:
        return self.source.oidc

    @property
    def login_command(self) -> str:
        return self.kind.login_command(self.name, self.oidc)

    def settings_entry(self) -> dict[str, Any]:
        """The settings a login saves in the config entry."""
        return {
            "issuer": self.oidc.issuer,
            "client_id": self.oidc.client_id,
            "scopes": normalize_scopes(self.oidc.scopes, drop=LOGIN_SCOPES),
            "audience": self.oidc.audience,
            "callback_port": self.oidc.callback_port,
            **{f: self.settings.get(f) for f in PROVIDER_FIELDS},
            "confidential": True if self.confidential else None,
        }

    def save_client_secret(self) -> None:
        """Keep the client secret beside the session (``<key>_CLIENT_SECRET``), never in
        the config file; a no-op for a public client."""
        if self.oidc.client_secret and self.secrets is not None:
            self.secrets.set_secret(self.key + CLIENT_SECRET_SUFFIX, self.oidc.client_secret)

    def save_settings(self) -> None:
        """Write this session's settings into its config entry (profiles, registries, LLM)."""
        if self.kind.section is None or self.name is None:
            return
        self.config.set_entry(self.kind.section, self.name, self.settings_entry())

    def forget(self) -> None:
        """Drop the entry's cached ref and expiry (after a logout)."""
        if self.kind.section is not None and self.name is not None:
            self.config.forget_session(self.kind.section, self.name)


_UNSET: Any = object()


def open_session(
    kind: ProfileKind,
    name: str | None,
    *,
    issuer: str | None = None,
    client_id: str | None = None,
    scopes: Sequence[str] | None = None,
    audience: str | None = None,
    callback_port: int | None = None,
    interactive: bool | None = None,
    config_path: str | None = None,
    fresh_login: bool = False,
    provider: Mapping[str, Any] | None = None,
    client_secret: str | None = None,
    read_client_secret: bool = False,
    **more: Any,
) -> Session:
    """Resolve settings (arguments over the config entry), the key and the secrets, and
    build the token source.

    `more` goes to `OAuthTokenSource` (``open_browser=``, ``transport=``, ``clock=``...).
    ``secrets_provider=`` replaces the keyring store; the LLM profile still scopes it and
    consults the environment first. ``key_provider=``, ``config_persister=`` and
    ``fallback_error=`` override the profile's own. `fresh_login` hides what is stored
    from the token source's reads (writes still go through), so an interactive `token()`
    logs in anew instead of reusing the stored session: what `oauth-auth login` does.

    `provider` holds `OIDCParams` keyword fields as the user gave them (`PROVIDER_FIELDS`:
    preset, offline_access, prompt...), merged over the entry's and saved with it.
    `client_secret` is never saved in the config: `save_client_secret()` keeps it in the
    secrets store beside the session (``<key>_CLIENT_SECRET``), and a later session reads
    it from there when the entry says the client is confidential (or when
    `read_client_secret` asks, for ad-hoc flags, which have no entry).

    Raises:
        NotConfiguredError: no issuer or client id, from the arguments or the config.
        ConfigError: an invalid config file or setting.
    """
    config = Config(config_path)
    entry: dict[str, Any] | None = None
    if kind.section is not None:
        if not name:
            raise ConfigError(f"a {kind.describe} needs a name"
                              f" ({kind.name_flag} in the command)")
        entry = config.entry(kind.section, name)
        if kind.prefix_per_name:
            _refuse_shared_prefix(config, kind, name)
    stored = entry or {}
    eff_issuer = issuer or stored.get("issuer") or ""
    eff_client = client_id or stored.get("client_id") or ""
    if not eff_issuer or not eff_client:
        where = (f"{kind.describe} {name}" if name else "this client")
        missing = " and ".join(
            flag for flag, value in (("--issuer", eff_issuer), ("--client-id", eff_client))
            if not value
        )
        raise NotConfiguredError(
            f"no OAuth settings for the {where}: {missing} unknown"
            + (_not_in_config(config, kind) if kind.section is not None else ""),
            hint="run: " + kind.login_command(name, full=True),
        )
    eff_scopes = list(scopes) if scopes is not None else list(stored.get("scopes") or [])
    eff_audience = audience if audience is not None else (stored.get("audience") or "")
    eff_port = callback_port if callback_port is not None else int(
        stored.get("callback_port") or 0)
    settings = {f: stored[f] for f in PROVIDER_FIELDS if stored.get(f) is not None}
    settings.update({f: v for f, v in (provider or {}).items() if v is not None})

    own = (name or "",) if kind.key_from_url else (eff_audience, eff_client)
    key, ignored = session_key(
        prefix=kind.key_prefix(name), shared_prefix=kind.prefix,
        resource=(name or "") if kind.key_from_url else (eff_audience or eff_client),
        own=own, issuer=eff_issuer, entry=stored)
    if ignored:
        log.warning("ignoring the cached_refresh_token_ref %s of the %s %s: %s",
                    stored.get("cached_refresh_token_ref"), kind.describe, name, ignored)

    store = more.pop("secrets_provider", _UNSET)
    if store is _UNSET:
        store = default_store(config)
    secrets: SecretsProvider | None = store
    if store is not None and kind.env_first:
        secrets = ChainSecrets(EnvironmentSecrets(), store)
    if secrets is not None and kind.scope:
        secrets = ScopedSecrets(secrets, kind.scope)

    confidential = bool(client_secret) or bool(stored.get("confidential"))
    if client_secret is None and secrets is not None and (confidential or read_client_secret):
        client_secret = secrets.get_secret(key + CLIENT_SECRET_SUFFIX) or ""
        confidential = confidential or bool(client_secret)
    oidc = OIDCParams(
        eff_issuer, eff_client, scopes=_login_scopes(eff_scopes, kind.oidc_scopes),
        audience=eff_audience, callback_port=eff_port, client_secret=client_secret or "",
        **settings,
    )

    source_secrets = secrets
    if fresh_login and secrets is not None:
        source_secrets = _FreshLogin(secrets)

    if interactive is None:
        interactive = default_interactive()
    login = kind.login_command(name, oidc)
    fallback = LoginRequiredError(
        f"not logged in to the {kind.describe} {name}" if name
        else f"not logged in as client {eff_client!r} at {eff_issuer}",
        hint=f"run: {login}",
    )
    options: dict[str, Any] = {
        "key_provider": lambda: key,
        "secrets_provider": source_secrets,
        "interactive": interactive,
        "fallback_error": fallback,
    }
    if kind.window is not None:
        options["preemptive_refresh_window"] = kind.window
    if kind.section is not None and name:
        options["config_persister"] = _persister(config, kind.section, name, oidc)
    options.update(more)
    source = OAuthTokenSource(oidc, **options)
    return Session(kind, name, key, store, secrets, config, entry, source,
                   settings=settings, confidential=confidential)


def _refuse_shared_prefix(config: Config, kind: ProfileKind, name: str) -> None:
    """Refuse a profile whose key prefix another profile has (``work`` and ``WORK``):
    the two would share one secrets entry, so logging out of one would end the other."""
    prefix = kind.key_prefix(name)
    entries: dict[str, Any] = config.load()[kind.section or PROFILES]
    for other in entries:
        if other != name and kind.key_prefix(other) == prefix:
            raise ConfigError(
                f"the profile {name!r} would share its secrets with the existing profile"
                f" {other!r} (both are keyed {prefix}...)",
                hint=f"choose another name, or use --profile {_quote(other)}",
            )


def _not_in_config(config: Config, kind: ProfileKind) -> str:
    """Why the config gave no settings: no such file, or which entries it has."""
    if not config.path.exists():
        return f" (no such file: {config.path})"
    try:
        names = sorted(config.load()[kind.section or PROFILES])
    except ConfigError:
        names = []
    plural = {"profile": "profiles", "registry": "registries"}.get(kind.describe,
                                                                   kind.describe + "s")
    known = ", ".join(names) if names else "none"
    return f" (the {plural} in {config.path}: {known})"


class _FreshLogin:
    """A provider that reads as empty and writes through: makes `token()` log in anew.

    The old session stays stored until the new login succeeds and overwrites it.
    """

    def __init__(self, inner: SecretsProvider) -> None:
        self.inner = inner

    @property
    def writable(self) -> bool:
        return is_writable(self.inner)

    def get_secret(self, name: str) -> str | None:
        return None

    def set_secret(self, name: str, value: str) -> None:
        self.inner.set_secret(name, value)

    def delete_secret(self, name: str) -> None:
        self.inner.delete_secret(name)

    @property
    def lock(self) -> Callable[..., AbstractContextManager[object]] | None:
        """The wrapped provider's session lock (a fleet store's lease), so a login holds
        what a refresh on another host holds. Compare-and-set is not passed on: a login
        replaces whatever session is stored, which this wrapper reads as empty."""
        own = getattr(self.inner, "lock", None)
        return own if callable(own) else None

    def __repr__(self) -> str:
        return f"_FreshLogin({self.inner!r})"


def _login_scopes(scopes: Sequence[str], oidc: bool = True) -> list[str]:
    """"openid" first, then the configured scopes (split, no duplicates); with `oidc`
    False only the configured scopes.

    `offline_access` is never added here: the login asks for it by `OIDCParams`'s
    `offline_access` rule (None: only when the provider lists it in `scopes_supported`,
    or lists no scopes), so a registry or gateway on Google, Cognito or GitLab, which
    refuse the scope, can still log in.
    """
    return normalize_scopes(("openid", *scopes) if oidc else scopes)


def _persister(
    config: Config, section: str, name: str, oidc: OIDCParams
) -> Callable[[str, datetime], None]:
    """Write the session's ref and expiry to its entry; fill in the settings if absent."""

    def persist(key: str, expiry: datetime) -> None:
        def change(doc: dict[str, Any]) -> bool:
            entries: dict[str, Any] = doc[section]
            entry_key = existing_key(entries, name, section)
            entry = dict(entries.get(entry_key, {}))
            if not entry.get("issuer"):
                entry.update(
                    issuer=oidc.issuer, client_id=oidc.client_id,
                    scopes=normalize_scopes(oidc.scopes, drop=LOGIN_SCOPES),
                    audience=oidc.audience, callback_port=oidc.callback_port,
                )
            entry["cached_refresh_token_ref"] = key
            entry["cached_token_expiry"] = format_rfc3339(expiry)
            if entries.get(entry_key) == entry:
                return False
            entries[entry_key] = entry
            return True

        config.update(change)

    return persist


def registry_auth(
    registry_url: str,
    *,
    issuer: str | None = None,
    client_id: str | None = None,
    scopes: Sequence[str] | None = None,
    audience: str | None = None,
    interactive: bool | None = None,
    config_path: str | None = None,
    callback_port: int | None = None,
    **more: Any,
) -> OIDCAuth:
    """A ready `OIDCAuth` for a registry, with the settings `oauth-auth registry login` saved.

    Settings come from the arguments, else from the config entry of `registry_url`. The key
    is the entry's ``cached_refresh_token_ref``, else
    ``derive_secret_key("REGISTRY_OAUTH_", registry_url, issuer)``; tokens live in
    ``KeyringSecrets(service="oauth-auth")``. Without usable credentials and not
    interactive, requests fail with a `LoginRequiredError` that names the command to run.

    Args:
        registry_url: the registry's URL, as given to `oauth-auth registry login`.
        issuer, client_id, scopes, audience, callback_port: override the config entry.
        interactive: whether a login may run (default: stdin and stderr are terminals).
        config_path: another config file (default: `OAUTH_AUTH_CONFIG` or the platform's).
        **more: passed to `OAuthTokenSource` (``open_browser=``, ``skip_browser=``,
            ``login_method=``, ``secrets_provider=`` to replace the keyring...).

    Raises:
        NotConfiguredError: (a ConfigError) the issuer or client id is unknown.
    """
    session = open_session(
        REGISTRY, registry_url, issuer=issuer, client_id=client_id, scopes=scopes,
        audience=audience, callback_port=callback_port, interactive=interactive,
        config_path=config_path, **more,
    )
    from .auth import OIDCAuth

    return OIDCAuth(session.source)


def llm_gateway_auth(
    gateway_url: str,
    *,
    issuer: str | None = None,
    client_id: str | None = None,
    scopes: Sequence[str] | None = None,
    audience: str | None = None,
    interactive: bool | None = None,
    config_path: str | None = None,
    callback_port: int | None = None,
    **more: Any,
) -> OIDCAuth:
    """A ready `OIDCAuth` for an LLM gateway, compatible with ToolHive's LLM client.

    Like `registry_auth`, with the key prefix ``LLM_OAUTH_``, names scoped as
    ``__thv_llm_<key>`` (`ScopedSecrets`), the environment consulted first (so
    ``llm_access_token_env_var(gateway_url, issuer)`` = ``<token>|<RFC 3339 expiry>``
    injects a token with no keyring at all, as CI does), and a 10-minute preemptive window.
    """
    session = open_session(
        LLM, gateway_url, issuer=issuer, client_id=client_id, scopes=scopes,
        audience=audience, callback_port=callback_port, interactive=interactive,
        config_path=config_path, **more,
    )
    from .auth import OIDCAuth

    return OIDCAuth(session.source)
