"""`oauth-auth token --client-credentials` and `--exchange ...`, and profiles of those kinds,
run as a user runs the console script, against the bundled oidc-provider (its machine
client and token exchange grant) and the fake GitHub Actions issuer.

No secret ever goes on the command line: the client secret is named by
`--client-secret-env`, and the config file keeps only that name.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from oauth_auth.grants import TOKEN_EXCHANGE_GRANT
from tests.support.ci_issuer import CIIssuer
from tests.support.cli import cli, cli_env
from tests.support.hygiene import LEDGER
from tests.support.idp import IdP, decode_jwt_payload

pytestmark = pytest.mark.idp

API = "https://api.example.test"
NO_KEYRING = "keyring.backends.fail.Keyring"  # a CI runner without a Secret Service


def token(env: dict[str, str], *argv: str) -> Any:
    result = cli(["token", *argv], env)
    if result.returncode == 0:
        LEDGER.secret(result.stdout.strip(), "CLI access token")
    return result


def test_token_with_client_credentials_and_no_keyring(real_idp: IdP, tmp_path: Path) -> None:
    env = cli_env(tmp_path, PYTHON_KEYRING_BACKEND=NO_KEYRING,
                  MACHINE_SECRET=real_idp.machine_client_secret)
    LEDGER.secret(real_idp.machine_client_secret, "machine client secret")
    result = token(env, "--issuer", real_idp.issuer, "--client-id", real_idp.machine_client_id,
                   "--client-credentials", "--client-secret-env", "MACHINE_SECRET")
    assert result.returncode == 0, result.stderr
    access = result.stdout.strip()
    assert result.stdout == access + "\n"
    assert "not shared" in result.stderr  # said once: no store, no tier 2
    assert real_idp.token_requests("client_credentials") == 1
    assert real_idp.machine_client_secret not in result.stderr


def test_client_credentials_without_the_secret_variable_names_it(
    real_idp: IdP, tmp_path: Path
) -> None:
    env = cli_env(tmp_path, PYTHON_KEYRING_BACKEND=NO_KEYRING)
    env.pop("MACHINE_SECRET", None)
    result = token(env, "--issuer", real_idp.issuer, "--client-id", real_idp.machine_client_id,
                   "--client-credentials", "--client-secret-env", "MACHINE_SECRET")
    assert result.returncode == 1
    assert "MACHINE_SECRET" in result.stderr
    assert real_idp.token_requests("client_credentials", None) == 0


def test_token_exchange_of_a_file_and_of_the_github_job(
    real_idp: IdP, ci_issuer: CIIssuer, tmp_path: Path
) -> None:
    real_idp.configure(**ci_issuer.exchange_settings(API))
    subject = tmp_path / "subject"
    subject.write_text(ci_issuer.issue(API, repository="octo-org/from-a-file"))
    env = cli_env(tmp_path, PYTHON_KEYRING_BACKEND=NO_KEYRING,
                  MACHINE_SECRET=real_idp.machine_client_secret)
    base = ["--issuer", real_idp.issuer, "--client-id", real_idp.machine_client_id,
            "--client-secret-env", "MACHINE_SECRET", "--audience", API]
    from_file = token(env, *base, "--exchange", f"file:{subject}", "--json")
    assert from_file.returncode == 0, from_file.stderr
    doc = json.loads(from_file.stdout)
    LEDGER.secret(doc["access_token"], "CLI access token")
    assert decode_jwt_payload(doc["access_token"])["repository"] == "octo-org/from-a-file"
    assert doc["token_type"] == "Bearer"

    job = {**env, **ci_issuer.job_env()}
    LEDGER.secret(ci_issuer.request_token, "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    from_job = token(job, *base, "--exchange", "github", "--subject-audience", API)
    assert from_job.returncode == 0, from_job.stderr
    claims = decode_jwt_payload(from_job.stdout.strip())
    assert claims["subject"] == "repo:octo-org/octo-repo:ref:refs/heads/main"
    assert ci_issuer.requests == [(200, API)]
    assert real_idp.token_requests(TOKEN_EXCHANGE_GRANT) == 2

    projected = tmp_path / "projected-token"
    projected.write_text(ci_issuer.issue(API, repository="octo-org/in-a-pod"))
    from_pod = token(env, *base, "--exchange", f"kubernetes:{projected}")
    assert from_pod.returncode == 0, from_pod.stderr
    assert decode_jwt_payload(from_pod.stdout.strip())["repository"] == "octo-org/in-a-pod"
    assert real_idp.token_requests(TOKEN_EXCHANGE_GRANT) == 3

    no_permission = token(env, *base, "--exchange", "github")
    assert no_permission.returncode == 1
    assert "id-token: write" in no_permission.stderr


def test_an_unknown_exchange_source_is_refused(real_idp: IdP, tmp_path: Path) -> None:
    env = cli_env(tmp_path, PYTHON_KEYRING_BACKEND=NO_KEYRING)
    result = token(env, "--issuer", real_idp.issuer, "--client-id", "x", "--exchange", "ftp:x")
    assert result.returncode != 0
    assert "file:PATH" in result.stderr


@pytest.mark.keyring
def test_a_machine_profile_keeps_no_secret_and_serves_later_commands(
    real_idp: IdP, secret_service: Any, tmp_path: Path, cfg_file: Path
) -> None:
    name = f"ci-{uuid.uuid4().hex[:6]}"
    env = cli_env(tmp_path, secret_service.subprocess_env(),
                  MACHINE_SECRET=real_idp.machine_client_secret)
    LEDGER.secret(real_idp.machine_client_secret, "machine client secret")
    login = cli(["login", "--profile", name, "--issuer", real_idp.issuer, "--client-id",
                 real_idp.machine_client_id, "--client-credentials",
                 "--client-secret-env", "MACHINE_SECRET"], env)
    assert login.returncode == 0, login.stderr
    text = cfg_file.read_text()
    assert real_idp.machine_client_secret not in text
    entry = json.loads(text)["profiles"][name]
    assert entry["machine"] == {"grant": "client_credentials",
                                "client_secret_env": "MACHINE_SECRET"}
    first = token(env, "--profile", name)
    second = token(env, "--profile", name)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout  # tier 2: the login's token, shared
    assert real_idp.token_requests("client_credentials") == 1
    status = cli(["status", "--profile", name], env)
    assert status.returncode == 0, status.stderr
    assert "refresh token: none" in status.stdout
    assert "usable:        yes" in status.stdout


def test_token_with_private_key_jwt_from_a_key_file(tmp_path: Path) -> None:
    from joserfc.jwk import RSAKey

    from tests.support.idp import start_idp

    key = RSAKey.generate_key(2048, private=True)
    public = {**key.as_dict(private=False), "kid": "cli-key", "use": "sig"}
    path = tmp_path / "client-key.pem"
    path.write_bytes(key.as_pem(private=True))
    path.chmod(0o600)
    with start_idp(machine_jwks={"keys": [public]}, timeout=60) as idp:
        env = cli_env(tmp_path, PYTHON_KEYRING_BACKEND=NO_KEYRING)
        result = token(env, "--issuer", idp.issuer, "--client-id", "machine-jwt",
                       "--client-credentials", "--assertion-key-file", str(path))
        assert result.returncode == 0, result.stderr
        assert idp.token_requests("client_credentials") == 1
        assert "PRIVATE KEY" not in result.stderr
