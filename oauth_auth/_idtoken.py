"""ID token validation (OIDC Core section 3.1.3.7), with joserfc.

The ID token is what proves the login happened at *our* provider, for *our* client, in
answer to *our* request (the nonce). Without these checks an attacker who can inject a
code or a token response could log the user in as someone else.

Rules, each of which raises `LoginError` with a message that never contains the token:

- the JWS `alg` is one the provider advertises, never `none`: an asymmetric one, or an
  HMAC (HS256/384/512) only for a client that holds a client secret, which is then the
  key (OIDC Core section 10.1); never a public key used as an HMAC secret;
- the signature verifies against the provider's JWKS; a `kid` we do not know triggers
  one refetch of the JWKS (key rotation), not more;
- `iss` equals the issuer, with the two exceptions presets bring (Google's
  `accounts.google.com` alias; Entra's multi-tenant `{tenantid}` template, filled in
  with the token's own `tid`); `aud` contains the client id (and `azp` equals it when
  there are several audiences or when it is present), `sub` is present;
- `exp` is in the future and `iat` is not in the future, both within `CLOCK_SKEW`;
- `nonce` equals the one sent in the authorization request (flows that send none, like
  the device grant, skip this check only).
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OctKey

from .errors import LoginError

if TYPE_CHECKING:
    from joserfc.jwk import Key

    from ._discovery import ProviderMetadata
    from ._http import IdPHttp

__all__ = [
    "ASYMMETRIC_ALGS",
    "CLOCK_SKEW",
    "HMAC_ALGS",
    "clear_jwks_cache",
    "expected_issuers",
    "validate_id_token",
]

#: Seconds of clock difference tolerated between this machine and the provider for
#: `exp` and `iat` (laptops drift; five minutes is the customary allowance).
CLOCK_SKEW = 300.0

#: JWS algorithms an ID token may be signed with: public-key ones only.
ASYMMETRIC_ALGS: Mapping[str, str] = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
    "ES256K": "EC",
    "EdDSA": "OKP",
    "Ed25519": "OKP",
    "Ed448": "OKP",
}

#: JWS algorithms keyed with the client secret (OIDC Core section 10.1).
HMAC_ALGS = frozenset({"HS256", "HS384", "HS512"})
#: Shortest client secret an HMAC-signed ID token is verified with (112 bits, NIST
#: SP 800-131A, as joserfc warns below it).
MIN_HMAC_SECRET_BYTES = 14
#: What an Entra tenant id (`tid`) looks like: a GUID.
_TENANT_ID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")

#: OIDC Core section 15.1: RS256 is the algorithm to assume when a provider names none.
_DEFAULT_ALGS = ("RS256",)

_jwks_cache: dict[str, KeySet] = {}
_jwks_lock = threading.Lock()


def clear_jwks_cache() -> None:
    """Forget every cached JWKS (tests; a provider that rotated all its keys)."""
    with _jwks_lock:
        _jwks_cache.clear()


def _fail(message: str, hint: str = "") -> LoginError:
    return LoginError(
        f"the ID token is invalid: {message}",
        error="invalid_id_token",
        hint=hint or "log in again; if it keeps failing, check the issuer and client id",
    )


def _fetch_jwks(jwks_uri: str, http: IdPHttp) -> KeySet:
    doc = http.get_json(jwks_uri)
    keys = doc.get("keys")
    if not isinstance(keys, list):
        raise _fail("the provider's JWKS has no key list")
    usable = [
        k
        for k in keys
        if isinstance(k, dict)
        and k.get("kty") in ("RSA", "EC", "OKP")
        and k.get("use", "sig") == "sig"
        and "d" not in k  # a provider publishing private keys is broken; don't touch it
    ]
    try:
        key_set: KeySet = KeySet.import_key_set({"keys": usable})
    except (JoseError, ValueError, TypeError, KeyError):
        raise _fail("the provider's JWKS has no usable signing key") from None
    with _jwks_lock:
        _jwks_cache[jwks_uri] = key_set
    return key_set


def _candidates(key_set: KeySet, kid: str | None, alg: str) -> list[Key]:
    """Keys that could have signed a token with this `kid` and `alg`."""
    kty = ASYMMETRIC_ALGS[alg]
    found = []
    for key in key_set:
        if kid is not None and key.kid != kid:
            continue
        if key.key_type != kty:
            continue
        key_alg = key.get("alg")
        if key_alg is not None and key_alg != alg:
            continue
        found.append(key)
    return found


def _header(id_token: str) -> dict[str, Any]:
    try:
        obj = jws.extract_compact(id_token.encode("ascii"))
    except (JoseError, ValueError, UnicodeError):
        raise _fail("it is not a compact JWS") from None
    return dict(obj.headers())


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(f"the {name!r} claim is missing or not a number")
    return float(value)


def expected_issuers(
    metadata: ProviderMetadata, claims: Mapping[str, Any], aliases: Collection[str] = ()
) -> tuple[str, ...]:
    """The `iss` values an ID token with these claims may carry (pure).

    The issuer, or for Entra's multi-tenant template (`metadata.tenant_issuer_template`)
    the template with `{tenantid}` replaced by the token's own `tid`, which must be a
    GUID; then the preset's aliases (Google's `accounts.google.com`).
    """
    issuer = metadata.issuer
    if metadata.tenant_issuer_template:
        tid = claims.get("tid")
        if not isinstance(tid, str) or not _TENANT_ID.fullmatch(tid):
            raise _fail("its 'tid' claim is missing or not a tenant id")
        issuer = issuer.replace("{tenantid}", tid)
    return (issuer, *aliases)


def _check_claims(
    claims: Mapping[str, Any],
    *,
    issuer: str | Collection[str],
    client_id: str,
    nonce: str | None,
    now: float,
) -> None:
    accepted = (issuer,) if isinstance(issuer, str) else tuple(issuer)
    if claims.get("iss") not in accepted:
        raise _fail(
            f"it was issued by {str(claims.get('iss'))[:200]!r}, not {accepted[0]!r}",
            hint="the token may come from another provider; log in again",
        )
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise _fail("the 'aud' claim is missing or malformed")
    if client_id not in audiences:
        raise _fail(
            f"it is not meant for client {client_id!r}",
            hint="the token was issued to another client; check the client id",
        )
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != client_id:
        raise _fail(f"its authorized party ('azp') is not client {client_id!r}")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise _fail("the 'sub' claim is missing")
    exp = _number(claims, "exp")
    if exp + CLOCK_SKEW <= now:
        raise _fail(
            "it has expired",
            hint="check this machine's clock, then log in again",
        )
    iat = _number(claims, "iat")
    if iat - CLOCK_SKEW > now:
        raise _fail(
            "it was issued in the future",
            hint="check this machine's clock, then log in again",
        )
    if nonce is None:
        return
    got = claims.get("nonce")
    if not isinstance(got, str) or not hmac.compare_digest(
        got.encode("utf-8", "replace"), nonce.encode("utf-8")
    ):
        raise _fail(
            "its nonce does not match this login's",
            hint="the token may be replayed from another login; log in again",
        )


def validate_id_token(
    id_token: str,
    *,
    metadata: ProviderMetadata,
    client_id: str,
    nonce: str | None,
    http: IdPHttp,
    now: Callable[[], float] = time.time,
    client_secret: str = "",
    issuer_aliases: Collection[str] = (),
) -> dict[str, Any]:
    """Verify an ID token's signature and claims; return its claims.

    Args:
        id_token: the compact JWS from the token response.
        metadata: the provider's validated metadata (issuer, jwks_uri, advertised algs).
        client_id: our client id, which must be an audience.
        nonce: the nonce sent in the authorization request; None for grants without one
            (the device grant), which skips only that check.
        http: used to fetch the JWKS (cached per process; refetched once on an unknown kid).
        now: wall-clock seconds since the epoch (tests inject a fixed time).
        client_secret: the client's secret; only with one may the token be HMAC-signed.
        issuer_aliases: further accepted `iss` values (the preset's).

    Raises:
        LoginError: any check failed.
        TransportError: the JWKS could not be fetched.
    """
    if not isinstance(id_token, str) or not id_token:
        raise _fail("it is missing or not a string")
    header = _header(id_token)
    alg = header.get("alg")
    advertised: Collection[str] = (
        metadata.id_token_signing_alg_values_supported or _DEFAULT_ALGS
    )
    if isinstance(alg, str) and alg in HMAC_ALGS and client_secret:
        if alg not in advertised:
            raise _fail(f"it is signed with {alg!r}, which the provider does not advertise")
        claims = _verify_hmac(id_token, alg, client_secret)
    else:
        claims = _verify_with_jwks(id_token, header, metadata, http, advertised)
    _check_claims(
        claims,
        issuer=expected_issuers(metadata, claims, issuer_aliases),
        client_id=client_id,
        nonce=nonce,
        now=now(),
    )
    return claims


def _verify_with_jwks(
    id_token: str,
    header: Mapping[str, Any],
    metadata: ProviderMetadata,
    http: IdPHttp,
    advertised: Collection[str],
) -> dict[str, Any]:
    """Verify an asymmetrically signed ID token with the provider's JWKS; its claims."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGS:
        raise _fail(
            f"it is signed with {str(alg)[:20]!r}, not a public-key algorithm",
            hint="an HMAC-signed ID token can only be verified with the client secret;"
            " a public client needs asymmetrically signed ones"
            if isinstance(alg, str) and alg in HMAC_ALGS
            else "only asymmetrically signed ID tokens can be verified by a public client",
        )
    if alg not in advertised:
        raise _fail(f"it is signed with {alg!r}, which the provider does not advertise")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _fail("its 'kid' header is not a string")
    if not metadata.jwks_uri:
        raise _fail(
            "the provider advertises no jwks_uri to verify it with",
            hint="the provider's discovery document must name its jwks_uri",
        )

    with _jwks_lock:
        key_set = _jwks_cache.get(metadata.jwks_uri)
    fetched = False
    if key_set is None:
        key_set = _fetch_jwks(metadata.jwks_uri, http)
        fetched = True
    keys = _candidates(key_set, kid, alg)
    if not keys and not fetched:
        # Unknown kid: the provider may have rotated its keys since we cached them.
        keys = _candidates(_fetch_jwks(metadata.jwks_uri, http), kid, alg)
    if not keys:
        raise _fail("no key in the provider's JWKS matches its signature key")

    token: jwt.Token | None = None
    for key in keys:
        try:
            token = jwt.decode(id_token, key, algorithms=[alg])
            break
        except JoseError:
            continue
    if token is None:
        raise _fail(
            "its signature does not verify with the provider's keys",
            hint="the token may be forged; log in again",
        )
    return dict(token.claims)


def _verify_hmac(id_token: str, alg: str, client_secret: str) -> dict[str, Any]:
    """Verify an HMAC-signed ID token with the client secret (and nothing else: never a
    key of the JWKS, so a public key can never serve as an HMAC secret)."""
    secret = client_secret.encode("utf-8")
    if len(secret) < MIN_HMAC_SECRET_BYTES:
        raise _fail(
            f"it is signed with {alg}, and the client secret is too short to verify it"
            f" safely (under {MIN_HMAC_SECRET_BYTES} bytes)",
            hint="use a longer client secret, or have the provider sign with RS256",
        )
    try:
        key = OctKey.import_key(secret)
        token = jwt.decode(id_token, key, algorithms=[alg])
    except (JoseError, ValueError):
        raise _fail(
            "its signature does not verify with the client secret",
            hint="the token may be forged, or the client secret is wrong",
        ) from None
    return dict(token.claims)
