"""Unit tests of the config file store (`_config.Config`).

Regression tests (bugs the reliability suite found) live next to the unit they cover.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def test_a_config_lock_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    import os

    from oauth_auth import ConfigError
    from oauth_auth._config import Config

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
