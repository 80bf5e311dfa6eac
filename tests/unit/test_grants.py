"""The grants and subject tokens of oauth_auth.grants, driven by hand (httpx.MockTransport,
temporary files, small commands). Their end-to-end proof is tests/e2e/test_machines.py."""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from oauth_auth import (
    ClientCredentials,
    ConfigError,
    EnvToken,
    ExecToken,
    FileToken,
    GitHubActionsToken,
    KubernetesToken,
    MemorySecrets,
    OAuthTokenSource,
    OIDCParams,
    SubjectTokenError,
    TokenExchange,
    TransportError,
)
from oauth_auth._discovery import ProviderMetadata
from oauth_auth.grants import (
    DEFAULT_KUBERNETES_TOKEN_PATH,
    JWT_TOKEN_TYPE,
    TOKEN_EXCHANGE_GRANT,
)

ISSUER = "https://idp.example.test"
TOKEN_URL = ISSUER + "/token"
META = ProviderMetadata(issuer=ISSUER, token_endpoint=TOKEN_URL,
                        authorization_endpoint=ISSUER + "/auth")
NOW = 1_800_000_000.0
SUBJECT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOm8vbjpyZWY6bWFpbiJ9.c2lnbmF0dXJlLXN0YW5kLWlu"


def params(**kw: Any) -> OIDCParams:
    return OIDCParams(ISSUER, "machine", **kw)


class Static:
    """A subject token source that counts its reads."""

    token_type = JWT_TOKEN_TYPE

    def __init__(self, value: str) -> None:
        self.value = value
        self.reads = 0

    def read(self) -> str:
        self.reads += 1
        return self.value


# --------------------------------------------------------------------- requests


def test_client_credentials_form_and_basic_auth() -> None:
    request = ClientCredentials(["api:read", "api:write"]).prepare(
        params(client_secret="s3cret-value", audience="https://api"), META, NOW)
    assert dict(request.form) == {
        "grant_type": "client_credentials", "client_id": "machine",
        "scope": "api:read api:write", "resource": "https://api",
    }
    assert request.client.method == "client_secret_basic"
    assert request.replayable is True


def test_client_credentials_uses_post_when_the_provider_lists_only_post() -> None:
    meta = ProviderMetadata(issuer=ISSUER, token_endpoint=TOKEN_URL,
                            token_endpoint_auth_methods_supported=("client_secret_post",))
    request = ClientCredentials().prepare(params(client_secret="s3cret-value"), meta, NOW)
    assert request.client.method == "client_secret_post"


def test_client_credentials_scopes_default_to_the_clients_without_login_scopes() -> None:
    request = ClientCredentials().prepare(
        params(client_secret="x" * 20, scopes=["openid", "a", "offline_access", "b"]),
        META, NOW)
    assert request.form["scope"] == "a b"  # a profile's openid is a person's
    only_openid = ClientCredentials().prepare(
        params(client_secret="x" * 20, scopes=["openid"]), META, NOW)
    assert "scope" not in only_openid.form
    given = ClientCredentials(["openid", "a"]).prepare(
        params(client_secret="x" * 20), META, NOW)
    assert given.form["scope"] == "openid a"  # what the grant names is sent as given


def test_client_credentials_without_a_credential_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="client_secret"):
        ClientCredentials().prepare(params(), META, NOW)


def test_client_credentials_refuses_one_string_of_scopes() -> None:
    with pytest.raises(ConfigError, match="not one string"):
        ClientCredentials("api:read")


@pytest.mark.parametrize("kind", ["RSA", "EC", "OKP"])
def test_private_key_jwt_assertion_claims(kind: str, tmp_path: Path) -> None:
    key: RSAKey | ECKey | OKPKey
    if kind == "RSA":
        key = RSAKey.generate_key(2048, private=True)
    elif kind == "EC":
        key = ECKey.generate_key("P-256", private=True)
    else:
        key = OKPKey.generate_key("Ed25519", private=True)
    path = tmp_path / "key.pem"
    path.write_bytes(key.as_pem(private=True))
    request = ClientCredentials(assertion_key=path).prepare(params(), META, NOW)
    assert request.client.method == "none"
    assert request.replayable is False  # a jti is good once
    form = request.form
    assert form["client_assertion_type"] == (
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    alg = {"RSA": "RS256", "EC": "ES256", "OKP": "Ed25519"}[kind]
    decoded = jwt.decode(form["client_assertion"], key, algorithms=[alg])
    assert decoded.header["alg"] == alg
    claims = decoded.claims
    assert claims["iss"] == claims["sub"] == "machine"
    assert claims["aud"] == TOKEN_URL
    assert claims["iat"] == int(NOW)
    assert claims["exp"] == int(NOW) + 60
    assert len(claims["jti"]) >= 20
    again = ClientCredentials(assertion_key=path).prepare(params(), META, NOW).form
    again_claims = jwt.decode(again["client_assertion"], key, algorithms=[alg]).claims
    assert again_claims["jti"] != claims["jti"]


def test_private_key_jwt_from_a_jwk_keeps_its_kid() -> None:
    key = RSAKey.generate_key(2048, private=True)
    jwk = {**key.as_dict(private=True), "kid": "k-1"}
    form = ClientCredentials(assertion_key=jwk).prepare(params(), META, NOW).form
    assert jwt.decode(form["client_assertion"], key).header["kid"] == "k-1"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"kty": "oct", "k": "c2VjcmV0"}, "symmetric"),
        ({"kty": "RSA", "n": "AQAB", "e": "AQAB"}, "private"),
        (b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", "PEM"),
        ("/nonexistent/key.pem", "does not exist"),
    ],
)
def test_a_bad_assertion_key_is_a_config_error(value: Any, message: str) -> None:
    grant = ClientCredentials(assertion_key=value)
    with pytest.raises(ConfigError, match=message):
        grant.prepare(params(), META, NOW)


def test_an_assertion_key_never_shows_in_a_repr() -> None:
    pem = RSAKey.generate_key(2048, private=True).as_pem(private=True).decode()
    grant = ClientCredentials(assertion_key=pem)
    assert "PRIVATE" not in repr(grant)
    assert "private_key_jwt" in repr(grant)


def test_token_exchange_form() -> None:
    subject, actor = Static(SUBJECT), Static(SUBJECT[::-1])
    grant = TokenExchange(subject, audience="api", scopes=["read"], actor=actor,
                          requested_token_type="urn:ietf:params:oauth:token-type:access_token")
    request = grant.prepare(params(client_secret="s3cret-value"), META, NOW)
    assert dict(request.form) == {
        "grant_type": TOKEN_EXCHANGE_GRANT, "client_id": "machine",
        "subject_token": SUBJECT, "subject_token_type": JWT_TOKEN_TYPE,
        "actor_token": SUBJECT[::-1], "actor_token_type": JWT_TOKEN_TYPE,
        "audience": "api", "scope": "read",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
    }
    assert request.client.method == "client_secret_basic"
    assert subject.reads == actor.reads == 1
    assert SUBJECT not in repr(grant)


def test_token_exchange_sends_the_params_audience_when_it_names_none() -> None:
    request = TokenExchange(Static(SUBJECT)).prepare(params(audience="https://api"), META, NOW)
    assert request.form["resource"] == "https://api"
    assert request.client.method == "none"  # a public client may exchange too


def test_token_exchange_refuses_what_is_not_a_subject_token() -> None:
    with pytest.raises(ConfigError, match="subject token source"):
        TokenExchange("a-plain-string")  # type: ignore[arg-type]


# --------------------------------------------------------------------- a source with a grant


def jwt_with_exp(exp: float) -> str:
    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part({'sub': 'x', 'exp': exp})}.c2lnbmF0dXJl"


class Provider:
    """A token endpoint on MockTransport: answers token requests from `answers`."""

    def __init__(self, *answers: tuple[int, dict[str, Any]]) -> None:
        self.answers = list(answers)
        self.forms: list[dict[str, str]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.url == TOKEN_URL
        self.forms.append(dict(urllib.parse.parse_qsl(request.content.decode())))
        status, doc = self.answers.pop(0)
        return httpx.Response(status, json=doc)


def source_for(provider: Provider, grant: Any, tmp_path: Path, **kw: Any) -> OAuthTokenSource:
    return OAuthTokenSource(
        params(client_secret="s3cret-value",
               endpoints={"token_endpoint": TOKEN_URL, "authorization_endpoint": ISSUER}),
        key_provider=lambda: "K", secrets_provider=MemorySecrets(), grant=grant,
        transport=httpx.MockTransport(provider.handle), lock_dir=tmp_path, **kw,
    )


def ok(token: str) -> tuple[int, dict[str, Any]]:
    return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 600}


def test_a_source_runs_the_grant_again_at_expiry_and_never_logs_in(tmp_path: Path) -> None:
    now = [NOW]
    provider = Provider(ok("access-token-number-1"), ok("access-token-number-2"))
    source = source_for(provider, ClientCredentials(), tmp_path, clock=lambda: now[0])
    assert source.token() == "access-token-number-1"
    assert source.token() == "access-token-number-1"
    now[0] += 600
    assert source.token() == "access-token-number-2"
    assert [f["grant_type"] for f in provider.forms] == ["client_credentials"] * 2


def test_a_refused_expired_subject_token_says_it_expired(tmp_path: Path) -> None:
    provider = Provider((400, {"error": "invalid_grant", "error_description": "expired"}))
    subject = Static(jwt_with_exp(NOW - 120))
    source = source_for(provider, TokenExchange(subject), tmp_path, clock=lambda: NOW)
    with pytest.raises(SubjectTokenError) as caught:
        source.token()
    assert caught.value.expired is True
    assert "expired at 2027-01-15T07:58:00Z" in str(caught.value)
    assert caught.value.error == "invalid_grant"


def test_a_refused_current_subject_token_names_trust(tmp_path: Path) -> None:
    provider = Provider((400, {"error": "invalid_request", "error_description": "bad aud"}))
    source = source_for(provider, TokenExchange(Static(jwt_with_exp(NOW + 300))), tmp_path,
                        clock=lambda: NOW)
    with pytest.raises(SubjectTokenError) as caught:
        source.token()
    assert caught.value.expired is False
    assert "bad aud" in str(caught.value)


def test_another_exchange_error_stays_an_oauth_error(tmp_path: Path) -> None:
    provider = Provider((401, {"error": "invalid_client"}))
    source = source_for(provider, TokenExchange(Static(SUBJECT)), tmp_path)
    with pytest.raises(Exception) as caught:
        source.token()
    assert type(caught.value).__name__ == "OAuthError"


def test_grant_must_be_a_grant(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="grant"):
        OAuthTokenSource(params(), key_provider=lambda: "K", grant="client_credentials")  # type: ignore[arg-type]


# --------------------------------------------------------------------- subject tokens


def test_file_token_is_read_again_only_when_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "token"
    path.write_text("first-subject-token\n")
    source = FileToken(path)
    opened: list[str] = []
    real_open = open

    def counting_open(file: Any, *args: Any, **kw: Any) -> Any:
        if os.fspath(file) == str(path):
            opened.append("open")
        return real_open(file, *args, **kw)

    monkeypatch.setattr("builtins.open", counting_open)
    assert source.read() == "first-subject-token"
    assert source.read() == "first-subject-token"
    assert len(opened) == 1  # unchanged: served from what was read
    replacement = tmp_path / "token.new"
    replacement.write_text("second-subject-token")
    os.replace(replacement, path)  # a rotation by rename: a new inode
    assert source.read() == "second-subject-token"
    assert len(opened) == 2


def test_file_token_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        FileToken(tmp_path / "missing").read()
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(SubjectTokenError, match="empty"):
        FileToken(tmp_path / "empty").read()
    (tmp_path / "two").write_text("one two")
    with pytest.raises(SubjectTokenError, match="not one token"):
        FileToken(tmp_path / "two").read()


def test_kubernetes_token_default_path_and_hint() -> None:
    source = KubernetesToken()
    assert source.path == DEFAULT_KUBERNETES_TOKEN_PATH
    assert source.token_type == JWT_TOKEN_TYPE
    if not os.path.exists(DEFAULT_KUBERNETES_TOKEN_PATH):
        with pytest.raises(ConfigError) as caught:
            source.read()
        assert "projected" in caught.value.hint


def test_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SUBJECT_TOKEN", " a-subject-token ")
    assert EnvToken("MY_SUBJECT_TOKEN").read() == "a-subject-token"
    monkeypatch.delenv("MY_SUBJECT_TOKEN")
    with pytest.raises(ConfigError, match="MY_SUBJECT_TOKEN"):
        EnvToken("MY_SUBJECT_TOKEN").read()


def test_exec_token_reads_stdout_only() -> None:
    code = "import sys; print('the-subject-token'); print('noise', file=sys.stderr)"
    assert ExecToken([sys.executable, "-c", code]).read() == "the-subject-token"


def test_exec_token_checks_the_exit_status_and_keeps_stderr_out_of_the_error() -> None:
    code = "import sys; print('a-secret-on-stderr', file=sys.stderr); sys.exit(3)"
    with pytest.raises(SubjectTokenError) as caught:
        ExecToken([sys.executable, "-c", code]).read()
    assert "status 3" in str(caught.value)
    assert "a-secret-on-stderr" not in str(caught.value)
    assert code not in repr(ExecToken([sys.executable, "-c", code]))


def test_exec_token_timeout_and_missing_program() -> None:
    with pytest.raises(SubjectTokenError, match="did not finish"):
        ExecToken([sys.executable, "-c", "import time; time.sleep(10)"], timeout=0.5).read()
    with pytest.raises(ConfigError, match="not found"):
        ExecToken(["/nonexistent/program"]).read()
    with pytest.raises(ConfigError):
        ExecToken("echo token")  # type: ignore[arg-type]


def test_github_actions_token_request(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"count": 1, "value": "the-jobs-oidc-token"})

    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL",
                       "https://pipelines.example.test/idtoken?api-version=2.0")
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "the-request-token")
    source = GitHubActionsToken("https://api.example.test",
                                transport=httpx.MockTransport(handle))
    assert source.read() == "the-jobs-oidc-token"
    [request] = seen
    assert request.method == "GET"
    assert str(request.url) == ("https://pipelines.example.test/idtoken?api-version=2.0"
                                "&audience=https%3A%2F%2Fapi.example.test")
    assert request.headers["Authorization"] == "bearer the-request-token"
    assert "the-request-token" not in repr(source)


@pytest.mark.parametrize("missing", ["ACTIONS_ID_TOKEN_REQUEST_URL",
                                     "ACTIONS_ID_TOKEN_REQUEST_TOKEN"])
def test_github_actions_without_the_permission(missing: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", "https://p.example.test/x?a=1")
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "t")
    monkeypatch.delenv(missing)
    with pytest.raises(ConfigError) as caught:
        GitHubActionsToken("aud").read()
    assert missing in str(caught.value)
    assert "id-token: write" in caught.value.hint


@pytest.mark.parametrize(("status", "error"), [(401, SubjectTokenError), (503, TransportError)])
def test_github_actions_refusals(status: int, error: type[Exception],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", "https://p.example.test/x?a=1")
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "t")
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json={}))
    source = GitHubActionsToken("aud", transport=transport)
    with pytest.raises(error):
        source.read()


def test_private_key_jwt_from_a_jwk_json_file(tmp_path: Path) -> None:
    key = RSAKey.generate_key(2048, private=True)
    path = tmp_path / "key.json"
    path.write_text(json.dumps({**key.as_dict(private=True), "kid": "file-kid"}))
    form = ClientCredentials(assertion_key=str(path)).prepare(params(), META, NOW).form
    assert jwt.decode(form["client_assertion"], key).header["kid"] == "file-kid"


# --------------------------------------------------------------------- the CLI's spec


def test_machine_spec_round_trips_and_builds() -> None:
    from oauth_auth._machine import MachineSpec

    spec = MachineSpec("exchange", subject="github", client_secret_env="CI_SECRET")
    assert MachineSpec.from_config(spec.to_config()) == spec
    assert spec.to_config() == {"grant": "exchange", "subject": "github",
                                "client_secret_env": "CI_SECRET"}
    grant = spec.build(ISSUER)
    assert isinstance(grant, TokenExchange)
    assert isinstance(grant.subject, GitHubActionsToken)
    assert grant.subject.audience == ISSUER  # GitHub's aud defaults to the issuer
    assert spec.client_secret({"CI_SECRET": "from-the-env"}) == "from-the-env"
    with pytest.raises(ConfigError, match="CI_SECRET"):
        spec.client_secret({})
    assert isinstance(MachineSpec("client_credentials").build(ISSUER), ClientCredentials)


@pytest.mark.parametrize(
    ("text", "kind", "where"),
    [
        ("kubernetes", KubernetesToken, DEFAULT_KUBERNETES_TOKEN_PATH),
        ("kubernetes:/var/run/secrets/tokens/t", KubernetesToken, "/var/run/secrets/tokens/t"),
        ("file:/tmp/subject", FileToken, "/tmp/subject"),
        ("env:SUBJECT_TOKEN", EnvToken, "SUBJECT_TOKEN"),
    ],
)
def test_exchange_subject_forms(text: str, kind: type, where: str) -> None:
    from oauth_auth._machine import parse_subject

    source = parse_subject(text, audience="aud")
    assert type(source) is kind
    assert where in repr(source)


@pytest.mark.parametrize("doc", [
    {"grant": "password"},
    {"grant": "exchange"},
    {"grant": "exchange", "subject": "ftp:x"},
    {"grant": "client_credentials", "client_secret": "never-in-the-config"},
    "client_credentials",
])
def test_bad_machine_tables(doc: Any) -> None:
    from oauth_auth._machine import MachineSpec

    with pytest.raises(ConfigError):
        MachineSpec.from_config(doc)


def test_concurrent_async_callers_make_one_token_request(tmp_path: Path) -> None:
    import asyncio

    provider = Provider(ok("access-token-for-all-tasks"))
    source = source_for(provider, ClientCredentials(), tmp_path)

    async def many() -> list[str]:
        return list(await asyncio.gather(*(source.atoken() for _ in range(10))))

    assert set(asyncio.run(many())) == {"access-token-for-all-tasks"}
    assert len(provider.forms) == 1


def test_a_failing_store_costs_a_machine_the_sharing_not_the_token(tmp_path: Path) -> None:
    from oauth_auth import SecretsError

    class Broken:
        def get_secret(self, name: str) -> str | None:
            raise SecretsError("the keyring is locked")

        def set_secret(self, name: str, value: str) -> None:
            raise SecretsError("the keyring is locked")

        def delete_secret(self, name: str) -> None:
            raise SecretsError("the keyring is locked")

    provider = Provider(ok("a-token-not-shared-anywhere"))
    source = OAuthTokenSource(
        params(client_secret="s3cret-value",
               endpoints={"token_endpoint": TOKEN_URL, "authorization_endpoint": ISSUER}),
        key_provider=lambda: "K", secrets_provider=Broken(), grant=ClientCredentials(),
        transport=httpx.MockTransport(provider.handle), lock_dir=tmp_path,
    )
    assert source.token() == "a-token-not-shared-anywhere"
    assert len(provider.forms) == 1
    person = OAuthTokenSource(params(), key_provider=lambda: "K", secrets_provider=Broken(),
                              lock_dir=tmp_path)
    with pytest.raises(SecretsError):  # a person's session: the read failure is the error
        person.token()


def test_a_grant_that_gives_a_refresh_token_refreshes_then_runs_again_when_it_dies(
    tmp_path: Path,
) -> None:
    now = [NOW]
    provider = Provider(
        (200, {"access_token": "access-token-number-1", "token_type": "Bearer",
               "expires_in": 600, "refresh_token": "refresh-token-of-the-grant"}),
        ok("access-token-number-2"),
        (400, {"error": "invalid_grant"}),
        ok("access-token-number-3"),
    )
    source = source_for(provider, ClientCredentials(), tmp_path, clock=lambda: now[0])
    assert source.token() == "access-token-number-1"
    now[0] += 600
    assert source.token() == "access-token-number-2"  # tier 3: the refresh token
    now[0] += 600
    assert source.token() == "access-token-number-3"  # it died: the grant again
    assert [f["grant_type"] for f in provider.forms] == [
        "client_credentials", "refresh_token", "refresh_token", "client_credentials"]
