"""KeyringSecrets' own rules (oauth_auth._keyring): adoption of keyring's backend."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

from oauth_auth import KeyringSecrets, SecretsError


def _frames(exc: BaseException) -> int:
    return len(traceback.extract_tb(exc.__traceback__))


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_the_unusable_backend_error_is_a_new_copy_each_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, timeout: float | None
) -> None:
    """Raising one stored instance again and again made its traceback grow by the frames
    of every raise (4, 8, 12, 16...), keeping them and their locals alive."""
    import keyring.core
    from keyring.backends import fail

    monkeypatch.setattr(keyring.core, "_keyring_backend", fail.Keyring())
    secrets = KeyringSecrets(timeout=timeout, lock_dir=tmp_path)
    errors = []
    for _ in range(4):
        with pytest.raises(SecretsError, match="no usable keyring backend") as info:
            secrets.get_secret("a")
        errors.append(info.value)
    assert len({id(e) for e in errors}) == 4
    assert len({_frames(e) for e in errors}) == 1
    assert {str(e) for e in errors} == {str(errors[0])}
    assert all("PYTHON_KEYRING_BACKEND" in e.hint for e in errors)
