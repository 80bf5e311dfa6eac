"""Unit tests of ID token validation: tokens signed here with keys generated here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from oauth_auth._discovery import ProviderMetadata
from oauth_auth._http import IdPHttp
from oauth_auth._idtoken import CLOCK_SKEW, clear_jwks_cache, validate_id_token
from oauth_auth.errors import LoginError, TransportError

ISSUER = "https://idp.example.com"
JWKS_URI = f"{ISSUER}/jwks"
CLIENT = "cli"
NONCE = "n-0123456789"
NOW = 1_900_000_000.0

META = ProviderMetadata(
    issuer=ISSUER,
    token_endpoint=f"{ISSUER}/token",
    jwks_uri=JWKS_URI,
    id_token_signing_alg_values_supported=("RS256", "ES256"),
)

RSA = RSAKey.generate_key(2048, parameters={"kid": "r1", "use": "sig"})
EC = ECKey.generate_key("P-256", parameters={"kid": "e1"})
OTHER_RSA = RSAKey.generate_key(2048, parameters={"kid": "r1"})  # same kid, other key


class JWKSServer:
    """Serves a JWKS over httpx.MockTransport and counts fetches."""

    def __init__(self, *keys: Any) -> None:
        self.keys = list(keys)
        self.fetches = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url) == JWKS_URI
        self.fetches += 1
        doc = {"keys": [k.as_dict(private=False) for k in self.keys]}
        return httpx.Response(200, content=json.dumps(doc).encode())


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_jwks_cache()
    yield
    clear_jwks_cache()


@pytest.fixture
def jwks() -> JWKSServer:
    return JWKSServer(RSA, EC)


@pytest.fixture
def http(jwks: JWKSServer) -> Iterator[IdPHttp]:
    client = IdPHttp(transport=httpx.MockTransport(jwks.handler), sleep=lambda s: None)
    yield client
    client.close()


def claims(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user-1",
        "aud": CLIENT,
        "exp": NOW + 600,
        "iat": NOW - 5,
        "nonce": NONCE,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: Any = RSA, alg: str = "RS256", **header: Any) -> str:
    hdr = {"alg": alg, "kid": key.kid, **header}
    hdr = {k: v for k, v in hdr.items() if v is not None}
    return jwt.encode(hdr, payload, key, algorithms=[alg])


def check(token: str, http: IdPHttp, *, nonce: str | None = NONCE,
          meta: ProviderMetadata = META) -> dict[str, Any]:
    return validate_id_token(token, metadata=meta, client_id=CLIENT, nonce=nonce, http=http,
                             now=lambda: NOW)


def test_valid_rsa_and_ec_tokens(http: IdPHttp, jwks: JWKSServer) -> None:
    assert check(sign(claims()), http)["sub"] == "user-1"
    assert check(sign(claims(), EC, "ES256"), http)["sub"] == "user-1"
    assert jwks.fetches == 1  # cached across validations


def test_multiple_audiences_need_azp(http: IdPHttp) -> None:
    check(sign(claims(aud=[CLIENT, "api"], azp=CLIENT)), http)
    with pytest.raises(LoginError, match="authorized party"):
        check(sign(claims(aud=[CLIENT, "api"])), http)
    with pytest.raises(LoginError, match="authorized party"):
        check(sign(claims(aud=[CLIENT, "api"], azp="api")), http)


def test_skew_is_tolerated(http: IdPHttp) -> None:
    check(sign(claims(exp=NOW - CLOCK_SKEW + 5, iat=NOW + CLOCK_SKEW - 5)), http)


def test_device_grant_skips_only_the_nonce(http: IdPHttp) -> None:
    check(sign(claims(nonce=None)), http, nonce=None)
    with pytest.raises(LoginError, match="not meant for client"):
        check(sign(claims(nonce=None, aud="other")), http, nonce=None)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (claims(nonce="other"), "nonce"),
        (claims(nonce=None), "nonce"),
        (claims(aud="other-client"), "not meant for client"),
        (claims(aud=["a", "b"], azp="a"), "not meant for client"),
        (claims(aud=None), "aud"),
        (claims(iss="https://evil.example.com"), "issued by"),
        (claims(iss=ISSUER + "/"), "issued by"),
        (claims(exp=NOW - CLOCK_SKEW - 1), "expired"),
        (claims(exp=None), "exp"),
        (claims(exp="tomorrow"), "exp"),
        (claims(iat=NOW + CLOCK_SKEW + 60), "future"),
        (claims(iat=None), "iat"),
        (claims(sub=None), "sub"),
    ],
)
def test_bad_claims(payload: dict[str, Any], match: str, http: IdPHttp) -> None:
    token = sign(payload)
    with pytest.raises(LoginError, match=match) as info:
        check(token, http)
    assert info.value.error == "invalid_id_token"
    assert token not in str(info.value)
    assert token.split(".")[2] not in repr(info.value)


def test_wrong_signature(http: IdPHttp) -> None:
    with pytest.raises(LoginError, match="signature"):
        check(sign(claims(), OTHER_RSA), http)


def test_tampered_payload(http: IdPHttp) -> None:
    good = sign(claims()).split(".")
    evil = sign(claims(sub="admin"), OTHER_RSA).split(".")
    with pytest.raises(LoginError, match="signature"):
        check(".".join([good[0], evil[1], good[2]]), http)


def test_alg_none_is_refused(http: IdPHttp) -> None:
    import base64

    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    token = f"{b64({'alg': 'none'})}.{b64(claims())}."
    with pytest.raises(LoginError, match="public-key"):
        check(token, http)


def test_hmac_is_refused_even_with_the_client_id_as_secret(http: IdPHttp) -> None:
    key = OctKey.import_key(CLIENT.encode() * 8)
    token = jwt.encode({"alg": "HS256"}, claims(), key, algorithms=["HS256"])
    with pytest.raises(LoginError, match="public-key"):
        check(token, http)


def test_alg_must_be_advertised(http: IdPHttp) -> None:
    token = sign(claims(), RSA, "PS256")
    with pytest.raises(LoginError, match="does not advertise"):
        check(token, http)


def test_default_alg_is_rs256_when_nothing_advertised(http: IdPHttp) -> None:
    meta = ProviderMetadata(issuer=ISSUER, token_endpoint=f"{ISSUER}/token", jwks_uri=JWKS_URI)
    check(sign(claims()), http, meta=meta)
    with pytest.raises(LoginError, match="does not advertise"):
        check(sign(claims(), EC, "ES256"), http, meta=meta)


def test_key_type_must_match_alg(http: IdPHttp) -> None:
    # An RS256 header pointing at the EC key's kid: no candidate key.
    token = sign(claims(), RSA, "RS256", kid="e1")
    with pytest.raises(LoginError, match="no key"):
        check(token, http)


def test_unknown_kid_refetches_once(http: IdPHttp, jwks: JWKSServer) -> None:
    check(sign(claims()), http)
    assert jwks.fetches == 1
    rotated = RSAKey.generate_key(2048, parameters={"kid": "r2"})
    jwks.keys.append(rotated)
    check(sign(claims(), rotated), http)
    assert jwks.fetches == 2
    unknown = RSAKey.generate_key(2048, parameters={"kid": "r3"})
    with pytest.raises(LoginError, match="no key"):
        check(sign(claims(), unknown), http)
    assert jwks.fetches == 3  # one refetch, not a loop


def test_token_without_kid_uses_the_matching_key(http: IdPHttp) -> None:
    check(sign(claims(), RSA, "RS256", kid=None), http)


@pytest.mark.parametrize("token", ["", "not-a-jwt", "a.b", "a.b.c"])
def test_garbage(token: str, http: IdPHttp) -> None:
    with pytest.raises(LoginError):
        check(token, http)


def test_no_jwks_uri(http: IdPHttp) -> None:
    meta = ProviderMetadata(issuer=ISSUER, token_endpoint=f"{ISSUER}/token",
                            id_token_signing_alg_values_supported=("RS256",))
    with pytest.raises(LoginError, match="jwks_uri"):
        check(sign(claims()), http, meta=meta)


def test_jwks_without_usable_keys() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"keys": [{"kty": "oct", "k": "AAAA"}]})

    client = IdPHttp(transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(LoginError, match="no usable signing key"):
            check(sign(claims()), client)
    finally:
        client.close()


def test_jwks_unreachable_is_a_transport_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    client = IdPHttp(transport=httpx.MockTransport(handler), max_retries=0)
    try:
        with pytest.raises(TransportError):
            check(sign(claims()), client)
    finally:
        client.close()
