"""Another local user as the attacker (issue 15, items 4 and 5), against the real provider.

- The lock directory must be the user's own, mode 0700: one that another user owns, or
  may write in, could let that user hold every lock or plant symlinks under lock-file
  names. Such a directory is refused with a `ConfigError` and a hint, before the stored
  refresh token is used: the provider sees no refresh, the session stays stored.
- A config entry's `cached_refresh_token_ref` is used only for the issuer and client it
  was written for: an entry naming another session's key, with another issuer, never sends
  that session's refresh token there, and never deletes it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oauth_auth import (
    ConfigError,
    LoginRequiredError,
    MemorySecrets,
    derive_secret_key,
    registry_auth,
)
from oauth_auth._keys import scoped_name
from oauth_auth._locking import LOCK_DIR_ENV
from tests.reliability.conftest import Figures, Session, assert_typed
from tests.support.cli import cli, cli_env
from tests.support.idp import IdP, obtain_tokens, refresh_count

NOBODY = 65534


def _dir(path: Path, mode: int) -> Path:
    path.mkdir()
    path.chmod(mode)
    return path


def test_a_lock_directory_others_may_write_is_refused_before_any_refresh(
    session: Session, tmp_path: Path, figures: Figures
) -> None:
    for mode in (0o777, 0o1777, 0o770, 0o705):
        shared = _dir(tmp_path / f"shared-{mode:o}", mode)
        source = session.source(lock_dir=shared)
        with pytest.raises(ConfigError) as info:
            source.token()
        assert_typed(info.value, ConfigError, str(shared), "open to other users")
        assert f"chmod 700 {shared}" in info.value.hint
        assert list(shared.iterdir()) == []  # no lock file was created in it
        figures.add("lock directory not private", "ConfigError, no refresh, session kept")
    assert refresh_count(session.idp.counts()) == 0
    assert session.stored() == session.refresh_token
    # The same session works from a private directory.
    own = session.source(lock_dir=tmp_path / "own")
    assert session.active(own.token())
    assert stat.S_IMODE((tmp_path / "own").stat().st_mode) == 0o700
    assert refresh_count(session.idp.counts()) == 1


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0,
                    reason="making a directory of another user needs root (CI runs as root)")
def test_a_lock_directory_of_another_user_is_refused(
    session: Session, tmp_path: Path, figures: Figures
) -> None:
    theirs = _dir(tmp_path / "theirs", 0o700)
    os.chown(theirs, NOBODY, NOBODY)
    link = tmp_path / "link"
    os.symlink(theirs, link)  # our link to their directory: the target decides
    for path in (theirs, link):
        with pytest.raises(ConfigError) as info:
            session.source(lock_dir=path).token()
        assert_typed(info.value, ConfigError, str(path), "belongs to another user")
        figures.add("lock directory of another user", "ConfigError, no refresh, session kept")
    assert list(theirs.iterdir()) == []
    assert refresh_count(session.idp.counts()) == 0
    assert session.stored() == session.refresh_token


def test_the_cli_refuses_a_shared_lock_dir_with_exit_1_and_a_hint(
    tmp_path: Path, secret_service: Any
) -> None:
    shared = _dir(tmp_path / "shared", 0o777)
    env = cli_env(tmp_path, secret_service.subprocess_env(), **{LOCK_DIR_ENV: str(shared)})
    result = cli(["token", "--issuer", "https://idp.example.test", "--client-id", "c"], env)
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "open to other users" in result.stderr
    assert "chmod 700" in result.stderr


# ------------------------------------------------------------------ cached_refresh_token_ref


def test_a_cached_ref_naming_another_issuers_session_is_not_used(
    real_idp_factory: Callable[..., IdP], real_idp: IdP, tmp_path: Path, figures: Figures
) -> None:
    """Registry A is logged in at the real issuer; an entry for registry B, at the
    attacker's issuer, names A's key. B's token() sends nothing of A's anywhere."""
    attacker = real_idp_factory()
    store = MemorySecrets()
    registry_a, registry_b = "https://registry.example.test", "https://evil.example.test"
    key_a = derive_secret_key("REGISTRY_OAUTH_", registry_a, real_idp.issuer)
    stored_as = scoped_name("registry", key_a)  # ToolHive's name of a registry session
    tokens = obtain_tokens(real_idp)
    store.set_secret(stored_as, tokens["refresh_token"])
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"registries": {
        registry_a: {"issuer": real_idp.issuer, "client_id": real_idp.client_id,
                     "cached_refresh_token_ref": key_a},
        registry_b: {"issuer": attacker.issuer, "client_id": attacker.client_id,
                     "cached_refresh_token_ref": key_a},
    }}))
    real_idp.reset_counts()
    attacker.reset_counts()
    auth_b = registry_auth(registry_b, interactive=False, config_path=str(config),
                           secrets_provider=store, lock_dir=tmp_path / "locks")
    with pytest.raises(LoginRequiredError):
        auth_b.source.token()
    assert attacker.counts().get("token", {}) == {}  # no refresh token reached it
    assert store.get_secret(stored_as) == tokens["refresh_token"]  # nothing deleted
    auth_b.source.logout()  # logging B out touches only B's own key
    assert store.get_secret(stored_as) == tokens["refresh_token"]
    assert attacker.counts().get("revocation", 0) == 0
    # A's own entry still uses its ref: one refresh at the real issuer.
    auth_a = registry_auth(registry_a, interactive=False, config_path=str(config),
                           secrets_provider=store, lock_dir=tmp_path / "locks")
    assert auth_a.source.token()
    assert refresh_count(real_idp.counts()) == 1
    figures.add("cached ref naming another issuer's key", "ignored: no request, nothing deleted")


def test_which_refs_serve_a_session() -> None:
    from oauth_auth._keys import ref_written_for

    issuer, url = "https://idp.example.test", "https://registry.example.test"
    mine = derive_secret_key("REGISTRY_OAUTH_", url, issuer)
    assert ref_written_for(mine, issuer=issuer, resources=(url,))
    # Written by a release that kept the issuer's trailing slash; another prefix (a
    # named profile's) derived from the same pair.
    assert ref_written_for(derive_secret_key("REGISTRY_OAUTH_", url, issuer + "/"),
                           issuer=issuer, resources=(url,))
    assert ref_written_for(derive_secret_key("OAUTH_AUTH_WORK_", "client", issuer),
                           issuer=issuer + "/", resources=("", "client"))
    # Another issuer's or another resource's session: never.
    assert not ref_written_for(mine, issuer="https://evil.example.test", resources=(url,))
    assert not ref_written_for(mine, issuer=issuer, resources=("https://other.example.test",))
    assert not ref_written_for(mine, issuer=issuer, resources=("",))
    # A name given by hand is nobody's derivation: the entry's own choice.
    assert ref_written_for("MY_REF", issuer=issuer, resources=(url,))
