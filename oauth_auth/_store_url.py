"""A secrets store named by a URL: ``OAUTH_AUTH_STORE`` or the config file's ``store``.

So that the command line and the profiles (`registry_auth`, `llm_gateway_auth`) can keep
their sessions on a server shared by a fleet instead of each host's keychain:

- ``redis://[user:password@]host:port/db``, ``rediss://...`` (TLS), ``unix:///path``:
  `RedisSecrets`;
- ``postgresql://user@host:5432/db`` (or ``postgres://``): `PostgresSecrets`.

Query parameters of our own are taken out before the URL reaches the driver:
``namespace`` (Redis), ``table`` (PostgreSQL), ``lock_lease`` (seconds). The encryption key
is never in the URL (URLs end up in logs and process listings): it comes from the
environment variable ``OAUTH_AUTH_STORE_KEY`` (one Fernet key, or several separated by
commas: the first encrypts, all decrypt), or the file named by ``OAUTH_AUTH_STORE_KEY_FILE``
(same format). ``OAUTH_AUTH_STORE_ALLOW_PLAINTEXT=1`` stores tokens unencrypted.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._naming import STORE_ENV  # one name, read by the CLI's cache-hit path too
from .errors import ConfigError

if TYPE_CHECKING:
    from .secrets import SecretsProvider

__all__ = ["KEY_ENV", "KEY_FILE_ENV", "PLAINTEXT_ENV", "STORE_ENV", "store_from_url"]

KEY_ENV = "OAUTH_AUTH_STORE_KEY"
KEY_FILE_ENV = "OAUTH_AUTH_STORE_KEY_FILE"
PLAINTEXT_ENV = "OAUTH_AUTH_STORE_ALLOW_PLAINTEXT"

_REDIS = ("redis", "rediss", "unix")
_POSTGRES = ("postgresql", "postgres")
_OWN = {"redis": ("namespace", "lock_lease"), "postgres": ("table", "lock_lease")}


def store_from_url(url: str, environ: Mapping[str, str] | None = None) -> SecretsProvider:
    """The store that `url` names, keyed from `environ` (default: os.environ).

    Raises:
        ConfigError: an unknown scheme, a bad parameter, no key (and plaintext not
            allowed), or the extra's package not installed.
    """
    env = os.environ if environ is None else environ
    parts = urllib.parse.urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme in _REDIS:
        kind = "redis"
    elif scheme in _POSTGRES:
        kind = "postgres"
    else:
        raise ConfigError(
            f"the store URL's scheme {scheme or '(none)'!r} is not redis://, rediss://,"
            " unix:// or postgresql://",
            hint=f"set {STORE_ENV} (or the config file's `store`) to a Redis or"
            " PostgreSQL URL, or unset it to use the keychain",
        )
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    own = {k: v for k, v in query if k in _OWN[kind]}
    rest = [(k, v) for k, v in query if k not in _OWN[kind]]
    driver_url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(rest)))
    options: dict[str, Any] = {
        "encryption_key": _keys(env),
        "allow_plaintext": env.get(PLAINTEXT_ENV, "").lower() in ("1", "true", "yes"),
    }
    if "lock_lease" in own:
        try:
            options["lock_lease"] = float(own["lock_lease"])
        except ValueError:
            raise ConfigError("the store URL's lock_lease must be a number of seconds") from None
    if kind == "redis":
        from ._redis import RedisSecrets

        if own.get("namespace"):
            options["namespace"] = own["namespace"]
        return RedisSecrets(driver_url, **options)
    from ._postgres import PostgresSecrets

    if own.get("table"):
        options["table"] = own["table"]
    return PostgresSecrets(driver_url, **options)


def _keys(env: Mapping[str, str]) -> list[str] | None:
    text = env.get(KEY_ENV, "")
    path = env.get(KEY_FILE_ENV, "")
    if not text and path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot read the store's key file {path}: {exc.strerror or exc}",
                hint=f"point {KEY_FILE_ENV} at a readable file holding the Fernet key",
            ) from None
    keys = [k.strip() for k in text.replace("\n", ",").split(",") if k.strip()]
    if not keys and text.strip():
        raise ConfigError(f"{KEY_ENV} holds no key")
    return keys or None
