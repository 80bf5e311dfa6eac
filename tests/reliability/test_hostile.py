"""Hostile input, property-based: every parser of outside data, fed what an attacker, a
broken provider or a corrupted file could send.

Two properties per parser:

1. nothing but the library's typed errors comes out (`OAuthAuthError` subclasses, and
   `StateMismatch` for a callback that is not ours, which by design only answers an error
   page and keeps the login waiting);
2. nothing is accepted that should not be: a callback yields a code only with our exact
   `state` (and the right `iss`), a discovery document parses only for our issuer and
   with https endpoints, an `_AT` entry only with a real timestamp, a token response only
   as a printable Bearer token with a sane lifetime, an ID token only when every claim
   checks out, a device authorization only with web URLs and a plain user code.

Examples are bounded (`max_examples` 200 at most, no deadline) and derandomized, so the
suite is fast and CI sees the same inputs on every run; set HYPOTHESIS_RANDOM=1 to explore.
Every example counts in the suite's figures (README "Reliability").
"""

from __future__ import annotations

import json
import math
import os
import socket
import string
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import RSAKey

from oauth_auth import (
    ConfigError,
    InvalidGrantError,
    LoginError,
    MemorySecrets,
    OAuthAuthError,
    OAuthError,
    OAuthTokenSource,
    OIDCParams,
    TransportError,
)
from oauth_auth._authorize import (
    StateMismatch,
    device_poll_action,
    parse_callback,
    parse_device_authorization,
)
from oauth_auth._config import Config
from oauth_auth._discovery import (
    ProviderMetadata,
    check_issuer_url,
    is_loopback_host,
    parse_metadata,
)
from oauth_auth._http import IdPHttp, _retry_after, oauth_error_from
from oauth_auth._idtoken import CLOCK_SKEW, clear_jwks_cache, validate_id_token
from oauth_auth._keys import same_url
from oauth_auth._loopback import CallbackServer
from oauth_auth._protocol import MAX_CHALLENGE_LENGTH, parse_bearer_challenges, should_retry_401
from oauth_auth._token import MAX_EXPIRES_IN, decode_at_entry, parse_token_response
from tests.reliability.conftest import FIGURES
from tests.support.fakes import ISSUER as FAKE_ISSUER
from tests.support.fakes import FakeClock, FakeProvider
from tests.support.servers import free_port

BOUNDED = settings(
    max_examples=200,
    deadline=None,
    derandomize=not os.environ.get("HYPOTHESIS_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SMALL = settings(BOUNDED, max_examples=100)

ISSUER = "https://idp.example.test"
STATE = "Qm9ndXMtc3RhdGUtMDEyMzQ1Njc4OWFiY2RlZmdoaWo"
CLIENT = "cli"
NOW = 1_900_000_000.0


def count(klass: str, outcome: str) -> None:
    FIGURES.add(klass, outcome)


def attempt(fn: Callable[[], Any], *errors: type[BaseException]) -> tuple[Any, Any]:
    """(result, None), or (None, the exception) when `fn` raised one of `errors`."""
    try:
        return fn(), None
    except errors as exc:
        return None, exc


# -------------------------------------------------------------------------- strategies

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=8,
)
# Text with the characters that break naive parsers: separators, quotes, controls, escapes.
nasty = st.text(
    alphabet=st.sampled_from(list('|=&;,"\\ \t\r\n\x00\x1b%+:/?#[]@!$\'()*<>{}^`~é€𝄞')
                             + list(string.ascii_letters + string.digits)),
    max_size=40,
)
anything = nasty | st.text(max_size=60)


# -------------------------------------------------------------------------- callback


callback_params = st.lists(
    st.tuples(
        st.sampled_from(["state", "code", "iss", "error", "error_description", "x"]),
        st.sampled_from([STATE, STATE + "x", STATE[:-1], "", ISSUER, ISSUER + "/",
                         "https://evil.test", "access_denied", "the-code"]) | anything,
    ),
    max_size=7,
)


def _query(pairs: list[tuple[str, str]], raw: bool) -> str:
    if raw:  # unencoded: separators inside values split them
        return "&".join(f"{k}={v}" for k, v in pairs)
    return urlencode(pairs)


@BOUNDED
@given(pairs=callback_params, raw=st.booleans(), junk=st.none() | anything,
       require_iss=st.booleans())
@example(pairs=[("state", STATE), ("code", "c")], raw=False, junk=None, require_iss=False)
@example(pairs=[("code", "c"), ("state", STATE), ("state", "evil")], raw=False, junk=None,
         require_iss=False)
@example(pairs=[("state", STATE), ("code", "c"), ("iss", "https://evil.test")], raw=False,
         junk=None, require_iss=False)
def test_callback_query_yields_a_code_only_when_it_is_ours(
    pairs: list[tuple[str, str]], raw: bool, junk: str | None, require_iss: bool
) -> None:
    query = junk if junk is not None else _query(pairs, raw)
    parsed = parse_qs(query, keep_blank_values=True)
    try:
        code = parse_callback(query, expected_state=STATE, issuer=ISSUER,
                              require_iss=require_iss)
    except StateMismatch:
        assert parsed.get("state") != [STATE]
        count("callback query string", "ignored as not ours (StateMismatch)")
        return
    except LoginError:
        assert parsed.get("state") == [STATE]
        count("callback query string", "LoginError (ours, but failed)")
        return
    assert parsed.get("state") == [STATE]
    assert parsed.get("code") == [code]
    assert code
    assert "error" not in parsed
    assert parsed.get("iss") in (([ISSUER],) if require_iss else (None, [ISSUER]))
    count("callback query string", "code returned: state and iss matched")


def test_loopback_server_survives_hostile_requests() -> None:
    """Raw requests, well-formed or not, to the callback server: none ends the login,
    none kills the server; then the real callback still works."""
    port = free_port()
    requests = st.builds(
        lambda method, target, extra: f"{method} {target} HTTP/1.1\r\n{extra}\r\n\r\n",
        st.sampled_from(["GET", "POST", "HEAD", "PUT", "FOO", "", "GET GET"]),
        st.sampled_from(["/callback?", "/callback", "/favicon.ico", "//x", "/callback/../"])
        .flatmap(lambda p: st.builds(lambda q: p + q, anything.map(
            lambda t: t.replace(" ", "%20").replace("\r", "").replace("\n", "")))),
        st.sampled_from(["", "Host: x\r\n", "Content-Length: 99999\r\n",
                         "Transfer-Encoding: chunked\r\n"]),
    ).map(lambda r: r.encode("utf-8", "surrogatepass")) | st.binary(max_size=200)

    with CallbackServer(host="127.0.0.1", port=port, state=STATE, issuer=ISSUER) as server:

        @SMALL
        @given(raw=requests)
        @example(raw=b"GET /callback?state=wrong&error=access_denied HTTP/1.1\r\n\r\n")
        @example(raw=b"GET /callback?state=" + STATE.encode() + b"&state=x&code=c HTTP/1.0\r\n\r\n")
        def fuzz(raw: bytes) -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(raw)
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(5)
                while conn.recv(65536):
                    pass
            # The one request above that carries our state once and a second state is
            # ours-but-broken: it ends the flow with a LoginError, by design.
            if server._done.is_set():
                assert server._error is not None
                assert server._code is None
                count("callback HTTP requests (raw)", "ours but malformed: LoginError")
                return
            count("callback HTTP requests (raw)", "answered, login still waiting")

        fuzz()


def test_loopback_server_serves_the_real_callback_after_junk() -> None:
    port = free_port()
    with CallbackServer(host="127.0.0.1", port=port, state=STATE, issuer=ISSUER) as server:
        for raw in (b"\x00\xff garbage\r\n\r\n",
                    b"GET /callback?state=nope&code=x HTTP/1.0\r\n\r\n",
                    b"GET //[::1/callback HTTP/1.0\r\n\r\n",
                    b"GET /favicon.ico HTTP/1.0\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.sendall(raw)
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):
                    pass
        response = httpx.get(f"http://127.0.0.1:{port}/callback",
                             params={"state": STATE, "code": "the-code"}, timeout=5)
        assert response.status_code == 200
        assert server.wait(deadline=time.monotonic() + 5) == "the-code"


# -------------------------------------------------------------------------- token responses

token_docs = st.fixed_dictionaries(
    {},
    optional={
        "access_token": st.sampled_from(["tok-123", " ", "a|b", "a\nb", "\x1b[31m"])
        | anything | json_values,
        "token_type": st.sampled_from(["Bearer", "bearer", "BEARER", "DPoP", "mac", "", " Bearer"])
        | json_values,
        "expires_in": st.sampled_from([0, -1, 1, 3600, "3600", " 60 ", "1e3", "inf", "nan",
                                       10**400, -(10**400), 1e308, float("inf"), True])
        | json_values,
        "refresh_token": anything | json_values,
        "id_token": anything | json_values,
        "scope": anything | json_values,
    },
).flatmap(lambda d: st.dictionaries(st.text(max_size=6), json_values, max_size=2)
          .map(lambda extra: {**extra, **d}))


@BOUNDED
@given(doc=token_docs, previous=st.none() | st.just("previous-refresh"))
def test_token_response_accepts_only_a_usable_bearer_token(
    doc: dict[str, Any], previous: str | None
) -> None:
    token, exc = attempt(lambda: parse_token_response(doc, NOW, previous_refresh_token=previous),
                         OAuthError)
    if exc is not None:
        assert exc.error == "invalid_response"
        assert exc.hint
        count("token response", "refused: OAuthError(invalid_response)")
        return
    access = doc["access_token"]
    assert token.access_token == access
    assert isinstance(access, str)
    assert access.strip()
    assert access.isprintable()
    assert not set(access) & set("|\r\n")
    assert isinstance(doc.get("token_type"), str)
    assert doc["token_type"].lower() == "bearer"
    if token.expiry is None:
        assert doc.get("expires_in") is None
    else:
        assert NOW < token.expiry <= NOW + MAX_EXPIRES_IN
    rt = doc.get("refresh_token")
    assert token.refresh_token == (rt if isinstance(rt, str) and rt else previous)
    count("token response", "accepted: printable Bearer token, lifetime in (0, 10 y]")


@BOUNDED
@given(doc=st.dictionaries(st.sampled_from(["error", "error_description", "error_uri", "x"]),
                           anything | json_values, max_size=4),
       status=st.integers(min_value=400, max_value=599))
@example(doc={"error": "invalid_grant", "error_description": "\x1b]0;pwned\x07\x1b[2J"},
         status=400)
def test_oauth_error_documents(doc: dict[str, Any], status: int) -> None:
    exc = oauth_error_from(doc, status)
    assert isinstance(exc, OAuthError)
    assert isinstance(exc, InvalidGrantError) == (doc.get("error") == "invalid_grant")
    # What a provider says ends up on the user's terminal: no control characters
    # (terminal escape sequences), bounded length.
    for text in (exc.error, exc.description, exc.error_uri, str(exc)):
        assert text.isprintable(), repr(text)
    assert len(exc.error) <= 100
    assert len(exc.description) <= 500
    count("OAuth error responses", "OAuthError with printable, bounded fields")


@BOUNDED
@given(value=st.none() | st.text(max_size=40) | st.sampled_from(
    ["²", "١٢", "9" * 400, "Wed, 21 Oct 2015 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00",
     "-1", "1.5", " 3 "]))
def test_retry_after_header(value: str | None) -> None:
    wait = _retry_after(value, NOW)
    assert wait is None or (isinstance(wait, float) and wait >= 0 and not math.isnan(wait))
    count("Retry-After header", "None or a non-negative delay")


# -------------------------------------------------------------------------- discovery

issuers = st.sampled_from([ISSUER, "http://127.0.0.1:8080", "http://localhost:9000/realms/x"])
endpoint_values = st.sampled_from([
    "https://idp.example.test/token", "http://127.0.0.1:8080/token",
    "http://idp.example.test/token", "https://[x", "http://[::1]:1/t", "ftp://x/y",
    "https://", "//idp.example.test/token", "javascript:alert(1)", "",
]) | anything | json_values
_METADATA_HOSTILE = {
    "issuer": st.one_of(issuers, issuers.map(lambda i: i + "/"),
                        st.just("https://evil.example.test"), anything, json_values),
    "token_endpoint": endpoint_values,
    "authorization_endpoint": endpoint_values,
    "jwks_uri": endpoint_values,
    "device_authorization_endpoint": endpoint_values,
    "revocation_endpoint": endpoint_values,
    "code_challenge_methods_supported": json_values,
    "authorization_response_iss_parameter_supported": json_values,
    "id_token_signing_alg_values_supported": json_values,
}


def _valid_metadata(issuer: str) -> dict[str, Any]:
    base = issuer.rstrip("/")
    return {"issuer": issuer, "token_endpoint": f"{base}/token",
            "authorization_endpoint": f"{base}/auth", "jwks_uri": f"{base}/jwks",
            "code_challenge_methods_supported": ["S256"]}


def _metadata_case(expected: str) -> st.SearchStrategy[tuple[dict[str, Any], str]]:
    """A valid document for `expected`, with some members replaced or dropped."""
    return st.tuples(
        st.dictionaries(st.sampled_from(sorted(_METADATA_HOSTILE)), st.none(), max_size=3)
        .flatmap(lambda keys: st.fixed_dictionaries(
            {k: _METADATA_HOSTILE[k] for k in keys})),
        st.sets(st.sampled_from(["issuer", "token_endpoint", "jwks_uri"]), max_size=1),
    ).map(lambda change: ({k: v for k, v in {**_valid_metadata(expected), **change[0]}.items()
                           if k not in change[1]}, expected))


metadata_cases = issuers.flatmap(_metadata_case)


@BOUNDED
@given(case=metadata_cases)
@example(case=({"issuer": "https://evil.example.test",
                "token_endpoint": "https://evil.example.test/token"}, ISSUER))
@example(case=({"issuer": ISSUER, "token_endpoint": "https://[x"}, ISSUER))
def test_discovery_document_parses_only_for_our_issuer(
    case: tuple[dict[str, Any], str],
) -> None:
    doc, expected = case
    meta, exc = attempt(lambda: parse_metadata(doc, expected), ConfigError)
    if exc is not None:
        assert isinstance(exc, OAuthAuthError)
        count("discovery document", "refused: ConfigError")
        return
    assert isinstance(doc["issuer"], str)
    assert same_url(meta.issuer, expected)
    loopback = is_loopback_host(urlsplit(expected).hostname)
    for name in ("token_endpoint", "authorization_endpoint", "jwks_uri",
                 "device_authorization_endpoint", "revocation_endpoint"):
        value = getattr(meta, name)
        if value:
            assert urlsplit(value).scheme == "https" or (loopback and value.startswith("http:"))
            assert urlsplit(value).hostname
    assert meta.token_endpoint
    count("discovery document", "accepted: our issuer, https (or loopback) endpoints")


@BOUNDED
@given(issuer=anything | issuers | st.sampled_from(
    ["https://[x", "http://evil.test", "https://idp.test?x=1", "https://idp.test#f",
     "https://user@idp.test", "HTTPS://IDP.TEST", "https://idp.test:99999"]))
def test_configured_issuer_url_check(issuer: str) -> None:
    try:
        check_issuer_url(issuer)
    except ConfigError:
        count("issuer URL (config)", "refused: ConfigError")
        return
    parts = urlsplit(issuer)
    assert parts.scheme == "https" or is_loopback_host(parts.hostname)
    count("issuer URL (config)", "accepted: https or loopback http")


# -------------------------------------------------------------------------- _AT entries

stamps = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31),
                 timezones=st.none() | st.timezones() | st.just(timezone.utc))
    .map(lambda d: d.isoformat()),
    st.datetimes(min_value=datetime(1960, 1, 1), max_value=datetime(2200, 1, 1))
    .map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.sampled_from(["2026-11-28T22:15:03Z", "2026-11-28T22:15:03+00:00",
                     "2026-11-28T22:15:03.123456789Z", "2026-11-28", "2026-11-28T22:15:03",
                     "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59",
                     "1970-01-01T00:00:00Z", "2026-W48-6T22:15:03Z", "z", ""]),
    anything,
)
at_entries = st.one_of(
    st.builds(lambda t, s: f"{t}|{s}", anything, stamps),
    st.builds(lambda t, s: f"{t}|{s}", st.sampled_from(["tok", "", "a|b", "\x1b"]), stamps),
    anything,
)


def _instant(stamp: str) -> float | None:
    """The oracle: an RFC 3339-like timestamp WITH an offset, as an epoch; else None."""
    stamp = stamp.strip()
    if not stamp:
        return None
    try:
        when = datetime.fromisoformat(stamp[:-1] + "+00:00" if stamp[-1] in "Zz" else stamp)
    except ValueError:
        return None
    if when.utcoffset() is None:
        return None
    return when.timestamp()


@BOUNDED
@given(value=st.none() | at_entries)
def test_at_entry_is_accepted_only_with_a_real_timestamp(value: str | None) -> None:
    token = decode_at_entry(value)
    if token is None:
        count("_AT cache entry", "ignored (None)")
        return
    assert value is not None
    access, _, stamp = value.rpartition("|")
    assert token.access_token == access
    assert access
    assert access.isprintable()
    assert "|" not in access
    instant = _instant(stamp)
    assert instant is not None, f"accepted without an offset-bearing timestamp: {stamp!r}"
    assert token.expiry == instant
    assert instant >= datetime(1971, 1, 1, tzinfo=timezone.utc).timestamp() - 86400
    count("_AT cache entry", "accepted: token and an instant with an offset")


def _entry_expiring_in(token: str, seconds: int) -> str:
    when = datetime.fromtimestamp(NOW, timezone.utc) + timedelta(seconds=seconds)
    return f"{token}|{when.strftime('%Y-%m-%dT%H:%M:%SZ')}"


@SMALL
@given(value=at_entries | st.builds(
    _entry_expiring_in, st.sampled_from(["shared-token", "x y", "\x00"]),
    st.integers(-100, 100) | st.just(31)))
def test_tier2_serves_an_entry_only_while_it_is_fresh(tmp_path_factory: Any,
                                                      value: str) -> None:
    provider = FakeProvider()
    store = MemorySecrets({"K": provider.seed("rt-0"), "K_AT": value})
    source = OAuthTokenSource(OIDCParams(FAKE_ISSUER, "cli"), key_provider=lambda: "K",
                              secrets_provider=store, transport=provider.transport(),
                              clock=FakeClock(NOW),
                              lock_dir=tmp_path_factory.getbasetemp() / "hostile-locks")
    token = source.token()
    cached = decode_at_entry(value)
    if token == "at-1":
        assert provider.counts["refresh"] == 1
        count("_AT cache entry (tier 2)", "not served: refreshed instead")
        return
    assert cached is not None
    assert token == cached.access_token
    assert cached.expiry is not None
    assert cached.expiry - 30 > NOW  # more than the preemptive window left
    assert provider.counts["refresh"] == 0
    count("_AT cache entry (tier 2)", "served: more than the 30 s window left")


# -------------------------------------------------------------------------- WWW-Authenticate

token68 = st.text(alphabet=string.ascii_letters + string.digits + "-._~+/", min_size=1,
                  max_size=12)
param_value = token68 | st.text(max_size=20).map(
    lambda t: '"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"')
challenge = st.builds(
    lambda scheme, params: scheme + (" " + ", ".join(f"{k}={v}" for k, v in params)
                                     if params else ""),
    st.sampled_from(["Bearer", "bearer", "Basic", "DPoP", "Negotiate"]),
    st.lists(st.tuples(st.sampled_from(["realm", "error", "scope", "error_description"]),
                       param_value), max_size=3),
)
headers = st.lists(st.lists(challenge, min_size=1, max_size=3).map(", ".join) | anything,
                   max_size=3)


@BOUNDED
@given(values=headers, status=st.sampled_from([200, 401, 403, 500]))
def test_www_authenticate_never_raises(values: list[str], status: int) -> None:
    found = parse_bearer_challenges(values)
    assert all(isinstance(v, str) for c in found for v in c.params.values())
    retry = should_retry_401(status, values)
    assert isinstance(retry, bool)
    if status != 401:
        assert retry is False
    count("WWW-Authenticate header", "parsed; retry decision is a bool")


@BOUNDED
@given(before=st.lists(challenge, max_size=2), after=st.lists(challenge, max_size=2),
       extra=st.lists(st.tuples(st.sampled_from(["realm", "scope"]), param_value), max_size=2))
def test_insufficient_scope_is_never_retried(before: list[str], after: list[str],
                                             extra: list[tuple[str, str]]) -> None:
    params = ", ".join([*(f"{k}={v}" for k, v in extra), 'error="insufficient_scope"'])
    header = ", ".join([*before, f"Bearer {params}", *after])
    assert should_retry_401(401, [header]) is False
    count("WWW-Authenticate header", "insufficient_scope: never retried")


def test_www_authenticate_worst_case_is_fast() -> None:
    for header in ('Bearer ' + 'a="' + "\\" * (MAX_CHALLENGE_LENGTH - 12),
                   "Bearer " + "a=b, " * (MAX_CHALLENGE_LENGTH // 5 - 2),
                   'Bearer a="' + "x" * (MAX_CHALLENGE_LENGTH - 11),
                   "B " * (MAX_CHALLENGE_LENGTH // 2)):
        started = time.perf_counter()
        parse_bearer_challenges([header])
        assert time.perf_counter() - started < 0.25
    count("WWW-Authenticate header", "8 KiB worst cases parse in < 250 ms")


# -------------------------------------------------------------------------- device grant

_DEVICE_HOSTILE = {
    "device_code": anything | json_values,
    "user_code": st.sampled_from(["ABCD-EFGH", "\x1b]0;x\x07", "a" * 65, ""]) | anything
    | json_values,
    "verification_uri": st.sampled_from(["https://idp.test/device", "http://[x", "ftp://x",
                                         "https://idp.test/\x1b[2J", "javascript:x"])
    | anything | json_values,
    "verification_uri_complete": st.sampled_from(["https://idp.test/d?c=1", "http://[x"])
    | anything | json_values,
    "expires_in": json_values,
    "interval": json_values,
}
device_docs = st.tuples(
    st.dictionaries(st.sampled_from(sorted(_DEVICE_HOSTILE)), st.none(), max_size=3)
    .flatmap(lambda keys: st.fixed_dictionaries({k: _DEVICE_HOSTILE[k] for k in keys})),
    st.sets(st.sampled_from(["device_code", "user_code", "verification_uri"]), max_size=1),
).map(lambda change: {k: v for k, v in {
    "device_code": "dev-code-123", "user_code": "WDJB-MJHT",
    "verification_uri": "https://idp.test/device", "expires_in": 600, "interval": 5,
    **change[0]}.items() if k not in change[1]})


@BOUNDED
@given(doc=device_docs)
@example(doc={"device_code": "d", "user_code": "ABCD", "verification_uri": "http://[x"})
def test_device_authorization_accepts_only_web_urls_and_plain_codes(doc: dict[str, Any]) -> None:
    try:
        auth = parse_device_authorization(doc)
    except LoginError:
        count("device authorization response", "refused: LoginError")
        return
    assert auth.device_code
    assert 0 < len(auth.user_code) <= 64
    assert set(auth.user_code) <= set(string.ascii_letters + string.digits + "-_ .")
    for url in (auth.verification_uri, auth.verification_uri_complete):
        if url:
            assert url.isprintable()
            assert urlsplit(url).scheme in ("https", "http")
            assert urlsplit(url).hostname
    assert auth.interval > 0
    count("device authorization response", "accepted: web URLs, plain user code")


@BOUNDED
@given(error=anything, description=anything)
@example(error="authorization_pending", description="")
@example(error="slow_down", description="\x1b[2J")
def test_device_poll_errors(error: str, description: str) -> None:
    _, exc = attempt(lambda: device_poll_action(error, description), LoginError)
    if exc is not None:
        assert str(exc).isprintable()
        count("device poll answer", "LoginError (printable)")
        return
    assert error in ("authorization_pending", "slow_down")
    count("device poll answer", "keep polling")


# -------------------------------------------------------------------------- ID tokens

RSA = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig"})
JWKS_URI = f"{ISSUER}/jwks"
META = ProviderMetadata(issuer=ISSUER, token_endpoint=f"{ISSUER}/token", jwks_uri=JWKS_URI,
                        id_token_signing_alg_values_supported=("RS256",))
NONCE = "nonce-0123456789"


def _jwks_http() -> IdPHttp:
    doc = {"keys": [RSA.as_dict(private=False)]}
    return IdPHttp(transport=httpx.MockTransport(
        lambda r: httpx.Response(200, content=json.dumps(doc).encode())), max_retries=0)


claim_values: dict[str, Any] = {
    "iss": st.sampled_from([ISSUER, ISSUER + "/", "https://evil.test"]) | json_values,
    "aud": st.sampled_from([CLIENT, [CLIENT], [CLIENT, "other"], "other", []]) | json_values,
    "azp": st.sampled_from([CLIENT, "other"]) | json_values,
    "sub": st.sampled_from(["alice", ""]) | json_values,
    "exp": st.sampled_from([NOW + 3600, NOW - CLOCK_SKEW - 1, NOW - CLOCK_SKEW + 1, True])
    | json_values,
    "iat": st.sampled_from([NOW, NOW + CLOCK_SKEW + 1, NOW + CLOCK_SKEW - 1]) | json_values,
    "nonce": st.sampled_from([NONCE, NONCE + "x", ""]) | json_values,
}
claims_strategy = st.fixed_dictionaries(
    {k: v for k, v in claim_values.items() if k in ("iss", "aud", "sub", "exp", "iat", "nonce")},
    optional={"azp": claim_values["azp"]},
).flatmap(lambda d: st.sets(st.sampled_from(sorted(d)), max_size=2)
          .map(lambda drop: {k: v for k, v in d.items() if k not in drop}))


def _should_accept(c: dict[str, Any]) -> bool:
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    aud = c.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    return (
        c.get("iss") == ISSUER
        and isinstance(audiences, list) and all(isinstance(a, str) for a in audiences)
        and CLIENT in audiences
        and ((len(audiences) == 1 and "azp" not in c) or c.get("azp") == CLIENT)
        and isinstance(c.get("sub"), str) and bool(c["sub"])
        and number(c.get("exp")) and c["exp"] + CLOCK_SKEW > NOW
        and number(c.get("iat")) and c["iat"] - CLOCK_SKEW <= NOW
        and c.get("nonce") == NONCE
    )


@BOUNDED
@given(claims=claims_strategy)
@example(claims={"iss": ISSUER, "aud": CLIENT, "sub": "alice", "exp": NOW + 60, "iat": NOW,
                 "nonce": NONCE})
def test_signed_id_token_is_accepted_only_when_every_claim_checks_out(
    claims: dict[str, Any],
) -> None:
    try:
        token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, RSA)
    except (ValueError, TypeError, OverflowError):
        return  # not encodable as a JWT at all (NaN, huge ints): nothing to send
    clear_jwks_cache()
    http = _jwks_http()
    try:
        validate_id_token(token, metadata=META, client_id=CLIENT, nonce=NONCE, http=http,
                          now=lambda: NOW)
    except LoginError:
        assert not _should_accept(claims), claims
        count("ID token (signed, hostile claims)", "refused: LoginError")
        return
    finally:
        http.close()
    assert _should_accept(claims), claims
    count("ID token (signed, hostile claims)", "accepted: every claim checks out")


garbage_tokens = st.one_of(
    anything,
    st.lists(st.text(alphabet=string.ascii_letters + string.digits + "-_=", max_size=40),
             min_size=1, max_size=5).map(".".join),
    st.builds(lambda h, p: _b64(h) + "." + _b64(p) + ".c2ln", json_values.map(json.dumps),
              json_values.map(json.dumps)),
    st.builds(lambda h: _b64(h) + ".e30.c2ln", st.fixed_dictionaries(
        {"alg": st.sampled_from(["none", "HS256", "RS256", "ES256", "XYZ"]) | json_values},
        optional={"kid": json_values, "crit": json_values, "b64": json_values})
        .map(json.dumps)),
)


def _b64(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@BOUNDED
@given(token=garbage_tokens)
def test_garbage_id_tokens_are_login_errors(token: str) -> None:
    clear_jwks_cache()
    http = _jwks_http()
    try:
        validate_id_token(token, metadata=META, client_id=CLIENT, nonce=NONCE, http=http,
                          now=lambda: NOW)
    except (LoginError, TransportError):
        count("ID token (garbage)", "refused: LoginError")
        return
    finally:
        http.close()
    raise AssertionError(f"accepted a garbage ID token: {token!r}")


# -------------------------------------------------------------------------- the config file

_ENTRY_FIELDS = ("issuer", "client_id", "audience", "scopes", "callback_port",
                 "cached_refresh_token_ref", "cached_token_expiry")
config_docs = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from([1, 2, 0, -1, True, "1"]) | json_values,
        "profiles": st.dictionaries(st.text(max_size=8), st.fixed_dictionaries(
            {}, optional=dict.fromkeys(_ENTRY_FIELDS, json_values | anything)), max_size=3)
        | json_values,
        "registries": json_values,
        "llm_gateways": json_values,
    },
).flatmap(lambda d: st.dictionaries(st.text(max_size=6), json_values, max_size=2)
          .map(lambda extra: {**extra, **d}))


@BOUNDED
@given(content=st.one_of(
    config_docs.map(lambda d: json.dumps(d).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.sampled_from([b"", b"\xff\xfe", b"{", b'{"version": 1e999}', b"[" * 5_000,
                     b'{"profiles": {"p": {"callback_port": 1' + b"0" * 400 + b"}}}"]),
))
def test_config_file_loads_or_says_why(tmp_path_factory: Any, content: bytes) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_bytes(content)
    config = Config(path)
    doc, exc = attempt(config.load, ConfigError)
    if exc is not None:
        assert str(path) in str(exc)
        assert exc.hint
        count("config file", "refused: ConfigError naming the file")
        return
    for section in ("profiles", "registries", "llm_gateways"):
        assert isinstance(doc[section], dict)
        for entry in doc[section].values():
            assert isinstance(entry, dict)
            for field in ("issuer", "client_id", "audience"):
                assert entry.get(field) is None or isinstance(entry[field], str)
            port = entry.get("callback_port")
            assert port is None or (isinstance(port, int) and 0 <= port <= 65535)
    count("config file", "loaded: every field of the expected type")


# -------------------------------------------------------------------------- JSON from the IdP

def _raw_http(body: bytes, status: int = 200, headers: dict[str, str] | None = None
              ) -> Callable[[], Any]:
    http = IdPHttp(transport=httpx.MockTransport(
        lambda r: httpx.Response(status, content=body, headers=headers or {})),
        max_retries=1, sleep=lambda s: None)
    return lambda: http.post_form("https://idp.example.test/token", {"grant_type": "x"})


@BOUNDED
@given(body=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
       status=st.sampled_from([200, 201, 400, 401, 404, 429, 500, 503]),
       retry_after=st.none() | st.text(max_size=12) | st.sampled_from(["²", "1", "-5"]))
def test_token_endpoint_answers_raise_only_typed_errors(body: bytes, status: int,
                                                        retry_after: str | None) -> None:
    headers = {"Retry-After": retry_after.encode("utf-8").decode("latin-1")} if retry_after \
        else None
    try:
        _, doc = _raw_http(body, status, headers)()
    except (OAuthError, TransportError):
        count("token endpoint HTTP answer", "typed error")
        return
    except UnicodeEncodeError:
        return  # a header httpx itself cannot send: nothing reached the library
    assert isinstance(doc, dict)
    assert status < 400
    count("token endpoint HTTP answer", "a JSON object")
