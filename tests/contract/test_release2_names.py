"""The Release 2 names of ../shared/DESIGN.md, to the letter: parameter names, kinds and
defaults of every new public callable. An independent suite checks the same contract, so a
rename here is a break there; this file is the cheap early warning."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import oauth_auth

P = inspect.Parameter
KW, POS = P.KEYWORD_ONLY, P.POSITIONAL_OR_KEYWORD


def shape(func: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """(name, kind, default) of each parameter, `self` left out."""
    params = inspect.signature(func).parameters.values()
    return [(p.name, p.kind, p.default) for p in params if p.name != "self"]


def test_fleet_stores() -> None:
    assert shape(oauth_auth.RedisSecrets)[:5] == [
        ("url", POS, P.empty), ("namespace", KW, "oauth-auth"), ("encryption_key", KW, None),
        ("allow_plaintext", KW, False), ("lock_lease", KW, None)]
    assert shape(oauth_auth.PostgresSecrets)[:5] == [
        ("dsn", POS, P.empty), ("table", KW, "oauth_auth_secrets"),
        ("encryption_key", KW, None), ("allow_plaintext", KW, False), ("lock_lease", KW, None)]


def test_resource_auth() -> None:
    assert shape(oauth_auth.resource_auth) == [
        ("resource_url", POS, P.empty), ("client_id", KW, None), ("scopes", KW, None),
        ("interactive", KW, None), ("config_path", KW, None), ("callback_port", KW, None),
        ("source_options", P.VAR_KEYWORD, P.empty)]
    assert "resource_auth" in oauth_auth.__all__


def test_oidc_auth_refuses_plain_http_unless_allowed() -> None:
    params = {name: (kind, default) for name, kind, default in shape(oauth_auth.OIDCAuth)}
    assert next(iter(params)) == "source"
    assert params["allow_insecure_http"] == (KW, False)


def test_oidc_params_release2_fields() -> None:
    fields = {name: (kind, default) for name, kind, default in shape(oauth_auth.OIDCParams)}
    assert list(fields)[:5] == ["issuer", "client_id", "scopes", "audience",
                                       "callback_port"]
    for name, default in [("client_secret", ""), ("preset", None), ("offline_access", None),
                          ("prompt", None), ("audience_param", "resource"),
                          ("callback_host", "localhost")]:
        assert fields[name] == (KW, default), name
    for name in ("auth_params", "endpoints"):
        assert fields[name][0] == KW
        assert dict(oauth_auth.OIDCParams("https://i", "c").__getattribute__(name)) == {}
