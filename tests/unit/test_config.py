"""Unit tests of the config file store (`_config.Config`).

Regression tests (bugs the reliability suite found) live next to the unit they cover.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def test_a_config_lock_that_cannot_be_created_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from oauth_auth import ConfigError
    from oauth_auth._config import Config

    # A lock directory of its own: the default one (the runtime directory) may not exist
    # yet, or be another test's (the session's Secret Service sets XDG_RUNTIME_DIR).
    locks = tmp_path / "locks"
    locks.mkdir(mode=0o700)
    monkeypatch.setenv("OAUTH_AUTH_LOCK_DIR", str(locks))
    config = Config(tmp_path / "config.json")
    config.lock_path.mkdir()  # something that cannot be opened as a file is in the way
    os.mkdir(config.lock_path / "x")
    with pytest.raises(ConfigError, match="cannot create the config lock file") as info:
        config.set_entry("profiles", "p", {"issuer": "https://idp.example.test"})
    assert info.value.hint
    assert not config.path.exists()


def test_a_deeply_nested_config_file_is_a_config_error(tmp_path: Path) -> None:
    from oauth_auth import ConfigError
    from oauth_auth._config import Config

    path = tmp_path / "config.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="not valid JSON"):
        Config(path).load()


HAND_WRITTEN = """\
# My oauth-auth settings (edited by hand)
version = 1

[registries."https://registry.example.test"]
issuer = "https://idp.example.test"  # the company IdP
client_id = "cli"
# read is all we need
scopes = ["registry:read"]

[profiles.work]
issuer = "https://work.example.test"
client_id = 'work-cli'   # a literal string, kept as written
"""


def test_a_toml_write_back_keeps_the_users_comments(tmp_path: Path) -> None:
    """Issue 12: the hand-made TOML writer dropped every comment on write-back. Only what
    changed is written; the rest keeps its comments and layout, still atomically (mode
    0600, no temporary file left)."""
    import stat

    from oauth_auth._config import Config, _parse_toml

    path = tmp_path / "config.toml"
    path.write_text(HAND_WRITTEN)
    config = Config(path)
    config.set_entry("registries", "https://registry.example.test",
                     {"cached_refresh_token_ref": "REGISTRY_OAUTH_0123abcd",
                      "cached_token_expiry": "2026-12-02T10:00:00Z"})
    text = path.read_text()
    for kept in ("# My oauth-auth settings (edited by hand)", "# the company IdP",
                 "# read is all we need", "client_id = 'work-cli'   # a literal string"):
        assert kept in text
    assert text.count("#") == HAND_WRITTEN.count("#")
    doc = _parse_toml(text)
    entry = doc["registries"]["https://registry.example.test"]
    assert entry == {"issuer": "https://idp.example.test", "client_id": "cli",
                     "scopes": ["registry:read"],
                     "cached_refresh_token_ref": "REGISTRY_OAUTH_0123abcd",
                     "cached_token_expiry": "2026-12-02T10:00:00Z"}
    assert doc["profiles"] == {"work": {"issuer": "https://work.example.test",
                                        "client_id": "work-cli"}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]

    # Removing the session removes its two keys and nothing else.
    config.forget_session("registries", "https://registry.example.test")
    after = path.read_text()
    assert "cached_refresh_token_ref" not in after
    assert "# the company IdP" in after
    assert "# read is all we need" in after


def test_tomlkit_is_loaded_only_to_write(tmp_path: Path) -> None:
    """Reading the config (every `token()` of a profile) keeps to the standard library."""
    import subprocess
    import sys

    path = tmp_path / "config.toml"
    path.write_text(HAND_WRITTEN)
    code = (
        "import sys\n"
        "from oauth_auth._config import Config\n"
        f"c = Config({str(path)!r})\n"
        "assert c.entry('profiles', 'work')['client_id'] == 'work-cli'\n"
        "print('tomlkit' in sys.modules)\n"
        "c.set_entry('profiles', 'work', {'audience': 'api'})\n"
        "print('tomlkit' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out == ["False", "True"]
