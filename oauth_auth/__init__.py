"""oauth-auth: OIDC-backed bearer tokens for HTTP APIs.

Log in once in the browser; from then on every request, in this process or any other,
carries a valid token until the refresh token dies.

    from oauth_auth import OAuthTokenSource, OIDCParams, OIDCAuth, KeyringSecrets

Importing this package is cheap: requests, httpx and keyring are loaded only where they
are first needed, so `oauth-auth token` on a cache hit starts fast. Its namespace is
`__all__` and the submodules, nothing else.
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING

from ._keys import derive_secret_key, ensure_offline_access, llm_access_token_env_var
from .errors import (
    ConfigError,
    InvalidGrantError,
    LockTimeoutError,
    LoginError,
    LoginRequiredError,
    OAuthAuthError,
    OAuthError,
    SecretsError,
    SubjectTokenError,
    TransportError,
)

if TYPE_CHECKING:
    from ._params import OIDCParams
    from ._postgres import PostgresSecrets
    from ._redis import RedisSecrets
    from .auth import OIDCAuth
    from .grants import (
        ClientCredentials,
        EnvToken,
        ExecToken,
        FileToken,
        GitHubActionsToken,
        KubernetesToken,
        TokenExchange,
    )
    from .profiles import llm_gateway_auth, registry_auth
    from .resource import resource_auth
    from .secrets import (
        ChainSecrets,
        EnvironmentSecrets,
        KeyringSecrets,
        MemorySecrets,
        ScopedSecrets,
        SecretsProvider,
    )
    from .source import LogoutResult, OAuthTokenSource, SourceStatus, TokenSourceLike

__version__ = "0.1.0"

__all__ = [
    "ChainSecrets",
    "ClientCredentials",
    "ConfigError",
    "EnvToken",
    "EnvironmentSecrets",
    "ExecToken",
    "FileToken",
    "GitHubActionsToken",
    "InvalidGrantError",
    "KeyringSecrets",
    "KubernetesToken",
    "LockTimeoutError",
    "LoginError",
    "LoginRequiredError",
    "LogoutResult",
    "MemorySecrets",
    "OAuthAuthError",
    "OAuthError",
    "OAuthTokenSource",
    "OIDCAuth",
    "OIDCParams",
    "PostgresSecrets",
    "RedisSecrets",
    "ScopedSecrets",
    "SecretsError",
    "SecretsProvider",
    "SourceStatus",
    "SubjectTokenError",
    "TokenExchange",
    "TokenSourceLike",
    "TransportError",
    "derive_secret_key",
    "ensure_offline_access",
    "llm_access_token_env_var",
    "llm_gateway_auth",
    "registry_auth",
    "resource_auth",
]

# name -> module that defines it, imported on first access (PEP 562).
_LAZY = {
    "OIDCParams": "._params",
    "OAuthTokenSource": ".source",
    "LogoutResult": ".source",
    "SourceStatus": ".source",
    "TokenSourceLike": ".source",
    "OIDCAuth": ".auth",
    "SecretsProvider": ".secrets",
    "KeyringSecrets": ".secrets",
    "EnvironmentSecrets": ".secrets",
    "MemorySecrets": ".secrets",
    "ScopedSecrets": ".secrets",
    "ChainSecrets": ".secrets",
    "RedisSecrets": "._redis",
    "PostgresSecrets": "._postgres",
    "registry_auth": ".profiles",
    "llm_gateway_auth": ".profiles",
    "resource_auth": ".resource",
    "ClientCredentials": ".grants",
    "TokenExchange": ".grants",
    "GitHubActionsToken": ".grants",
    "KubernetesToken": ".grants",
    "FileToken": ".grants",
    "EnvToken": ".grants",
    "ExecToken": ".grants",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'oauth_auth' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


del TYPE_CHECKING, annotations
