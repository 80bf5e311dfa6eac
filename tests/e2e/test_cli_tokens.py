"""`token`, `status`, `profiles` and `completion` through the console script, against the
real provider and Secret Service (issue 14, items 5-7, and what gh, gcloud, az and
kubelogin users miss). Each test fails on the code before the fix.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from oauth_auth import KeyringSecrets, derive_secret_key
from oauth_auth._config import Config
from tests.support.cli import ROOT, browser_program, cli, cli_env, script
from tests.support.hygiene import LEDGER
from tests.support.idp import IdP, decode_jwt_payload, refresh_count
from tests.support.servers import free_port

pytestmark = [pytest.mark.idp, pytest.mark.keyring]


@pytest.fixture
def env(secret_service: Any, tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path, secret_service.subprocess_env())


@pytest.fixture
def profile(real_idp: IdP, env: dict[str, str], tmp_path: Path) -> Any:
    """A profile logged in as alice; logged out after the test."""
    name = f"work-{uuid.uuid4().hex[:6]}"
    result = cli(["login", "--profile", name, "--issuer", real_idp.issuer, "--client-id",
                  real_idp.client_id, "--scope", "email", "--callback-port", str(free_port())],
                 {**env, "BROWSER": str(browser_program(tmp_path / "b"))})
    assert result.returncode == 0, result.stderr
    real_idp.reset_counts()
    yield name
    cli(["logout", "--profile", name], env)


def token(env: dict[str, str], *argv: str) -> Any:
    result = cli(["token", *argv], env)
    for word in result.stdout.replace('"', " ").split():
        if len(word) > 20:
            LEDGER.secret(word, "token output")
    return result


def test_token_json_min_valid_force_refresh_and_id_token(real_idp: IdP, env: dict[str, str],
                                                         profile: str) -> None:
    cached = token(env, "--profile", profile)
    as_json = token(env, "--profile", profile, "--json")
    doc = json.loads(as_json.stdout)
    assert set(doc) == {"access_token", "token_type", "expires_at"}
    assert doc["access_token"] == cached.stdout.strip()
    assert doc["token_type"] == "Bearer"
    expires = datetime.strptime(doc["expires_at"], "%Y-%m-%dT%H:%M:%SZ")
    left = expires.replace(tzinfo=timezone.utc).timestamp() - datetime.now(timezone.utc).timestamp()
    assert 3000 < left <= 3600
    assert refresh_count(real_idp.counts()) == 0  # both from the shared cache

    # --min-valid longer than the token has left: refreshed first
    fresher = token(env, "--profile", profile, "--min-valid", "3700")
    assert fresher.returncode == 0, fresher.stderr
    assert fresher.stdout != cached.stdout
    assert refresh_count(real_idp.counts()) == 1
    # --force-refresh always asks the provider
    forced = token(env, "--profile", profile, "--force-refresh")
    assert forced.stdout not in (cached.stdout, fresher.stdout)
    assert refresh_count(real_idp.counts()) == 2
    # --id-token: the session's ID token, naming the user
    id_token = token(env, "--profile", profile, "--id-token")
    assert id_token.returncode == 0, id_token.stderr
    claims = decode_jwt_payload(id_token.stdout.strip())
    assert (claims["sub"], claims["aud"]) == ("alice", real_idp.client_id)


def test_status_says_who_and_checks_with_the_provider(real_idp: IdP, env: dict[str, str],
                                                      profile: str) -> None:
    status = cli(["status", "--profile", profile], env)
    assert status.returncode == 0
    assert "logged in as:  alice (alice@example.test" in status.stdout, status.stdout
    assert f"profile:       {profile}\n" in status.stdout
    doc = json.loads(cli(["status", "--profile", profile, "--json"], env).stdout)
    assert doc["identity"]["sub"] == "alice"
    assert doc["refresh_token"]["present"] is True
    checked = cli(["status", "--profile", profile, "--check"], env)
    assert checked.returncode == 0, checked.stderr
    assert "works (the provider accepted it just now)" in checked.stdout
    assert refresh_count(real_idp.counts()) == 1

    # The provider ends the session: --check finds out, exit 4, and JSON even then.
    assert real_idp.revoke_all() >= 1
    dead = cli(["status", "--profile", profile, "--check", "--json"], env)
    assert dead.returncode == 4, dead.stderr
    doc = json.loads(dead.stdout)
    assert doc["usable"] is False
    assert doc["refresh_token"]["checked"] is True
    assert "refused" in doc["refresh_token"]["state"]


def test_status_with_a_broken_keyring_is_unknown_not_login_required(tmp_path: Path) -> None:
    env = cli_env(tmp_path, PYTHON_KEYRING_BACKEND="keyring.backends.null.Keyring")
    flags = ["--issuer", "https://idp.example.test", "--client-id", "c"]
    text = cli(["status", *flags], env)
    assert text.returncode == 1
    assert "usable:" in text.stdout
    assert "unknown (the secrets store failed; a login would not fix it)" in text.stdout
    as_json = cli(["status", *flags, "--json"], env)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["usable"] is None
    # status --json prints JSON when it cannot even start (no such profile)
    failed = cli(["status", "--profile", "ghost", "--json"], env)
    assert failed.returncode == 4
    assert json.loads(failed.stdout)["usable"] is False


def test_profiles_default_profile_and_completion(real_idp: IdP, env: dict[str, str],
                                                 profile: str) -> None:
    listed = cli(["profiles"], env)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if profile in line)
    assert "logged in" in row
    assert "alice" in row
    doc = json.loads(cli(["profiles", "--json"], env).stdout)
    assert [r["name"] for r in doc] == [profile]
    # OAUTH_AUTH_PROFILE names the profile when neither --profile nor --issuer is given.
    default = token({**env, "OAUTH_AUTH_PROFILE": profile})
    assert default.returncode == 0, default.stderr
    assert default.stdout == token(env, "--profile", profile).stdout
    marked = cli(["profiles"], {**env, "OAUTH_AUTH_PROFILE": profile})
    assert next(line for line in marked.stdout.splitlines() if profile in line).startswith("*")
    # completion scripts, and --profile completes the profile names
    assert cli(["profiles", "--names"], env).stdout == profile + "\n"
    for shell in ("bash", "zsh", "fish"):
        done = cli(["completion", shell], env)
        assert done.returncode == 0
        assert "client-secret-env" in done.stdout
    bash = shutil.which("bash")
    if bash is not None:
        check = subprocess.run([bash, "-n"], input=cli(["completion", "bash"], env).stdout,
                               text=True, capture_output=True, check=False)
        assert check.returncode == 0, check.stderr


def test_a_closed_stdout_is_one_error_line(real_idp: IdP, env: dict[str, str],
                                           profile: str) -> None:
    sh = shutil.which("sh")
    assert sh is not None
    command = " ".join([*script(), "token", "--profile", profile]) + " >&-"
    done = subprocess.run([sh, "-c", command], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    LEDGER.text("cli-stderr", done.stderr)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "oauth-auth: error: stdout was closed before the output was written"]


def test_a_mistyped_backend_is_named(tmp_path: Path) -> None:
    wrong = "keyring.backends.SecretSerivce.Keyring"
    env = cli_env(tmp_path, PYTHON_KEYRING_BACKEND=wrong)
    result = cli(["token", "--issuer", "https://idp.example.test", "--client-id", "c"], env)
    assert result.returncode == 1
    assert repr(wrong) in result.stderr
    assert "PYTHON_KEYRING_BACKEND" in result.stderr


PLAINTEXT = '''
import json, os
from keyring.backend import KeyringBackend

class PlaintextKeyring(KeyringBackend):
    priority = 1
    path = os.environ["PLAIN_KEYRING_FILE"]

    def _load(self):
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def get_password(self, service, username):
        return self._load().get(service + "/" + username)

    def set_password(self, service, username, password):
        data = self._load()
        data[service + "/" + username] = password
        with open(self.path, "w") as f:
            json.dump(data, f)

    def delete_password(self, service, username):
        data = self._load()
        data.pop(service + "/" + username, None)
        with open(self.path, "w") as f:
            json.dump(data, f)
'''


def test_the_plaintext_warning_is_true_and_not_on_every_token(tmp_path: Path) -> None:
    (tmp_path / "plainkr.py").write_text(PLAINTEXT)
    store = tmp_path / "plain.json"
    issuer, client = "https://idp.example.test", "c"
    key = derive_secret_key("OAUTH_AUTH_", client, issuer)
    store.write_text(json.dumps({f"oauth-auth/{key}_AT": "plain-token-0123456789abcdef|"
                                 "2099-01-01T00:00:00Z"}))
    env = cli_env(tmp_path, PYTHON_KEYRING_BACKEND="plainkr.PlaintextKeyring",
                  PYTHONPATH=str(tmp_path), PLAIN_KEYRING_FILE=str(store))
    flags = ["--issuer", issuer, "--client-id", client]
    first, second = cli(["token", *flags], env), cli(["token", *flags], env)
    assert (first.returncode, second.returncode) == (0, 0), first.stderr
    assert first.stdout == second.stdout == "plain-token-0123456789abcdef\n"
    assert "chosen by PYTHON_KEYRING_BACKEND=plainkr.PlaintextKeyring" in first.stderr
    assert "keyringrc.cfg" not in first.stderr  # it was not chosen there
    assert second.stderr == ""  # a credential helper is not told again on every call
    status = cli(["status", *flags], env)
    assert "unencrypted" in status.stderr


def test_a_confidential_client_keeps_its_secret_in_the_store(
    real_idp_factory: Any, env: dict[str, str], tmp_path: Path
) -> None:
    secret = "cli-client-secret-" + uuid.uuid4().hex
    LEDGER.secret(secret, "client secret")
    idp = real_idp_factory(client_secret=secret)
    name = f"conf-{uuid.uuid4().hex[:6]}"
    login = cli(["login", "--profile", name, "--issuer", idp.issuer, "--client-id",
                 idp.client_id, "--client-secret-env", "MY_SECRET", "--callback-host",
                 "127.0.0.1", "--auth-param", "ui_locales=en", "--prompt", "consent",
                 "--callback-port", str(free_port())],
                {**env, "MY_SECRET": secret,
                 "BROWSER": str(browser_program(tmp_path / "b"))})
    assert login.returncode == 0, login.stderr
    config = Path(env["OAUTH_AUTH_CONFIG"])
    assert secret not in config.read_text()
    entry = Config(config).entry("profiles", name)
    assert entry is not None
    assert (entry["callback_host"], entry["auth_params"], entry["prompt"]) == (
        "127.0.0.1", {"ui_locales": "en"}, "consent")
    assert entry["confidential"] is True
    key = derive_secret_key(f"OAUTH_AUTH_{name.upper().replace('-', '_')}_", idp.client_id,
                            idp.issuer)
    store = KeyringSecrets(service="oauth-auth")
    try:
        assert store.get_secret(key + "_CLIENT_SECRET") == secret
        # a refresh authenticates with the stored secret; no flag needed any more
        refreshed = token(env, "--profile", name, "--force-refresh")
        assert refreshed.returncode == 0, refreshed.stderr
        assert idp.token_requests("refresh_token") == 1
        # from stdin, never argv
        again = cli(["login", "--profile", name, "--client-secret-stdin", "--no-browser",
                     "--timeout", "1"], env, stdin="\n")
        assert again.returncode == 2
        assert "--client-secret-stdin: the first line of stdin is empty" in again.stderr
    finally:
        cli(["logout", "--profile", name], env)
        store.delete_secret(key + "_CLIENT_SECRET")


def test_the_cache_hit_imports_neither_keyring_nor_the_http_stack(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The fast path: the token from the real Secret Service, without keyring,
    secretstorage, cryptography, argparse or the token source."""
    issuer, client = "https://idp.example.test", f"fast-{uuid.uuid4().hex[:6]}"
    key = derive_secret_key("OAUTH_AUTH_", client, issuer)
    store = KeyringSecrets(service="oauth-auth")
    cached = "fast-path-token-" + uuid.uuid4().hex
    LEDGER.secret(cached, "seeded token")
    store.set_secret(key + "_AT", f"{cached}|2099-01-01T00:00:00Z")
    probe = ("import json, sys\nfrom oauth_auth.cli import main\ncode = main(sys.argv[2:])\n"
             "heavy = ('keyring', 'secretstorage', 'cryptography', 'argparse', 'httpx',"
             " 'requests', 'authlib', 'joserfc', 'oauth_auth.source', 'oauth_auth.profiles')\n"
             "open(sys.argv[1], 'w').write(json.dumps([code, [m for m in heavy"
             " if m in sys.modules]]))\n")
    report = tmp_path / "report.json"
    argv = [sys.executable, "-c", probe, str(report), "token", "--issuer", issuer,
            "--client-id", client]
    try:
        # The first run records keyring's backend choice (the full path); the next ones
        # take the fast path.
        runs = [subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True,
                               timeout=60, check=False) for _ in range(2)]
        assert [r.stdout for r in runs] == [cached + "\n"] * 2, runs[-1].stderr
        assert json.loads(report.read_text()) == [0, []]
    finally:
        store.delete_secret(key + "_AT")
