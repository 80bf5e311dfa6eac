"""Encryption at rest of the fleet stores (`oauth_auth._sealing`): keys, rotation, refusals."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from oauth_auth import ConfigError, SecretsError
from oauth_auth._sealing import Sealer, generate_key

TOKEN = "refresh-token-value-0123456789abcdef"


def sealer(key: object = None, plaintext: bool = False) -> Sealer:
    return Sealer(key, allow_plaintext=plaintext, store="TestStore")  # type: ignore[arg-type]


def test_no_key_is_refused_unless_plaintext_is_allowed() -> None:
    with pytest.raises(ConfigError) as caught:
        sealer()
    assert "encryption_key" in str(caught.value)
    assert "allow_plaintext" in caught.value.hint
    plain = sealer(plaintext=True)
    assert not plain.encrypted
    assert plain.seal("K", TOKEN) == "plain:" + TOKEN
    assert plain.open("K", plain.seal("K", TOKEN)) == TOKEN


@pytest.mark.parametrize("key", [generate_key(), generate_key().encode(), Fernet.generate_key()])
def test_a_key_as_str_or_bytes_seals_and_opens(key: str | bytes) -> None:
    s = sealer(key)
    stored = s.seal("K", TOKEN)
    assert TOKEN not in stored
    assert stored.startswith("fernet:")
    assert s.seal("K", TOKEN) != stored  # randomized: compare-and-set compares in the clear
    assert s.open("K", stored) == TOKEN


def test_key_rotation_first_key_seals_every_key_opens() -> None:
    old, new = generate_key(), generate_key()
    written_with_old = sealer(old).seal("K", TOKEN)
    rotated = sealer([new, old])
    assert rotated.open("K", written_with_old) == TOKEN
    written_now = rotated.seal("K", TOKEN)
    assert sealer(new).open("K", written_now) == TOKEN  # the first key sealed it
    with pytest.raises(SecretsError):
        sealer(old).open("K", written_now)


def test_a_value_no_key_opens_is_an_error_not_a_miss() -> None:
    stored = sealer(generate_key()).seal("K", TOKEN)
    with pytest.raises(SecretsError) as caught:
        sealer(generate_key()).open("K", stored)
    assert "no encryption key opens" in str(caught.value)
    assert TOKEN not in str(caught.value)
    with pytest.raises(SecretsError):
        sealer(generate_key()).open("K", "fernet:not-a-token")


def test_a_value_moved_to_another_name_does_not_open() -> None:
    s = sealer(generate_key())
    with pytest.raises(SecretsError) as caught:
        s.open("K", s.seal("K_AT", TOKEN))
    assert "another name" in str(caught.value)


def test_mixed_modes_are_refused_with_a_hint() -> None:
    key = generate_key()
    with pytest.raises(SecretsError) as caught:
        sealer(key).open("K", "plain:" + TOKEN)
    assert "unencrypted" in str(caught.value)
    with pytest.raises(SecretsError) as caught:
        sealer(plaintext=True).open("K", sealer(key).seal("K", TOKEN))
    assert "no encryption_key" in str(caught.value)
    with pytest.raises(SecretsError):
        sealer(key).open("K", "written by someone else")


@pytest.mark.parametrize("bad", ["short", b"x" * 44, [generate_key(), "nope"], [1], 42])
def test_bad_keys_are_config_errors(bad: object) -> None:
    with pytest.raises(ConfigError):
        sealer(bad)


def test_repr_names_the_mode_only() -> None:
    key = generate_key()
    assert repr(sealer(key)) == "Sealer(fernet)"
    assert key not in repr(sealer(key))
