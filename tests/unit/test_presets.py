"""Unit tests of the provider presets and the new OIDCParams fields (`presets`, `_params`)."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

import pytest

from oauth_auth import ConfigError, OIDCParams
from oauth_auth.presets import PRESET_NAMES, PRESETS, FrozenMap, preset_for_issuer


def test_every_named_preset_exists_and_cites_its_documentation() -> None:
    assert set(PRESET_NAMES) >= {
        "generic", "google", "entra", "auth0", "okta", "keycloak", "cognito", "gitlab",
        "github", "dex",
    }
    for preset in PRESETS.values():
        assert preset.sources, preset.name
        for url in preset.sources.values():
            assert urlsplit(url).scheme == "https", (preset.name, url)


@pytest.mark.parametrize(
    ("issuer", "name"),
    [
        ("https://accounts.google.com", "google"),
        ("https://login.microsoftonline.com/common/v2.0", "entra"),
        ("https://tenant.eu.auth0.com/", "auth0"),
        ("https://dev-1.okta.com/oauth2/default", "okta"),
        ("https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc", "cognito"),
        ("https://gitlab.com", "gitlab"),
        ("https://github.com", "github"),
        ("https://sso.example.com/realms/x", "generic"),
        ("https://s3.amazonaws.com", "generic"),
        ("http://127.0.0.1:9000", "generic"),
    ],
)
def test_preset_none_is_chosen_from_the_issuer_host(issuer: str, name: str) -> None:
    assert preset_for_issuer(issuer).name == name
    assert OIDCParams(issuer, "c").provider_preset.name == name


def test_google_defaults_and_an_explicit_field_wins() -> None:
    google = OIDCParams("https://accounts.google.com", "c")
    assert google.offline_access is False
    assert google.auth_params == {"access_type": "offline"}
    mine = OIDCParams(
        "https://accounts.google.com", "c", offline_access=True,
        auth_params={"access_type": "online", "hd": "example.com"},
    )
    assert mine.offline_access is True
    assert mine.auth_params == {"access_type": "online", "hd": "example.com"}
    # merged key by key: the preset's key stays unless given
    assert OIDCParams("https://accounts.google.com", "c", auth_params={"hd": "x"}).auth_params \
        == {"access_type": "offline", "hd": "x"}


def test_entra_sends_no_prompt_unless_one_is_given() -> None:
    entra = "https://login.microsoftonline.com/common/v2.0"
    assert OIDCParams(entra, "c").prompt == ""  # no prompt=consent: "Need admin approval"
    assert OIDCParams(entra, "c", prompt="consent").prompt == "consent"
    assert OIDCParams(entra, "c", prompt="select_account").prompt == "select_account"
    assert OIDCParams("https://idp.test", "c").prompt is None  # the generic rule
    assert OIDCParams("https://idp.test", "c", preset="entra").prompt == ""


def test_audience_param_default_preset_and_explicit() -> None:
    assert OIDCParams("https://idp.test", "c").audience_param == "resource"
    assert OIDCParams("https://t.auth0.com", "c").audience_param == "audience"
    assert OIDCParams("https://idp.test", "c", preset="auth0").audience_param == "audience"
    assert OIDCParams("https://login.microsoftonline.com/common/v2.0", "c").audience_param == ""
    # given explicitly, even equal to the generic default, it wins over the preset
    assert OIDCParams("https://t.auth0.com", "c", audience_param="resource").audience_param \
        == "resource"
    # a derived value is still "not given" after dataclasses.replace
    generic = OIDCParams("https://idp.test", "c")
    assert dataclasses.replace(generic, preset="auth0").audience_param == "audience"
    with pytest.raises(ConfigError, match="audience_param"):
        OIDCParams("https://idp.test", "c", audience_param="aud")


def test_github_preset_brings_its_endpoints_filled_with_the_issuer() -> None:
    gh = OIDCParams("https://github.com/", "c")
    assert gh.endpoints == {
        "authorization_endpoint": "https://github.com/login/oauth/authorize",
        "token_endpoint": "https://github.com/login/oauth/access_token",
        "device_authorization_endpoint": "https://github.com/login/device/code",
    }
    ghes = OIDCParams("https://ghe.example.com", "c", preset="github",
                      endpoints={"token_endpoint": "https://ghe.example.com/other"})
    assert ghes.endpoints["authorization_endpoint"] == "https://ghe.example.com/login/oauth/authorize"
    assert ghes.endpoints["token_endpoint"] == "https://ghe.example.com/other"


def test_unknown_preset_and_endpoint_names_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'gogle'"):
        OIDCParams("https://idp.test", "c", preset="gogle")
    with pytest.raises(ConfigError, match="introspection"):
        OIDCParams("https://idp.test", "c", endpoints={"introspection": "https://x"})


@pytest.mark.parametrize("name", ["state", "nonce", "code_challenge", "redirect_uri", "client_id"])
def test_auth_params_cannot_override_what_binds_the_response(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        OIDCParams("https://idp.test", "c", auth_params={name: "x"})


def test_callback_host_is_a_loopback_host() -> None:
    assert OIDCParams("https://idp.test", "c").callback_host == "localhost"
    assert OIDCParams("https://idp.test", "c", callback_host="127.0.0.1").callback_host \
        == "127.0.0.1"
    assert OIDCParams("https://idp.test", "c", callback_host="[::1]").callback_host == "::1"
    with pytest.raises(ConfigError, match="callback_host"):
        OIDCParams("https://idp.test", "c", callback_host="0.0.0.0")


def test_client_secret_is_never_in_repr_or_str_and_params_stay_hashable() -> None:
    secret = "s3cr3t-value-0123456789"
    params = OIDCParams("https://idp.test", "c", client_secret=secret,
                        auth_params={"a": "b"}, endpoints={"jwks_uri": "https://idp.test/k"})
    assert secret not in repr(params)
    assert secret not in str(params)
    assert params.client_secret == secret
    same = OIDCParams("https://idp.test", "c", client_secret=secret,
                      auth_params={"a": "b"}, endpoints={"jwks_uri": "https://idp.test/k"})
    assert hash(params) == hash(same)
    assert {params, same} == {params}
    assert isinstance(params.auth_params, FrozenMap)
    with pytest.raises(TypeError):
        params.auth_params["a"] = "c"  # type: ignore[index]


def test_keyword_only_fields() -> None:
    with pytest.raises(TypeError):
        OIDCParams("https://idp.test", "c", (), "", 0, "secret")  # type: ignore[misc]
    with pytest.raises(ConfigError, match="offline_access"):
        OIDCParams("https://idp.test", "c", offline_access="yes")  # type: ignore[arg-type]
