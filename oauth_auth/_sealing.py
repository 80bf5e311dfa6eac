"""Encryption at rest for the server-backed stores (`RedisSecrets`, `PostgresSecrets`).

A Redis or PostgreSQL server is shared by many hosts and usually by more people than the
session's owner (operators, backups, replicas), so a refresh token is never stored there
in the clear unless the caller says so. Values are sealed with Fernet (AES-128-CBC +
HMAC-SHA256, from `cryptography`); a list of keys is a `MultiFernet`: the first key
seals, every key opens, so keys can be rotated without losing a session.

The entry's name is sealed together with its value, so a value copied under another
name (say, an access-token entry moved over a refresh-token entry) does not open. A value
that no key opens is an error (`SecretsError`), never a miss: treating it as absent would
make a token source log in again, or refresh with an older copy.

Stored form: ``fernet:<token>`` when sealed, ``plain:<value>`` with ``allow_plaintext``
and no key. A store with keys refuses plaintext entries, and one without keys refuses
sealed entries, each with a hint.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeAlias

from .errors import ConfigError, SecretsError

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

__all__ = ["EncryptionKey", "Sealer", "generate_key"]

#: A Fernet key (urlsafe base64 of 32 bytes) as bytes or str, or a list of them.
EncryptionKey: TypeAlias = "str | bytes | Sequence[str | bytes]"

_SEALED = "fernet:"
_PLAIN = "plain:"
_SEP = "\x00"


def generate_key() -> str:
    """A new random Fernet key, as the `encryption_key` of a store (keep it secret)."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")


class Sealer:
    """Seals and opens the values of one store. Safe for concurrent use (no state changes).

    Args:
        encryption_key: a Fernet key or a list of them (first seals, all open); None to
            store plaintext, which `allow_plaintext` must then allow.
        allow_plaintext: accept no key.
        store: the store's class name, for messages.

    Raises:
        ConfigError: no key and plaintext not allowed, or a key that is not a Fernet key.
    """

    __slots__ = ("_fernet", "store")

    def __init__(self, encryption_key: EncryptionKey | None, *, allow_plaintext: bool,
                 store: str) -> None:
        self.store = store
        self._fernet: MultiFernet | None = None
        keys = _key_list(encryption_key)
        if not keys:
            if not allow_plaintext:
                raise ConfigError(
                    f"{store} needs an encryption_key: refresh tokens on a shared server"
                    " are encrypted at rest",
                    hint="pass encryption_key=<Fernet key> (make one with `python -c 'from"
                    " cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
                    ", or allow_plaintext=True to store tokens unencrypted",
                )
            return
        try:
            from cryptography.fernet import Fernet, MultiFernet
        except ImportError:  # pragma: no cover - the extras install it
            raise ConfigError(
                f"{store} encrypts with the `cryptography` package, which is not installed",
                hint="pip install 'oauth-auth[redis]' or 'oauth-auth[postgres]'",
            ) from None
        fernets = []
        for index, key in enumerate(keys):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError, binascii.Error):
                raise ConfigError(
                    f"encryption_key #{index + 1} of {store} is not a Fernet key",
                    hint="a key is the urlsafe base64 encoding of 32 random bytes"
                    " (cryptography.fernet.Fernet.generate_key())",
                ) from None
        self._fernet = MultiFernet(fernets)

    @property
    def encrypted(self) -> bool:
        """Whether values are encrypted (False only with allow_plaintext and no key)."""
        return self._fernet is not None

    def seal(self, name: str, value: str) -> str:
        """The stored form of `value` under `name`."""
        if self._fernet is None:
            return _PLAIN + value
        token = self._fernet.encrypt((name + _SEP + value).encode("utf-8"))
        return _SEALED + token.decode("ascii")

    def open(self, name: str, stored: str) -> str:
        """The value that `seal(name, value)` returned as `stored`.

        Raises:
            SecretsError: no key opens it, it belongs to another name, or it was written
                with (or without) encryption while this store is configured otherwise.
        """
        if stored.startswith(_PLAIN):
            if self._fernet is not None:
                raise SecretsError(
                    f"{self.store}: the entry {name!r} is stored unencrypted, but this store"
                    " has an encryption_key",
                    hint="log in again to replace it, or read it with allow_plaintext=True"
                    " and no key",
                )
            return stored[len(_PLAIN):]
        if not stored.startswith(_SEALED):
            raise SecretsError(
                f"{self.store}: the entry {name!r} was not written by oauth-auth",
                hint="delete it (or log out) and log in again",
            )
        if self._fernet is None:
            raise SecretsError(
                f"{self.store}: the entry {name!r} is encrypted, but no encryption_key is set",
                hint="pass the encryption_key it was written with",
            )
        from cryptography.fernet import InvalidToken

        try:
            plain = self._fernet.decrypt(stored[len(_SEALED):].encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SecretsError(
                f"{self.store}: no encryption key opens the entry {name!r}",
                hint="pass the key it was written with (a list of keys: the first encrypts,"
                " all decrypt), or log in again to replace it",
            ) from None
        owner, sep, value = plain.partition(_SEP)
        if not sep or owner != name:
            raise SecretsError(
                f"{self.store}: the entry {name!r} holds a value sealed for another name",
                hint="the store was tampered with or copied by hand; log in again",
            )
        return value

    def __repr__(self) -> str:
        return f"Sealer({'fernet' if self.encrypted else 'plaintext'})"


def _key_list(encryption_key: EncryptionKey | None) -> list[bytes]:
    if encryption_key is None:
        return []
    if isinstance(encryption_key, (str, bytes)):
        items: Sequence[object] = [encryption_key]
    elif isinstance(encryption_key, (list, tuple)):
        items = list(encryption_key)
    else:
        items = [encryption_key]  # refused below
    keys = []
    for item in items:
        if isinstance(item, str):
            keys.append(item.strip().encode("ascii", "replace"))
        elif isinstance(item, bytes):
            keys.append(item.strip())
        else:
            raise ConfigError(
                "encryption_key must be a Fernet key (str or bytes) or a list of them",
                hint="cryptography.fernet.Fernet.generate_key() makes one",
            )
    return keys

