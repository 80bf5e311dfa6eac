"""private_key_jwt (RFC 7523 section 2.2, OIDC Core section 9): a client signs a short JWT.

The client authenticates at the token endpoint with a JWT it signs with its own private
key, instead of a shared secret: `iss` and `sub` are the client id, `aud` the token
endpoint, a fresh `jti` (servers refuse a replayed one) and an `exp` a minute away.
joserfc signs it; the key is what the user gives: a PEM file path, PEM text or bytes, or
a JWK as a dict. It is read once, when first needed, and never shown by a repr.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from .errors import ConfigError

if TYPE_CHECKING:
    from joserfc.jwk import ECKey, OKPKey, RSAKey

__all__ = [
    "ASSERTION_LIFETIME",
    "CLIENT_ASSERTION_TYPE",
    "AssertionKey",
    "AssertionKeyInput",
]

#: The `client_assertion_type` of a JWT client assertion (RFC 7523 section 2.2).
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Seconds a client assertion is valid: long enough for a slow network, short enough
#: that a leaked one is useless (servers also refuse a replayed `jti`).
ASSERTION_LIFETIME = 60
#: The JWS algorithm for an EC key, by curve (RFC 7518 section 3.4).
_EC_ALGS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512", "secp256k1": "ES256K"}
#: Longest key file we read (a PEM private key is a few KiB).
_MAX_KEY_FILE = 1 << 16

#: What `assertion_key` may be: a PEM file path, PEM text or bytes, or a JWK dict.
AssertionKeyInput = Union[str, bytes, "os.PathLike[str]", Mapping[str, Any]]

class AssertionKey:
    """A private key that signs client assertions; safe for concurrent use.

    Args:
        value: a path to a key file (str or path-like; PEM, or a JWK as JSON), PEM
            text (a str that starts with "-----BEGIN") or bytes, or a private JWK as a
            dict (its `kid` and `alg`, when present, go into the JWS header).

    Raises:
        ConfigError: (from `sign`, at first use) the key cannot be read or is not a
            private RSA, EC or OKP key.
    """

    def __init__(self, value: AssertionKeyInput) -> None:
        if not isinstance(value, (str, bytes, os.PathLike, Mapping)):
            raise ConfigError(
                "assertion_key must be a PEM file path, PEM text or bytes, or a JWK dict",
                hint="for example assertion_key='/run/secrets/client-key.pem'",
            )
        self._value = value
        self._lock = threading.Lock()
        self._loaded: tuple[RSAKey | ECKey | OKPKey, dict[str, str]] | None = None

    def __repr__(self) -> str:
        value = self._value
        if isinstance(value, os.PathLike) or (
            isinstance(value, str) and not value.lstrip().startswith("-----BEGIN")
        ):
            return f"AssertionKey(path={os.fspath(value)!r})"
        return "AssertionKey(<private key>)"

    def sign(self, client_id: str, audience: str, now: float) -> str:
        """A fresh client assertion for `client_id` at the token endpoint `audience`."""
        from joserfc import jwt

        key, header = self._key()
        issued = int(now)
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": secrets.token_urlsafe(24),
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME,
        }
        return jwt.encode(dict(header), claims, key, algorithms=[header["alg"]])

    def _key(self) -> tuple[RSAKey | ECKey | OKPKey, dict[str, str]]:
        with self._lock:
            if self._loaded is None:
                self._loaded = _load(self._value)
            return self._loaded


def _load(value: AssertionKeyInput) -> tuple[RSAKey | ECKey | OKPKey, dict[str, str]]:
    from joserfc.errors import JoseError
    from joserfc.jwk import ECKey, OKPKey, RSAKey

    classes: dict[str, type[RSAKey] | type[ECKey] | type[OKPKey]] = {
        "RSA": RSAKey, "EC": ECKey, "OKP": OKPKey,
    }
    header: dict[str, str] = {"typ": "JWT"}
    pem = b""
    if not isinstance(value, Mapping):
        pem = _pem_bytes(value)
        if pem.lstrip().startswith(b"{"):  # a key file may hold a JWK as JSON
            try:
                value = json.loads(pem)
            except ValueError:
                raise ConfigError("assertion_key's file is neither PEM nor a JWK") from None
            if not isinstance(value, Mapping):
                raise ConfigError("assertion_key's file is neither PEM nor a JWK")
    try:
        if isinstance(value, Mapping):
            kty = value.get("kty")
            if kty == "oct":
                raise ConfigError(
                    "assertion_key is a symmetric key (kty oct); private_key_jwt needs a"
                    " private RSA, EC or OKP key",
                    hint="for a shared secret, set OIDCParams.client_secret instead",
                )
            if kty not in classes or "d" not in value:
                raise ConfigError(
                    "assertion_key is not a private RSA, EC or OKP JWK (it needs kty and d)",
                    hint="pass the private JWK, not the public one",
                )
            key: RSAKey | ECKey | OKPKey = classes[kty].import_key(dict(value))
            for name in ("kid", "alg"):
                if isinstance(value.get(name), str) and value[name]:
                    header[name] = value[name]
        else:
            kind = _pem_kind(pem)
            key = classes[kind].import_key(pem)
    except JoseError as exc:
        raise ConfigError(
            f"assertion_key cannot be used: {type(exc).__name__}",
            hint="pass an unencrypted private key (PEM or JWK)",
        ) from None
    header.setdefault("alg", _alg(key))
    return key, header


def _pem_bytes(value: str | bytes | os.PathLike[str]) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
        return value.encode("ascii", "replace")
    path = Path(os.fspath(value))
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise ConfigError(
            f"the private key file {str(path)!r} does not exist",
            hint="pass the path of the PEM private key registered with the provider",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read the private key file {str(path)!r} ({exc.strerror or exc})",
            hint="check the file's path and permissions",
        ) from None
    if len(data) > _MAX_KEY_FILE:
        raise ConfigError(f"{str(path)!r} is too large to be a PEM private key")
    return data


def _pem_kind(pem: bytes) -> str:
    """"RSA", "EC" or "OKP": the type of the unencrypted PEM private key (cryptography
    tells; joserfc would otherwise guess with a warning)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        loaded = load_pem_private_key(pem, password=None)
    except TypeError:
        raise ConfigError(
            "assertion_key is an encrypted PEM key",
            hint="decrypt it (openssl pkey -in key.pem -out plain.pem) and keep the file"
            " readable only by this user",
        ) from None
    except Exception:  # noqa: BLE001 - cryptography raises several types
        raise ConfigError(
            "assertion_key is not a PEM private key",
            hint="pass a path to a PEM file with a private key (BEGIN PRIVATE KEY)",
        ) from None
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(loaded, rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(loaded, ec.EllipticCurvePrivateKey):
        return "EC"
    if isinstance(loaded, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return "OKP"
    raise ConfigError(
        f"assertion_key is a {type(loaded).__name__}; private_key_jwt needs RSA, EC or Ed25519"
    )


def _alg(key: RSAKey | ECKey | OKPKey) -> str:
    """The JWS algorithm a key signs with: RS256 for RSA (every server has it), the
    curve's ES* for EC, Ed25519 or Ed448 for OKP."""
    params = key.as_dict(private=False)
    kty = params.get("kty")
    if kty == "EC":
        crv = str(params.get("crv", ""))
        alg = _EC_ALGS.get(crv)
        if alg is None:
            raise ConfigError(f"assertion_key's curve {crv!r} has no JWS algorithm")
        return alg
    if kty == "OKP":
        # RFC 9864's fully specified names ("EdDSA" is deprecated by it).
        return "Ed448" if params.get("crv") == "Ed448" else "Ed25519"
    return "RS256"
