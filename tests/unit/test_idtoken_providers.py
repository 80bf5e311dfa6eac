"""Unit tests of the ID-token rules presets bring (`_idtoken`): Entra's multi-tenant
`{tenantid}` issuer checked against `tid`, Google's `accounts.google.com` alias, and
HS256 ID tokens verified with the client secret (never with a public key)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from oauth_auth import LoginError
from oauth_auth._discovery import ProviderMetadata
from oauth_auth._http import IdPHttp
from oauth_auth._idtoken import clear_jwks_cache, validate_id_token

ISSUER = "https://idp.test"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
SECRET = "a-client-secret-long-enough-0123456789"
TENANT = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490"
ENTRA = "https://login.microsoftonline.com"


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    clear_jwks_cache()
    yield
    clear_jwks_cache()


def _http() -> IdPHttp:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"keys": [KEY.as_dict(private=False)]})

    return IdPHttp(transport=httpx.MockTransport(handler))


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": ISSUER, "sub": "u1", "aud": "cli", "iat": now,
                              "exp": now + 600, "nonce": "N"}
    claims.update(over)
    return claims


def _rs(claims: dict[str, Any]) -> str:
    return jwt.encode({"alg": "RS256", "kid": "k1"}, claims, KEY)


def _meta(**over: Any) -> ProviderMetadata:
    fields: dict[str, Any] = {"issuer": ISSUER, "token_endpoint": f"{ISSUER}/token",
                              "jwks_uri": f"{ISSUER}/jwks"}
    fields.update(over)
    return ProviderMetadata(**fields)


def _validate(token: str, meta: ProviderMetadata, **kw: Any) -> dict[str, Any]:
    http = _http()
    try:
        return validate_id_token(token, metadata=meta, client_id="cli", nonce="N", http=http,
                                 **kw)
    finally:
        http.close()


def test_entra_template_takes_the_tokens_own_tid() -> None:
    meta = _meta(issuer=f"{ENTRA}/{{tenantid}}/v2.0", tenant_issuer_template=True)
    good = _rs(_claims(iss=f"{ENTRA}/{TENANT}/v2.0", tid=TENANT))
    assert _validate(good, meta)["tid"] == TENANT
    other = "82229342-1101-4ab6-817b-70c0747630f3"
    with pytest.raises(LoginError, match="issued by"):
        _validate(_rs(_claims(iss=f"{ENTRA}/{TENANT}/v2.0", tid=other)), meta)
    with pytest.raises(LoginError, match="tid"):
        _validate(_rs(_claims(iss=f"{ENTRA}/{TENANT}/v2.0")), meta)
    with pytest.raises(LoginError, match="tid"):
        _validate(_rs(_claims(iss=f"{ENTRA}/x/v2.0", tid="x")), meta)


def test_without_the_template_rule_the_issuer_is_exact() -> None:
    meta = _meta(issuer=f"{ENTRA}/{TENANT}/v2.0")
    with pytest.raises(LoginError, match="issued by"):
        _validate(_rs(_claims(iss=f"{ENTRA}/{{tenantid}}/v2.0", tid=TENANT)), meta)


def test_google_alias_only_when_the_preset_gives_it() -> None:
    token = _rs(_claims(iss="accounts.google.com"))
    assert _validate(token, _meta(), issuer_aliases=("accounts.google.com",))["sub"] == "u1"
    with pytest.raises(LoginError, match="issued by"):
        _validate(token, _meta())


def _hs(claims: dict[str, Any], key: bytes, alg: str = "HS256") -> str:
    return jwt.encode({"alg": alg}, claims, OctKey.import_key(key))


def test_hs256_is_verified_with_the_client_secret() -> None:
    meta = _meta(id_token_signing_alg_values_supported=("RS256", "HS256"))
    token = _hs(_claims(), SECRET.encode())
    assert _validate(token, meta, client_secret=SECRET)["sub"] == "u1"
    with pytest.raises(LoginError, match="client secret"):
        _validate(token, meta, client_secret=SECRET + "x")
    # claims are still checked
    with pytest.raises(LoginError, match="nonce"):
        _validate(_hs(_claims(nonce="other"), SECRET.encode()), meta, client_secret=SECRET)


def test_hs256_without_a_secret_or_not_advertised_is_refused() -> None:
    token = _hs(_claims(), SECRET.encode())
    with pytest.raises(LoginError, match="client secret"):
        _validate(token, _meta(id_token_signing_alg_values_supported=("HS256",)))
    with pytest.raises(LoginError, match="does not advertise"):
        _validate(token, _meta(), client_secret=SECRET)


def test_a_public_key_is_never_an_hmac_secret() -> None:
    # The classic confusion: HS256 keyed with the provider's public key, which anyone has.
    public_pem = KEY.as_pem(private=False)
    forged = jwt.encode({"alg": "HS256"}, _claims(),
                        OctKey.import_key(json.dumps(KEY.as_dict(private=False)).encode()))
    meta = _meta(id_token_signing_alg_values_supported=("RS256", "HS256"))
    with pytest.raises(LoginError):
        _validate(forged, meta)  # a public client: no HMAC at all
    with pytest.raises(LoginError, match="client secret"):
        _validate(forged, meta, client_secret=SECRET)
    assert b"PUBLIC KEY" in public_pem


def test_a_short_client_secret_is_not_used_for_hmac() -> None:
    meta = _meta(id_token_signing_alg_values_supported=("HS256",))
    with pytest.raises(LoginError, match="too short"):
        _validate(_hs(_claims(), b"short-secret-0"[:10] * 2), meta, client_secret="short")
