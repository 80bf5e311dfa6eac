"""Secret key names, compatible byte for byte with ToolHive's tokensource package."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["derive_secret_key", "ensure_offline_access", "llm_access_token_env_var"]

#: ToolHive's environment prefix for secrets (its environment secrets provider).
ENV_SECRET_PREFIX = "TOOLHIVE_SECRET_"
#: Suffix of the shared access-token cache entry (tier 2).
AT_SUFFIX = "_AT"


def derive_secret_key(prefix: str, resource_url: str, issuer: str) -> str:
    """A stable secrets key for one (resource, issuer) pair.

    `prefix` + the first 8 hex characters of sha256(resource_url + NUL + issuer). The NUL
    separator keeps ("ab", "c") and ("a", "bc") apart.
    """
    digest = hashlib.sha256(f"{resource_url}\x00{issuer}".encode()).hexdigest()
    return prefix + digest[:8]


def ensure_offline_access(scopes: Iterable[str]) -> list[str]:
    """A new list of `scopes` with "offline_access" appended if absent (never mutates)."""
    result = list(scopes)
    if "offline_access" not in result:
        result.append("offline_access")
    return result


def llm_access_token_env_var(gateway_url: str, issuer_url: str) -> str:
    """The environment variable that injects an LLM gateway access token (CI, e2e tests).

    ToolHive's environment secrets provider reads `TOOLHIVE_SECRET_<name>`, and the LLM
    profile scopes names as `__thv_llm_<key>`, and the access token entry is `<key>_AT`.
    """
    key = derive_secret_key("LLM_OAUTH_", gateway_url, issuer_url)
    return f"{ENV_SECRET_PREFIX}__thv_llm_{key}{AT_SUFFIX}"
