"""Tokens without a person, end to end: the bundled oidc-provider's client credentials and
private_key_jwt clients, its RFC 8693 token exchange grant trusting a fake GitHub Actions
issuer (tests/support/ci_issuer.py), processes sharing one token, 401s and rotations.

The provider's admin counts (token requests by grant and outcome) and its exchange log
(the subject each exchange carried) are the referee.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from oauth_auth import (
    ClientCredentials,
    ConfigError,
    EnvToken,
    ExecToken,
    FileToken,
    GitHubActionsToken,
    KubernetesToken,
    MemorySecrets,
    OAuthError,
    OAuthTokenSource,
    OIDCAuth,
    OIDCParams,
    SubjectTokenError,
    TokenExchange,
)
from oauth_auth.grants import TOKEN_EXCHANGE_GRANT, Grant
from tests.support.api import ProtectedAPI
from tests.support.children import start_together
from tests.support.ci_issuer import CIIssuer
from tests.support.dot import DOT
from tests.support.hygiene import LEDGER
from tests.support.idp import IdP, decode_jwt_payload, start_idp

ROOT = Path(__file__).resolve().parents[2]
API = "https://api.example.test"
CC = "client_credentials"


def machine(
    idp: IdP,
    grant: Grant,
    tmp_path: Path,
    *,
    store: Any = None,
    key: str = "MACHINE",
    client_id: str | None = None,
    secret: str | None = None,
    audience: str = "",
    **options: Any,
) -> OAuthTokenSource:
    """A token source for the provider's machine client (its secret unless told)."""
    return OAuthTokenSource(
        OIDCParams(idp.issuer, client_id or idp.machine_client_id, audience=audience,
                   client_secret=idp.machine_client_secret if secret is None else secret),
        key_provider=lambda: key,
        secrets_provider=MemorySecrets() if store is None else store,
        grant=grant,
        lock_dir=tmp_path / "locks",
        **options,
    )


# --------------------------------------------------------------------- client credentials


def test_client_credentials_with_a_secret_then_tier_2_serves_another_process(
    real_idp: IdP, tmp_path: Path
) -> None:
    store = MemorySecrets()
    first = machine(real_idp, ClientCredentials(), tmp_path, store=store)
    token = first.token()
    assert first.token() == token  # tier 1
    second = machine(real_idp, ClientCredentials(), tmp_path, store=store)
    assert second.token() == token  # tier 2: the shared entry, no token request
    assert real_idp.token_requests(CC, None) == 1
    assert real_idp.token_requests(CC) == 1
    info = real_idp.introspect(token)
    assert info["active"] is True
    assert info["client_id"] == real_idp.machine_client_id
    assert store.get_secret("MACHINE") is None  # no refresh token: tier 3 holds nothing
    assert (store.get_secret("MACHINE_AT") or "").startswith(token + "|")


def test_client_credentials_for_an_api_gives_an_audience_bound_jwt(
    real_idp: IdP, tmp_path: Path
) -> None:
    source = machine(real_idp, ClientCredentials(["api:read"]), tmp_path, audience=API)
    claims = decode_jwt_payload(source.token())
    assert claims["aud"] == API
    assert claims["client_id"] == real_idp.machine_client_id
    assert claims["scope"] == "api:read"


def test_a_wrong_client_secret_is_invalid_client_with_a_hint(real_idp: IdP, tmp_path: Path) -> None:
    source = machine(real_idp, ClientCredentials(), tmp_path, secret="not-the-secret-at-all")
    with pytest.raises(OAuthError) as caught:
        source.token()
    assert caught.value.error == "invalid_client"
    assert "client_credentials" in caught.value.hint
    assert real_idp.token_requests(CC, "invalid_client") == 1


def test_client_credentials_without_any_credential_is_refused_before_any_request(
    real_idp: IdP, tmp_path: Path
) -> None:
    source = machine(real_idp, ClientCredentials(), tmp_path, secret="")
    with pytest.raises(ConfigError, match="assertion_key"):
        source.token()
    assert real_idp.token_requests(CC, None) == 0


def test_a_401_gets_a_new_token_from_the_grant(
    real_idp: IdP, api_factory: Callable[..., ProtectedAPI], tmp_path: Path
) -> None:
    api = api_factory(lambda token: bool(real_idp.introspect(token).get("active")))
    source = machine(real_idp, ClientCredentials(), tmp_path)
    first = source.token()
    api.rejected_tokens.add(first)  # the API refuses it from now on
    with httpx.Client(auth=OIDCAuth(source), timeout=10) as client:
        assert client.get(api.url + "/data").status_code == 200
    assert api.count() == 2
    assert api.seen[0].authorization == f"Bearer {first}"
    second = api.seen[1].authorization
    assert second is not None
    assert second != f"Bearer {first}"
    assert real_idp.token_requests(CC) == 2


def run_children(idp: IdP, grant: str, tmp_path: Path, n: int = 16,
                 lock: bool = True) -> list[str]:
    """Start n machine processes sharing one FileSecrets store; one output line each
    (`lock=False`: the private switch that turns the cross-process lock off)."""
    cfg = {"issuer": idp.issuer, "client_id": idp.machine_client_id, "key": "FLEET",
           "store": str(tmp_path / "store"), "grant": grant, "lock": lock}
    env = dict(os.environ)
    env["OAUTH_AUTH_LOCK_DIR"] = str(tmp_path / "locks")
    env["PYTHONPATH"] = str(ROOT)
    env["MACHINE_CLIENT_SECRET"] = idp.machine_client_secret  # never on argv
    procs = start_together("tests.support.machine_child", [cfg] * n, tmp_path, env=env,
                           cwd=ROOT)
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        outputs.append(out.strip() or f"ERROR no output: {err[-500:]}")
        LEDGER.text("machine-child-log", err)
        LEDGER.secret(idp.machine_client_secret, "machine client secret")
        if out.startswith("TOKEN "):
            LEDGER.secret(out.strip()[6:], "machine child token")
    return outputs


def test_16_processes_make_exactly_one_client_credentials_request(
    real_idp: IdP, tmp_path: Path
) -> None:
    outputs = run_children(real_idp, CC, tmp_path)
    assert all(o.startswith("TOKEN ") for o in outputs), outputs
    assert len(outputs) == 16
    assert len({o.split()[1] for o in outputs}) == 1
    assert real_idp.token_requests(CC, None) == 1


def test_the_same_herd_without_the_lock_makes_many_requests(
    real_idp: IdP, tmp_path: Path
) -> None:
    """What the count above proves: without the cross-process lock (the private test
    switch), the herd races and more than one process asks the provider."""
    outputs = run_children(real_idp, CC, tmp_path, lock=False)
    assert all(o.startswith("TOKEN ") for o in outputs), outputs
    assert real_idp.token_requests(CC, None) > 1


# --------------------------------------------------------------------- private_key_jwt


@pytest.fixture(scope="module")
def jwt_client_idp() -> Iterator[tuple[IdP, RSAKey]]:
    """A provider whose client "machine-jwt" authenticates with this RSA key's JWTs (one
    for the module: each start costs a node process)."""
    key = RSAKey.generate_key(2048, private=True)
    public = {**key.as_dict(private=False), "kid": "machine-key-1", "use": "sig"}
    provider = start_idp(machine_jwks={"keys": [public]}, timeout=60)
    try:
        yield provider, key
    finally:
        provider.stop()


@pytest.fixture
def jwt_client(jwt_client_idp: tuple[IdP, RSAKey]) -> tuple[IdP, RSAKey]:
    jwt_client_idp[0].reset()
    return jwt_client_idp


@pytest.mark.idp
@pytest.mark.parametrize("form", ["pem-file", "pem-bytes", "jwk"])
def test_private_key_jwt_client_credentials(
    form: str, jwt_client: tuple[IdP, RSAKey], tmp_path: Path
) -> None:
    idp, key = jwt_client
    pem = key.as_pem(private=True)
    assertion_key: Any
    if form == "pem-file":
        path = tmp_path / "client-key.pem"
        path.write_bytes(pem)
        path.chmod(0o600)
        assertion_key = str(path)
    elif form == "pem-bytes":
        assertion_key = pem
    else:
        assertion_key = {**key.as_dict(private=True), "kid": "machine-key-1"}
    grant = ClientCredentials(assertion_key=assertion_key)
    assert "PRIVATE" not in repr(grant)
    source = machine(idp, grant, tmp_path, client_id="machine-jwt", secret="")
    token = source.token()
    info = idp.introspect(token)
    assert info["active"] is True
    assert info["client_id"] == "machine-jwt"
    assert idp.token_requests(CC) == 1
    source.invalidate(token)  # a second assertion: a new jti, accepted too
    assert source.token() != token
    assert idp.token_requests(CC) == 2


@pytest.mark.idp
def test_private_key_jwt_with_a_key_the_provider_does_not_know_is_invalid_client(
    jwt_client: tuple[IdP, RSAKey], tmp_path: Path
) -> None:
    idp, _ = jwt_client
    other = RSAKey.generate_key(2048, private=True).as_pem(private=True)
    source = machine(idp, ClientCredentials(assertion_key=other), tmp_path,
                     client_id="machine-jwt", secret="")
    with pytest.raises(OAuthError) as caught:
        source.token()
    assert caught.value.error == "invalid_client"
    assert idp.token_requests(CC, "invalid_client") == 1


# --------------------------------------------------------------------- token exchange


@pytest.fixture
def exchange_idp(real_idp: IdP, ci_issuer: CIIssuer) -> IdP:
    """The shared provider, trusting the fake CI issuer's tokens for audience API."""
    real_idp.configure(**ci_issuer.exchange_settings(API))
    return real_idp


def test_github_actions_token_exchanged_for_an_access_token(
    exchange_idp: IdP, ci_issuer: CIIssuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ci_issuer.job_env().items():
        monkeypatch.setenv(name, value)
    LEDGER.secret(ci_issuer.request_token, "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    grant = TokenExchange(GitHubActionsToken(API), resource=API)
    source = machine(exchange_idp, grant, tmp_path)
    token = source.token()
    claims = decode_jwt_payload(token)
    assert claims["subject"] == "repo:octo-org/octo-repo:ref:refs/heads/main"
    assert claims["repository"] == "octo-org/octo-repo"
    assert claims["aud"] == API
    assert ci_issuer.job_requests() == 1
    assert ci_issuer.requests == [(200, API)]
    assert exchange_idp.token_requests(TOKEN_EXCHANGE_GRANT) == 1
    [seen] = exchange_idp.exchanges()
    assert seen["error"] == ""
    assert seen["aud"] == API
    assert seen["client_id"] == exchange_idp.machine_client_id
    assert source.token() == token  # tier 1: no new CI token, no new exchange
    assert ci_issuer.job_requests() == 1


def test_github_actions_without_the_id_token_permission(
    monkeypatch: pytest.MonkeyPatch, exchange_idp: IdP, tmp_path: Path
) -> None:
    monkeypatch.delenv("ACTIONS_ID_TOKEN_REQUEST_URL", raising=False)
    monkeypatch.delenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", raising=False)
    source = machine(exchange_idp, TokenExchange(GitHubActionsToken(API)), tmp_path)
    with pytest.raises(ConfigError) as caught:
        source.token()
    assert "id-token: write" in caught.value.hint
    assert exchange_idp.token_requests(TOKEN_EXCHANGE_GRANT, None) == 0


def test_github_refusing_the_request_token_is_a_subject_token_error(
    exchange_idp: IdP, ci_issuer: CIIssuer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", ci_issuer.request_url)
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "a-request-token-of-another-job")
    source = machine(exchange_idp, TokenExchange(GitHubActionsToken(API)), tmp_path)
    with pytest.raises(SubjectTokenError, match="HTTP 401"):
        source.token()
    assert ci_issuer.job_requests(401) == 1
    assert exchange_idp.token_requests(TOKEN_EXCHANGE_GRANT, None) == 0


def projected(directory: Path, token: str) -> None:
    """Write a token the way the kubelet updates a projected volume: a new timestamped
    directory, then an atomic swap of the `..data` symlink that `token` points through."""
    stamp = directory / f"..{time.monotonic_ns()}"
    stamp.mkdir()
    (stamp / "token").write_text(token)
    link = directory / "..data_tmp"
    link.symlink_to(stamp.name)
    os.replace(link, directory / "..data")
    if not (directory / "token").is_symlink():
        (directory / "token").symlink_to("..data/token")


def test_a_projected_token_rewritten_mid_test_is_the_next_exchange_subject(
    exchange_idp: IdP, ci_issuer: CIIssuer, tmp_path: Path
) -> None:
    volume = tmp_path / "projected"
    volume.mkdir()
    projected(volume, ci_issuer.issue(API, repository="octo-org/first"))
    grant = TokenExchange(KubernetesToken(path=volume / "token"), resource=API)
    source = machine(exchange_idp, grant, tmp_path)
    first = source.token()
    assert decode_jwt_payload(first)["repository"] == "octo-org/first"

    projected(volume, ci_issuer.issue(API, repository="octo-org/second"))  # rotation
    assert source.token() == first  # still valid: no exchange before it is needed
    source.invalidate(first)
    second = source.token()
    assert decode_jwt_payload(second)["repository"] == "octo-org/second"
    assert [e["repository"] for e in exchange_idp.exchanges()] == [
        "octo-org/first", "octo-org/second",
    ]
    assert exchange_idp.token_requests(TOKEN_EXCHANGE_GRANT) == 2


def test_an_expired_subject_token_says_so(
    exchange_idp: IdP, ci_issuer: CIIssuer, tmp_path: Path
) -> None:
    path = tmp_path / "token"
    path.write_text(ci_issuer.issue(API, ttl=60, issued_at=time.time() - 600))
    source = machine(exchange_idp, TokenExchange(FileToken(path), resource=API), tmp_path)
    with pytest.raises(SubjectTokenError) as caught:
        source.token()
    assert caught.value.expired is True
    assert caught.value.error == "invalid_grant"
    assert "expired" in str(caught.value)
    assert exchange_idp.token_requests(TOKEN_EXCHANGE_GRANT, "invalid_grant") == 1
    [seen] = exchange_idp.exchanges()
    assert seen["error"] == "ERR_JWT_EXPIRED"


def test_a_subject_token_of_an_untrusted_issuer_is_refused(
    exchange_idp: IdP, tmp_path: Path
) -> None:
    from tests.support.ci_issuer import start_ci_issuer, stop_ci_issuer

    other = start_ci_issuer()
    try:
        path = tmp_path / "token"
        path.write_text(other.issue(API))
        source = machine(exchange_idp, TokenExchange(FileToken(path), resource=API), tmp_path)
        with pytest.raises(SubjectTokenError) as caught:
            source.token()
    finally:
        stop_ci_issuer(other)
    assert caught.value.expired is False
    assert "trusts" in caught.value.hint
    assert exchange_idp.token_requests(TOKEN_EXCHANGE_GRANT, "invalid_grant") == 1


def test_16_processes_make_exactly_one_token_exchange(
    exchange_idp: IdP, ci_issuer: CIIssuer, tmp_path: Path
) -> None:
    path = tmp_path / "subject"
    path.write_text(ci_issuer.issue(API))
    outputs = run_children(exchange_idp, f"exchange:{path}", tmp_path)
    assert all(o.startswith("TOKEN ") for o in outputs), outputs
    assert len({o.split()[1] for o in outputs}) == 1
    assert exchange_idp.token_requests(TOKEN_EXCHANGE_GRANT, None) == 1
    assert len(exchange_idp.exchanges()) == 1


# --------------------------------------------------------------------- django-oauth-toolkit


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_credentials_against_django_oauth_toolkit(
    method: str, dot: DOT, api_factory: Callable[..., ProtectedAPI], tmp_path: Path
) -> None:
    """DOT's client-credentials application (tests/dot/serve.py, "Service"): basic by
    default, post when that is all DOT advertises; shared through tier 2; a 401 gets a
    new token."""
    if method == "client_secret_post":
        dot.configure(auth_methods=["client_secret_post"])
    store = MemorySecrets()

    def source() -> OAuthTokenSource:
        return OAuthTokenSource(
            OIDCParams(dot.issuer, dot.service_client_id,
                       client_secret=dot.service_client_secret),
            key_provider=lambda: "DOT_MACHINE", secrets_provider=store,
            grant=ClientCredentials(["read"]), lock_dir=tmp_path / "locks",
        )

    first = source()
    token = first.token()
    assert source().token() == token  # another process's view: tier 2
    assert dot.token_requests(CC) == 1
    assert dot.client_auth()[f"token:{method}"] == 1
    info = dot.introspect(token)
    assert info["active"] is True
    assert info["client_id"] == dot.service_client_id

    api = api_factory(lambda t: bool(dot.introspect(t).get("active")))
    api.rejected_tokens.add(token)
    with httpx.Client(auth=OIDCAuth(first), timeout=10) as client:
        assert client.get(api.url + "/data").status_code == 200
    assert api.count() == 2
    assert api.seen[1].authorization not in (None, f"Bearer {token}")
    assert dot.token_requests(CC) == 2


@pytest.mark.parametrize("kind", ["env", "exec"])
def test_env_and_exec_subject_tokens_with_an_actor(
    kind: str, exchange_idp: IdP, ci_issuer: CIIssuer, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    subject_token = ci_issuer.issue(API, repository=f"octo-org/from-{kind}")
    actor_file = tmp_path / "actor"
    actor_file.write_text(ci_issuer.issue(API, repository="octo-org/the-actor"))
    subject: EnvToken | ExecToken
    if kind == "env":
        monkeypatch.setenv("CI_SUBJECT_TOKEN", subject_token)
        subject = EnvToken("CI_SUBJECT_TOKEN")
    else:
        script = tmp_path / "print_token.py"
        script.write_text(f"print({subject_token!r})\n")
        subject = ExecToken([sys.executable, str(script)], timeout=30)
    grant = TokenExchange(subject, resource=API, actor=FileToken(actor_file))
    source = machine(exchange_idp, grant, tmp_path)
    claims = decode_jwt_payload(source.token())
    assert claims["repository"] == f"octo-org/from-{kind}"
    assert claims["act"] == {"sub": "repo:octo-org/the-actor:ref:refs/heads/main"}
    [seen] = exchange_idp.exchanges()
    assert seen["actor_sub"] == "repo:octo-org/the-actor:ref:refs/heads/main"
    assert exchange_idp.token_requests(TOKEN_EXCHANGE_GRANT) == 1
