"""Django settings of the bench's django-oauth-toolkit server.

Everything that varies per run comes from the `DOT_BENCH` environment variable (JSON),
which tests/dot/serve.py sets before Django starts: the issuer (it knows the port it bound),
the SQLite file, the RSA signing key it generated, token lifetimes. Nothing here is fit for
production: fast password hashing, DEBUG off but no HTTPS, a throwaway secret key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

BENCH: dict[str, Any] = json.loads(os.environ.get("DOT_BENCH", "{}"))
HERE = Path(__file__).resolve().parent

ISSUER: str = BENCH.get("issuer", "http://127.0.0.1:8000/o")
ORIGIN = ISSUER.rsplit("/o", 1)[0]

SECRET_KEY = BENCH.get("django_secret_key", "dot-bench-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.dot.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "/accounts/login/"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
]

MIDDLEWARE = [
    # First, so that it sees (and can fault) every request, and counts every answer.
    "tests.dot.bench.BenchMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [str(HERE / "templates")],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BENCH.get("database", str(HERE / "dot-bench.sqlite3")),
        # The server is threaded: writers queue (BEGIN IMMEDIATE, 30 s busy timeout)
        # instead of failing with "database is locked" when a herd arrives.
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;",
        },
    }
}

# Users are created at every start: a fast hash keeps the start (and each login) quick.
# Also what DOT hashes client secrets with ("default" = the first hasher).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    # Request lines and DOT's own warnings go to stderr, which the fixture keeps a tail of.
    "loggers": {
        "django.server": {"handlers": ["stderr"], "level": "INFO"},
        "django.request": {"handlers": ["stderr"], "level": "ERROR"},  # 500s' tracebacks
        "oauth2_provider": {"handlers": ["stderr"], "level": "WARNING"},
    },
}


def oauth2_provider_settings(bench: dict[str, Any]) -> dict[str, Any]:
    """DOT's settings for these bench settings (also used by the bench's run-time /config).

    Bench settings: oidc (False: an OAuth-only server, no OpenID scope, views or keys),
    offline_access (False: no such scope), auth_methods (the token endpoint's client
    authentication methods, advertised and accepted), access_token_ttl, id_token_ttl,
    refresh_token_ttl (seconds), rotate_refresh_token, device_interval, device_complete
    (False: no verification_uri_complete).
    """
    oidc = bool(bench.get("oidc", True))
    scopes = {
        "profile": "Your name",
        "email": "Your email address",
        "read": "Read",
        "write": "Write",
        "introspection": "Introspect tokens",
    }
    if oidc:
        scopes = {"openid": "OpenID Connect", **scopes}
    if bench.get("offline_access", True):
        scopes["offline_access"] = "Stay signed in"
    auth_methods = list(bench.get("auth_methods", ["client_secret_post", "client_secret_basic"]))
    return {
        "OIDC_ENABLED": oidc,
        "OIDC_RSA_PRIVATE_KEY": bench.get("rsa_private_key", "") if oidc else "",
        "OIDC_ISS_ENDPOINT": ISSUER,
        "SCOPES": scopes,
        "DEFAULT_SCOPES": ["openid"] if oidc else ["read"],
        "OIDC_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": auth_methods,
        "OAUTH2_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": auth_methods,
        "PKCE_REQUIRED": True,
        "ROTATE_REFRESH_TOKEN": bool(bench.get("rotate_refresh_token", True)),
        "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
        "ACCESS_TOKEN_EXPIRE_SECONDS": int(bench.get("access_token_ttl", 3600)),
        "ID_TOKEN_EXPIRE_SECONDS": int(bench.get("id_token_ttl", 3600)),
        "REFRESH_TOKEN_EXPIRE_SECONDS": bench.get("refresh_token_ttl"),
        "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
        "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"],
        "OAUTH_DEVICE_VERIFICATION_URI": f"{ISSUER}/device/",
        # DOT's user-code page reads ?user_code= (oauthlib formats {user_code} in).
        "OAUTH_DEVICE_VERIFICATION_URI_COMPLETE": (
            f"{ISSUER}/device/?user_code={{user_code}}" if bench.get("device_complete", True)
            else None
        ),
        "DEVICE_FLOW_INTERVAL": int(bench.get("device_interval", 1)),
        "OAUTH2_VALIDATOR_CLASS": "tests.dot.bench.BenchValidator",
        # Run-time settings changes (/__bench/config) must reach the oauthlib server,
        # which DOT otherwise builds once.
        "ALWAYS_RELOAD_OAUTHLIB_CORE": True,
        # Adopt the RFC 9700 behaviour DOT 4.0 will default to (and silence its warnings);
        # the authorization response's `iss` (RFC 9207) stays off, as DOT ships it.
        "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
        "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
        "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
        "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    }


OAUTH2_PROVIDER = oauth2_provider_settings(BENCH)

# The schema is created from the models at every start (manage.py migrate --run-syncdb),
# not by replaying migrations: the bench's database lives for one test session.
MIGRATION_MODULES = {app.rsplit(".", 1)[-1]: None for app in INSTALLED_APPS}
