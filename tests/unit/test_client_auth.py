"""Unit tests of client authentication and the provider rules of the request forms
(`_protocol`, `_authorize`, `_http`): basic/post/none, one-time codes never replayed,
HTTP 200 errors, offline_access/prompt/audience_param rules."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from oauth_auth import InvalidGrantError, LoginError, OAuthError, TransportError
from oauth_auth._authorize import (
    PollAction,
    build_authorization_request,
    build_device_authorization_request,
    device_poll_action,
    login_scopes,
    prompt_value,
    wants_offline_access,
)
from oauth_auth._discovery import ProviderMetadata
from oauth_auth._http import IdPHttp
from oauth_auth._protocol import (
    choose_client_auth,
    client_auth_for,
    encode_client_auth,
    refresh_form,
    revocation_form,
)

SECRET = "p@ss:w%rd with space"


def _form(body: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def test_without_a_secret_client_id_goes_in_the_form() -> None:
    auth = choose_client_auth("cli", "", ["client_secret_post"])
    assert auth.method == "none"
    headers, body = encode_client_auth(auth, "https://i/t", refresh_form("RT", "cli"))
    assert "Authorization" not in headers
    assert _form(body) == {"grant_type": "refresh_token", "refresh_token": "RT",
                           "client_id": "cli"}


def test_basic_is_the_default_and_encodes_the_credentials_per_rfc6749() -> None:
    auth = choose_client_auth("my client", SECRET, [])
    assert auth.method == "client_secret_basic"
    assert choose_client_auth("c", "s", ["client_secret_basic", "client_secret_post"]).method \
        == "client_secret_basic"
    headers, body = encode_client_auth(auth, "https://i/t", refresh_form("RT", "my client"))
    scheme, _, value = headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(value).decode().partition(":")
    assert (unquote(user), unquote(password)) == ("my client", SECRET)
    assert ":" not in password  # the secret's own ":" is escaped
    form = _form(body)
    assert "client_id" not in form
    assert "client_secret" not in form


def test_post_only_when_it_is_all_the_provider_lists() -> None:
    auth = choose_client_auth("cli", SECRET, ["client_secret_post"])
    assert auth.method == "client_secret_post"
    headers, body = encode_client_auth(auth, "https://i/t", revocation_form("RT", "cli"))
    assert "Authorization" not in headers
    assert _form(body) == {"token": "RT", "token_type_hint": "refresh_token",
                           "client_id": "cli", "client_secret": SECRET}


def test_revocation_uses_the_revocation_methods_when_listed() -> None:
    meta = ProviderMetadata(issuer="https://i", token_endpoint="https://i/t",
                            token_endpoint_auth_methods_supported=("client_secret_basic",),
                            revocation_endpoint_auth_methods_supported=("client_secret_post",))
    assert client_auth_for("c", "s", meta).method == "client_secret_basic"
    assert client_auth_for("c", "s", meta, revocation=True).method == "client_secret_post"


def test_the_secret_is_not_in_the_repr() -> None:
    assert SECRET not in repr(choose_client_auth("c", SECRET))


class Recorder:
    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def _http(recorder: Recorder) -> IdPHttp:
    return IdPHttp(transport=httpx.MockTransport(recorder), max_retries=2,
                   sleep=lambda _s: None)


def test_a_one_time_code_is_never_posted_twice_even_on_a_500() -> None:
    recorder = Recorder(httpx.Response(500))
    http = _http(recorder)
    with pytest.raises(TransportError, match="500"):
        http.post_form("https://i/token", {"grant_type": "authorization_code", "code": "C"},
                       replayable=False)
    assert len(recorder.requests) == 1
    # a refresh keeps its bounded retries
    recorder2 = Recorder(httpx.Response(503), httpx.Response(
        200, json={"access_token": "a", "token_type": "Bearer"}))
    _http(recorder2).post_form("https://i/token", refresh_form("RT", "c"))
    assert len(recorder2.requests) == 2


def test_the_client_authentication_reaches_the_wire() -> None:
    recorder = Recorder(httpx.Response(200, json={"access_token": "a", "token_type": "Bearer"}))
    _http(recorder).post_form("https://i/token", refresh_form("RT", "cli"),
                              client=choose_client_auth("cli", "sekret-0123456789"))
    request = recorder.requests[0]
    assert request.headers["Authorization"].startswith("Basic ")
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert _form(request.content.decode()) == {"grant_type": "refresh_token",
                                               "refresh_token": "RT"}


def test_http_200_with_an_error_member_is_an_oauth_error() -> None:
    # GitHub: {"error": "bad_verification_code", ...} with HTTP 200
    recorder = Recorder(httpx.Response(200, json={
        "error": "bad_verification_code", "error_description": "The code is incorrect",
        "error_uri": "https://docs.github.com/x"}))
    with pytest.raises(InvalidGrantError) as info:
        _http(recorder).post_form("https://github.com/login/oauth/access_token", {"code": "x"})
    assert info.value.error == "invalid_grant"  # GitHub's code for it, kept in the text
    assert info.value.description == "bad_verification_code: The code is incorrect"
    assert info.value.error_uri == "https://docs.github.com/x"
    assert info.value.status_code == 200


@pytest.mark.parametrize(
    ("github", "standard", "typed"),
    [
        ("bad_verification_code", "invalid_grant", InvalidGrantError),
        ("bad_refresh_token", "invalid_grant", InvalidGrantError),
        ("incorrect_device_code", "invalid_grant", InvalidGrantError),
        ("redirect_uri_mismatch", "invalid_grant", InvalidGrantError),
        ("incorrect_client_credentials", "invalid_client", OAuthError),
        ("device_flow_disabled", "unauthorized_client", OAuthError),
        # the device flow's own codes are RFC 8628's already
        ("authorization_pending", "authorization_pending", OAuthError),
        ("slow_down", "slow_down", OAuthError),
        ("expired_token", "expired_token", OAuthError),
        ("access_denied", "access_denied", OAuthError),
        ("unverified_user_email", "unverified_user_email", OAuthError),
    ],
)
def test_githubs_http_200_error_codes_map_to_the_standard_ones(
        github: str, standard: str, typed: type[OAuthError]) -> None:
    recorder = Recorder(httpx.Response(200, json={"error": github}))
    with pytest.raises(OAuthError) as info:
        _http(recorder).post_form("https://github.com/login/oauth/access_token", {"x": "y"})
    assert type(info.value) is typed
    assert info.value.error == standard
    assert info.value.description == ("" if github == standard else github)
    # what the device grant's loop makes of it
    if standard in ("authorization_pending", "slow_down"):
        action = device_poll_action(info.value.error, info.value.description)
        assert action is (PollAction.WAIT if standard == "authorization_pending"
                          else PollAction.SLOW_DOWN)
    else:
        with pytest.raises(LoginError) as ended:
            device_poll_action(info.value.error, info.value.description)
        assert ended.value.error == standard


@pytest.mark.parametrize(
    ("setting", "supported", "expected"),
    [
        (None, (), True),
        (None, ("openid", "offline_access"), True),
        (None, ("openid", "read"), False),
        (True, ("openid",), True),
        (False, ("offline_access",), False),
    ],
)
def test_offline_access_rule(setting: bool | None, supported: tuple[str, ...],
                             expected: bool) -> None:
    assert wants_offline_access(setting, supported) is expected


def test_prompt_rule() -> None:
    assert prompt_value(None, True) == "consent"
    assert prompt_value(None, False) == ""
    assert prompt_value("", True) == ""
    assert prompt_value("select_account", False) == "select_account"


def test_login_scopes_without_openid_for_an_oauth_only_server() -> None:
    assert login_scopes(["read"], openid=False, offline_access=False) == ["read"]
    assert login_scopes(["read"]) == ["read", "openid", "offline_access"]


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


META = ProviderMetadata(issuer="https://i", token_endpoint="https://i/t",
                        authorization_endpoint="https://i/a")


def test_authorization_request_prompt_and_audience_param() -> None:
    def build(**kw: object) -> dict[str, str]:
        return _query(build_authorization_request(
            metadata=META, client_id="c", redirect_uri="http://localhost:1/callback",
            audience="https://api", **kw).url)  # type: ignore[arg-type]

    q = build(scopes=["openid", "offline_access"])
    assert q["prompt"] == "consent"
    assert q["resource"] == "https://api"
    q = build(scopes=["openid", "offline_access"], prompt="", audience_param="audience")
    assert "prompt" not in q
    assert q["audience"] == "https://api"
    assert "resource" not in q
    q = build(scopes=["openid"], prompt="login", audience_param="")
    assert q["prompt"] == "login"
    assert "resource" not in q
    assert "audience" not in q


def test_device_authorization_request_carries_auth_params() -> None:
    form = build_device_authorization_request(
        client_id="c", scopes=["openid"], audience="https://api", audience_param="audience",
        extra_params={"access_type": "offline"})
    assert form == {"client_id": "c", "scope": "openid", "audience": "https://api",
                    "access_type": "offline"}
