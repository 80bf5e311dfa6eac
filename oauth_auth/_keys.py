"""Secret key names, compatible byte for byte with ToolHive's tokensource package, and the
one rule that turns what a user wrote into a list of scopes."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable

from .errors import ConfigError

__all__ = [
    "AT_SUFFIX",
    "ENV_SECRET_PREFIX",
    "LLM_KEY_PREFIX",
    "LLM_SCOPE",
    "LOGIN_SCOPES",
    "REGISTRY_KEY_PREFIX",
    "REGISTRY_SCOPE",
    "SYSTEM_KEY_PREFIX",
    "checked_scopes",
    "derive_secret_key",
    "ensure_offline_access",
    "env_access_token_var",
    "llm_access_token_env_var",
    "normalize_scopes",
    "ref_written_for",
    "same_url",
    "scoped_name",
]

# ToolHive's names, each spelled here and nowhere else (its tokensource, secrets and
# environment providers read and write the same entries).

#: ToolHive's environment prefix for secrets (its environment secrets provider).
ENV_SECRET_PREFIX = "TOOLHIVE_SECRET_"
#: Suffix of the shared access-token cache entry (tier 2): `<key>_AT`.
AT_SUFFIX = "_AT"
#: ToolHive's scoping of system keys: `<scope>`'s entry `name` is `__thv_<scope>_<name>`.
SYSTEM_KEY_PREFIX = "__thv_"
#: The LLM gateway profile: its key prefix and its system-key scope.
LLM_KEY_PREFIX = "LLM_OAUTH_"
LLM_SCOPE = "llm"
#: The registry profile: its key prefix and its system-key scope (`__thv_registry_<key>`).
REGISTRY_KEY_PREFIX = "REGISTRY_OAUTH_"
REGISTRY_SCOPE = "registry"


def scoped_name(scope: str, name: str) -> str:
    """`name` as stored under ToolHive's system-key `scope`: ``__thv_<scope>_<name>``."""
    return f"{SYSTEM_KEY_PREFIX}{scope}_{name}"


def env_access_token_var(key: str, scope: str = "") -> str:
    """The environment variable that injects the access token of session `key` (scoped
    under `scope` when the session's store is): what `EnvironmentSecrets` reads for the
    ``<key>_AT`` entry."""
    name = key + AT_SUFFIX
    return ENV_SECRET_PREFIX + (scoped_name(scope, name) if scope else name)


def derive_secret_key(prefix: str, resource_url: str, issuer: str) -> str:
    """A stable secrets key for one (resource, issuer) pair.

    `prefix` + the first 8 hex characters of sha256(resource_url + NUL + issuer). The NUL
    separator keeps ("ab", "c") and ("a", "bc") apart.
    """
    digest = hashlib.sha256(f"{resource_url}\x00{issuer}".encode()).hexdigest()
    return prefix + digest[:8]


#: The scopes a login adds by its own rules (`openid` unless the server is OAuth-only,
#: `offline_access` by `OIDCParams.offline_access`): the config file keeps the others.
LOGIN_SCOPES = ("openid", "offline_access")

_SEPARATORS = re.compile(r"[\s,]+")


def normalize_scopes(
    scopes: Iterable[str], *, add: Iterable[str] = (), drop: Collection[str] = ()
) -> list[str]:
    """A new list of scopes: each entry split on whitespace and commas, empties and
    duplicates dropped (the first kept, so the scope string is stable), the `drop` ones
    removed, then each of `add` appended if absent. Never mutates.

    Every way a scope list comes in goes through here (`OIDCParams` for a login, the config
    file, `--scope a,b`, a 401's space-separated `scope`), so `"a b"`, `"a,b"` and
    `["a", "b"]` are one list everywhere. OAuth's scope string is space-separated (RFC 6749
    section 3.3) and no provider's scope names contain a comma.
    """
    result: list[str] = []
    for entry in (*scopes, *add):
        for scope in _SEPARATORS.split(entry):
            if scope and scope not in drop and scope not in result:
                result.append(scope)
    return result


#: A key as `derive_secret_key` makes it: a prefix, then 8 lowercase hex digits.
_DERIVED = re.compile(r"(?P<prefix>.+?)(?P<digest>[0-9a-f]{8})")


def ref_written_for(ref: str, *, issuer: str, resources: Iterable[str]) -> bool:
    """Whether a config entry's `cached_refresh_token_ref` may serve this session.

    A ref in the derived form (prefix + 8 hex digits) names the session of the issuer and
    resource it was derived from: it serves only a session that derives it too, from
    its own issuer (with or without a trailing slash, as older releases kept it) and one
    of its own `resources` (the registry URL; the audience or client id), whatever the
    prefix. So an entry for another issuer that names this session's key never gets its
    refresh token, which would go to that issuer, and an `invalid_grant` from there
    would delete the session. A ref in any other form was named by hand, and nothing
    derives it: it is the entry's own choice.
    """
    match = _DERIVED.fullmatch(ref)
    if match is None:
        return True
    prefix = match["prefix"]
    bare = issuer.rstrip("/")
    return any(
        derive_secret_key(prefix, resource, form) == ref
        for resource in resources
        if resource
        for form in dict.fromkeys((issuer, bare, bare + "/"))
    )


def same_url(a: str, b: str) -> bool:
    """Whether two URLs (issuers, registry or gateway URLs, config entries' names) name one
    thing: equal to the letter, but for a trailing slash."""
    return a.rstrip("/") == b.rstrip("/")


def checked_scopes(scopes: Iterable[str], what: str, example: str) -> tuple[str, ...]:
    """`scopes` as a tuple, refused (ConfigError) when it is one string, or holds
    something that is not a non-empty scope without spaces: the one check of a scope
    list given in code (`OIDCParams`, the machine grants). Text a user typed goes through
    `normalize_scopes` instead."""
    if isinstance(scopes, str):
        raise ConfigError(f"{what} must be a sequence of scope strings, not one string",
                          hint=f"write scopes={example}")
    result = tuple(scopes)
    if any(not isinstance(s, str) or not s or " " in s for s in result):
        raise ConfigError("each scope must be a non-empty string without spaces")
    return result


def ensure_offline_access(scopes: Iterable[str]) -> list[str]:
    """A new list of `scopes` with "offline_access" appended if absent (never mutates)."""
    return normalize_scopes(scopes, add=("offline_access",))


def llm_access_token_env_var(gateway_url: str, issuer_url: str) -> str:
    """The environment variable that injects an LLM gateway access token (CI, e2e tests).

    ToolHive's environment secrets provider reads `TOOLHIVE_SECRET_<name>`, and the LLM
    profile scopes names as `__thv_llm_<key>`, and the access token entry is `<key>_AT`.
    """
    return env_access_token_var(derive_secret_key(LLM_KEY_PREFIX, gateway_url, issuer_url),
                                LLM_SCOPE)
