"""Provider calls go through the environment's proxy and trust its CA settings, as httpx's
`trust_env` reads them (HTTP_PROXY, HTTPS_PROXY, NO_PROXY, SSL_CERT_FILE): the real
oidc-provider (over HTTPS with a CA of the test's own, for SSL_CERT_FILE) and a real forward
proxy, both on 127.0.0.1 (tests/support/proxy.py).

NO_PROXY and no_proxy are cleared first: a CI environment often lists 127.0.0.1 and
localhost there, which would make the proxy bypassed and the test pass vacuously.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCParams, TransportError
from tests.support.idp import IdP, obtain_tokens
from tests.support.proxy import ForwardProxy

pytestmark = pytest.mark.idp

KEY = "PROXY_E2E"


def _session(idp: IdP) -> tuple[OAuthTokenSource, MemorySecrets]:
    tokens = obtain_tokens(idp)
    store = MemorySecrets()
    store.set_secret(KEY, tokens["refresh_token"])
    source = OAuthTokenSource(OIDCParams(idp.issuer, idp.client_id), key_provider=lambda: KEY,
                              secrets_provider=store)
    return source, store


def proxied_env(monkeypatch: pytest.MonkeyPatch, forward_proxy: ForwardProxy) -> ForwardProxy:
    """Point HTTP_PROXY at the proxy (after the bench seeded the session without it)."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy",
                 "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", forward_proxy.url)
    return forward_proxy


def test_refresh_goes_through_http_proxy(real_idp: IdP, forward_proxy: ForwardProxy,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    source, store = _session(real_idp)
    proxied_env(monkeypatch, forward_proxy)
    try:
        assert source.token()
    finally:
        source.close()
    seen = forward_proxy.seen
    assert ("GET", f"{real_idp.issuer}/.well-known/openid-configuration") in seen
    assert [s for s in seen if s == ("POST", f"{real_idp.issuer}/token")] == [
        ("POST", f"{real_idp.issuer}/token")]
    assert real_idp.token_requests("refresh_token") == 1
    assert store.get_secret(KEY)


def test_no_proxy_bypasses_it(real_idp: IdP, forward_proxy: ForwardProxy,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    source, _ = _session(real_idp)
    proxied_env(monkeypatch, forward_proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        assert source.token()
    finally:
        source.close()
    assert forward_proxy.seen == []
    assert real_idp.token_requests("refresh_token") == 1


# ---------------------------------------------------------------- SSL_CERT_FILE (trust_env)


def _ca_and_leaf(directory: Path) -> tuple[Path, str, str]:
    """A throwaway CA (written to ca.pem) and a certificate it issued for 127.0.0.1
    (PEM cert chain, PEM key): what a corporate CA looks like to a client."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oauth-auth bench CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(pem))
    key_pem = leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
    return ca_file, leaf.public_bytes(pem).decode(), key_pem


def test_ssl_cert_file_is_honoured_for_provider_calls(
        real_idp_factory: Callable[..., IdP], forward_proxy: ForwardProxy, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The real oidc-provider over HTTPS with a certificate from a CA of the test's own,
    trusted only through SSL_CERT_FILE, reached through HTTPS_PROXY (CONNECT): a refresh
    fails without SSL_CERT_FILE (keeping the refresh token) and works with it, as httpx's
    trust_env reads it."""
    ca_file, cert, key = _ca_and_leaf(tmp_path)
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    idp = real_idp_factory(tls_cert=cert, tls_key=key)
    assert idp.issuer.startswith("https://127.0.0.1:")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the bench's own client trusts it too
    tokens = obtain_tokens(idp)
    store = MemorySecrets({KEY: tokens["refresh_token"]})
    idp.reset_counts()
    proxied_env(monkeypatch, forward_proxy)
    monkeypatch.setenv("HTTPS_PROXY", forward_proxy.url)

    monkeypatch.delenv("SSL_CERT_FILE")
    untrusted = OAuthTokenSource(OIDCParams(idp.issuer, idp.client_id),
                                 key_provider=lambda: KEY, secrets_provider=store,
                                 max_retries=0)
    try:
        with pytest.raises(TransportError) as info:
            untrusted.token()
    finally:
        untrusted.close()
    assert "TLS certificate of the identity provider" in str(info.value), info.value
    assert "SSL_CERT_FILE" in info.value.hint
    assert store.get_secret(KEY) == tokens["refresh_token"]  # a TLS failure deletes nothing

    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    assert idp.token_requests("refresh_token", outcome=None) == 0  # never reached it
    trusted = OAuthTokenSource(OIDCParams(idp.issuer, idp.client_id),
                               key_provider=lambda: KEY, secrets_provider=store)
    try:
        token = trusted.token()
    finally:
        trusted.close()
    assert token
    assert idp.token_requests("refresh_token") == 1
    assert store.get_secret(KEY) not in (None, tokens["refresh_token"])  # rotated, stored
    port = idp.issuer.rsplit(":", 1)[1]
    tunnels = [target for method, target in forward_proxy.seen if method == "CONNECT"]
    assert tunnels
    assert set(tunnels) == {f"127.0.0.1:{port}"}
