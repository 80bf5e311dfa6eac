"""Faults against the real provider (oidc-provider's fault injection) and real backends.

For every fault class of issue 9 the caller must get a typed `OAuthAuthError` naming the
cause, with a hint, within the configured time; the stored refresh token must still be
there afterwards (unless the provider said `invalid_grant`); and the next call after the
fault clears must work from the stored session, without a new login (the provider's counts
show no authorization_code grant). Retries are bounded, back off, and honour Retry-After.

Times: every source here uses `http_timeout=2` and `max_retries=1` unless the test says
otherwise; the library's backoff is 0.5 s, doubled per retry.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import pytest

from oauth_auth import (
    InvalidGrantError,
    OAuthError,
    TransportError,
)
from oauth_auth._token import MAX_EXPIRES_IN
from tests.reliability.conftest import (
    Figures,
    Session,
    assert_typed,
    logins,
    recover,
    timed,
)
from tests.support.idp import refresh_count
from tests.support.servers import free_port

pytestmark = pytest.mark.idp

TOKEN = "/token"
DISCOVERY = "/.well-known/openid-configuration"
#: Slack allowed over a computed time bound (scheduling, the provider's own latency).
SLACK = 0.75


def faults_served(session: Session, path: str = TOKEN) -> int:
    return int(session.idp.counts().get("faults", {}).get(path, 0))


# ------------------------------------------------------------------ 5xx and 429 answers


@pytest.mark.parametrize(("status", "retries"), [(500, 2), (502, 1), (503, 1), (504, 1), (429, 1)])
def test_persistent_5xx_or_429_is_a_bounded_transport_error(
    session: Session, figures: Figures, status: int, retries: int
) -> None:
    session.idp.inject_fault(TOKEN, status=status, count=10)
    source = session.source(max_retries=retries)

    exc, elapsed = timed(source.token)

    assert_typed(exc, TransportError, f"HTTP {status}")
    assert exc.status_code == status
    assert exc.retryable
    assert faults_served(session) == 1 + retries  # bounded: one call and its retries
    backoff = sum(0.5 * 2**i for i in range(retries))  # 0.5 s, then 1 s: really waited
    assert backoff <= elapsed < backoff + SLACK, elapsed
    assert session.stored() == session.refresh_token
    recover(session, source)
    figures.add(f"token endpoint {status}",
                f"TransportError after 1+{retries} attempts in {elapsed:.2f} s; session kept")


@pytest.mark.parametrize("status", [500, 503, 429])
def test_one_transient_5xx_or_429_is_retried_transparently(
    session: Session, figures: Figures, status: int
) -> None:
    session.idp.inject_fault(TOKEN, status=status, count=1)
    source = session.source(max_retries=2)

    token, elapsed = timed(source.token)

    assert isinstance(token, str), token
    assert session.active(token)
    assert faults_served(session) == 1
    assert refresh_count(session.idp.counts()) == 1
    assert 0.5 <= elapsed < 0.5 + SLACK
    assert logins(session.idp) == 0
    figures.add(f"token endpoint {status}",
                "one transient answer: retried after 0.5 s, token served", cases=1)


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_503_with_retry_after_is_honoured(session: Session, figures: Figures,
                                          form: str) -> None:
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    value = "1" if form == "seconds" else when
    session.idp.inject_fault(TOKEN, status=503, headers={"Retry-After": value}, count=1)
    source = session.source(max_retries=1)

    token, elapsed = timed(source.token)

    assert isinstance(token, str), token
    assert faults_served(session) == 1
    assert refresh_count(session.idp.counts()) == 1
    # Retry-After (1 s; or a date 1-2 s ahead, whole seconds) beats the 0.5 s backoff
    assert 0.9 <= elapsed < 2 + SLACK, elapsed
    figures.add("token endpoint 503 + Retry-After",
                "waited as told (delta-seconds and HTTP-date), then served", cases=1,
                waited_s=round(elapsed, 2))


def test_503_with_a_retry_after_too_long_gives_up_at_once(session: Session,
                                                          figures: Figures) -> None:
    session.idp.inject_fault(TOKEN, status=503, headers={"Retry-After": "3600"}, count=5)
    source = session.source(max_retries=2)

    exc, elapsed = timed(source.token)

    assert_typed(exc, TransportError, "HTTP 503")
    assert faults_served(session) == 1
    assert elapsed < SLACK
    assert session.stored() == session.refresh_token
    recover(session, source)
    figures.add("token endpoint 503 + Retry-After",
                "Retry-After beyond 30 s: TransportError at once, no retry; session kept")


def test_persistent_503_with_retry_after_is_bounded(session: Session,
                                                    figures: Figures) -> None:
    session.idp.inject_fault(TOKEN, status=503, headers={"Retry-After": "1"}, count=10)
    source = session.source(max_retries=1)

    exc, elapsed = timed(source.token)

    assert_typed(exc, TransportError, "HTTP 503")
    assert faults_served(session) == 2
    assert 1.0 <= elapsed < 1.0 + SLACK  # max(backoff 0.5 s, Retry-After 1 s)
    recover(session, source)
    figures.add("token endpoint 503 + Retry-After",
                "persistent: 1+1 attempts, Retry-After honoured; then TransportError;"
                " session kept")


# ------------------------------------------------------------------ timeouts


def test_timeout_when_the_provider_hangs(session: Session, figures: Figures) -> None:
    """A provider (or proxy) that holds the request past http_timeout without acting on it:
    one attempt (a POST is never replayed after a timeout), then TransportError."""
    session.idp.inject_fault(TOKEN, delay_ms=3000, status=504, count=1)
    source = session.source(http_timeout=1.0, max_retries=2)

    exc, elapsed = timed(source.token)

    assert_typed(exc, TransportError, "did not answer within 1 s")
    assert 1.0 <= elapsed < 1.0 + SLACK, elapsed  # not retried: that would be 2 s more
    assert session.stored() == session.refresh_token
    recover(session, source)
    figures.add("timeout (slow response past http_timeout)",
                f"TransportError after {elapsed:.2f} s (http_timeout 1 s), POST not replayed;"
                " session kept")


def _answer_lost(session: Session, *, rotate: bool) -> tuple[Any, Any]:
    """Refresh through a relay that delivers the request and loses the provider's answer;
    then, the relay healed, call again. Returns (first outcome, second outcome)."""
    from tests.reliability._net import RoutedTransport, TcpProxy

    session.idp.configure(rotate_refresh_token=rotate)
    port = int(session.idp.issuer.rsplit(":", 1)[1])
    proxy = TcpProxy(port)
    try:
        source = session.source(transport=RoutedTransport(port, proxy.port), http_timeout=1.0)
        proxy.swallow_answers = False
        from oauth_auth._discovery import discover

        discover(session.idp.issuer, source._http())  # discovery through the relay, intact
        proxy.swallow_answers = True
        first, elapsed = timed(source.token)
        assert elapsed < 1.0 + SLACK
        assert refresh_count(session.idp.counts()) == 1  # the provider did act on it
        proxy.swallow_answers = False
        proxy.stop()  # cut the poisoned connections
        proxy.start()
        second, _ = timed(source.token)
    finally:
        proxy.close()
    return first, second


def test_answer_lost_after_the_provider_rotated_is_the_unavoidable_window(
    session: Session, figures: Figures
) -> None:
    """The provider rotates the refresh token but its answer never arrives (a relay lost
    it; the client times out). The new refresh token exists only at the provider and the
    stored one is spent: no client can keep this session (the same window as a kill -9
    between the provider's answer and the write). The library must say so with
    InvalidGrantError and drop the dead token, not loop or hang."""
    first, second = _answer_lost(session, rotate=True)
    assert_typed(first, TransportError, "did not answer within 1 s")
    assert_typed(second, InvalidGrantError)
    assert session.stored() is None
    assert logins(session.idp) == 0
    figures.add("answer lost after the provider acted (rotation on)",
                "TransportError, then InvalidGrantError: session lost (unavoidable window)")


def test_answer_lost_without_rotation_keeps_the_session(session: Session,
                                                        figures: Figures) -> None:
    first, second = _answer_lost(session, rotate=False)
    assert_typed(first, TransportError, "did not answer within 1 s")
    assert isinstance(second, str), second
    assert session.active(second)
    assert session.stored() == session.refresh_token
    assert logins(session.idp) == 0
    figures.add("answer lost after the provider acted (rotation off)",
                "TransportError, then the next call refreshes: session kept")


# ------------------------------------------------------------------ connections


def test_connection_refused_provider_stopped(real_idp_factory: Any, tmp_path: Any,
                                             figures: Figures) -> None:
    from oauth_auth import MemorySecrets
    from tests.reliability.conftest import seed

    provider = real_idp_factory()
    session = seed(provider, MemorySecrets(), tmp_path)
    source = session.source(max_retries=1)
    source.token()  # discovery cached, session working
    source.invalidate()
    provider.stop()

    exc, elapsed = timed(source.token)

    assert_typed(exc, TransportError, "cannot connect")
    assert 0.5 <= elapsed < 0.5 + SLACK  # refused connections are retried, with backoff
    assert session.stored() is not None
    figures.add("connection refused",
                f"provider stopped: TransportError after 1+1 attempts ({elapsed:.2f} s);"
                " refresh token kept")


def test_connection_refused_then_back(session: Session, figures: Figures) -> None:
    """Refused by the kernel while the provider keeps its state, then reachable again."""
    from tests.reliability._net import RoutedTransport, TcpProxy

    port = int(session.idp.issuer.rsplit(":", 1)[1])
    proxy = TcpProxy(port)
    try:
        source = session.source(transport=RoutedTransport(port, proxy.port), max_retries=1)
        proxy.stop()
        exc, elapsed = timed(source.token)
        assert_typed(exc, TransportError, "cannot connect")
        assert 0.5 <= elapsed < 0.5 + SLACK
        assert session.stored() == session.refresh_token
        proxy.start()
        recover(session, source)
    finally:
        proxy.close()
    figures.add("connection refused",
                "refused, then the same provider back: next call refreshes, no login")


def test_dropped_connection_on_the_token_endpoint(session: Session, figures: Figures) -> None:
    session.idp.inject_fault(TOKEN, drop=True, count=1)
    source = session.source(max_retries=2)

    exc, elapsed = timed(source.token)

    assert_typed(exc, TransportError, "failed")
    assert faults_served(session) == 1  # a POST that may have arrived is never replayed
    assert elapsed < SLACK
    assert session.stored() == session.refresh_token
    recover(session, source)
    figures.add("dropped connection",
                "token endpoint: TransportError, not replayed; session kept")


def test_dropped_connection_on_discovery_is_retried(session: Session,
                                                    figures: Figures) -> None:
    session.idp.inject_fault(DISCOVERY, drop=True, count=1)
    source = session.source(max_retries=1)
    token = source.token()
    assert session.active(token)
    assert faults_served(session, DISCOVERY) == 1
    figures.add("dropped connection", "discovery (GET): retried once, token served")


# ------------------------------------------------------------------ malformed answers

BAD_BODIES: list[tuple[str, Any, str]] = [
    ("non-JSON body", "<html><body>Service temporarily unavailable</body></html>",
     "not a JSON object"),
    ("non-JSON body", "", "not a JSON object"),
    ("non-JSON body", "[1, 2, 3]", "not a JSON object"),
    ("non-JSON body", "[" * 100_000 + "]" * 100_000, "not a JSON object"),
    ("JSON without access_token", {"token_type": "Bearer", "expires_in": 300},
     "no access_token"),
    ("JSON without access_token", {"access_token": "", "token_type": "Bearer"},
     "no access_token"),
    ("JSON without access_token", {"access_token": None, "token_type": "Bearer"},
     "no access_token"),
    ("expires_in negative", {"access_token": "fault-access-token-1", "token_type": "Bearer",
                             "expires_in": -300}, "expires_in"),
    ("expires_in zero", {"access_token": "fault-access-token-2", "token_type": "Bearer",
                         "expires_in": 0}, "expires_in"),
    ("expires_in a string", {"access_token": "fault-access-token-3", "token_type": "Bearer",
                             "expires_in": "soon"}, "expires_in"),
    ("expires_in a string", {"access_token": "fault-access-token-4", "token_type": "Bearer",
                             "expires_in": "NaN"}, "expires_in"),
    ("expires_in huge", '{"access_token": "fault-access-token-5", "token_type": "Bearer",'
     ' "expires_in": -1' + "0" * 400 + "}", "expires_in"),
    ("token_type not Bearer", {"access_token": "fault-access-token-6", "token_type": "DPoP",
                               "expires_in": 300}, "not Bearer"),
    ("token_type not Bearer", {"access_token": "fault-access-token-7", "token_type": "mac",
                               "expires_in": 300}, "not Bearer"),
    ("token_type not Bearer", {"access_token": "fault-access-token-8", "expires_in": 300},
     "not Bearer"),
    ("token_type not Bearer", {"access_token": "fault-access-token-9", "token_type": 1,
                               "expires_in": 300}, "not Bearer"),
]


@pytest.mark.parametrize(("klass", "body", "fragment"), BAD_BODIES,
                         ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(BAD_BODIES)])
def test_malformed_success_answers_are_typed_errors(
    session: Session, figures: Figures, klass: str, body: Any, fragment: str
) -> None:
    session.idp.inject_fault(TOKEN, status=200, body=body, count=1)
    source = session.source()

    exc, elapsed = timed(source.token)

    assert_typed(exc, OAuthError, fragment)
    assert exc.error == "invalid_response"
    assert elapsed < SLACK
    assert session.stored() == session.refresh_token
    recover(session, source)
    figures.add(klass, "OAuthError(invalid_response) with a hint; session kept")


ODD_BUT_USABLE: list[tuple[str, Any, float]] = [
    ("expires_in huge", 10**12, MAX_EXPIRES_IN),
    ("expires_in huge", "1" + "0" * 400, MAX_EXPIRES_IN),
    ("expires_in huge", 1e308, MAX_EXPIRES_IN),
    ("expires_in a string", "3600", 3600),
    ("expires_in a string", " 120 ", 120),
]


@pytest.mark.parametrize(("klass", "expires_in", "lifetime"), ODD_BUT_USABLE)
def test_odd_but_usable_expires_in(session: Session, figures: Figures, klass: str,
                                   expires_in: Any, lifetime: float) -> None:
    raw = expires_in if not (isinstance(expires_in, str) and expires_in.isdigit()
                             and len(expires_in) > 20) else None
    if raw is None:  # a 400-digit JSON integer: only a raw body can carry it
        body: Any = ('{"access_token": "odd-but-usable-token", "token_type": "Bearer",'
                     f' "expires_in": {expires_in}}}')
    else:
        body = {"access_token": "odd-but-usable-token", "token_type": "bearer",
                "expires_in": raw}
    session.idp.inject_fault(TOKEN, status=200, body=body, count=1)
    source = session.source()
    before = time.time()

    assert source.token() == "odd-but-usable-token"
    token = source._memory
    assert token is not None
    assert token.expiry is not None
    assert before + lifetime - 5 <= token.expiry <= time.time() + lifetime + 5
    assert session.stored() == session.refresh_token
    figures.add(klass, "clamped to 10 years / numeric string accepted; token served"
                if klass == "expires_in huge" else "numeric string accepted; token served")


# ------------------------------------------------------------------ discovery


@pytest.mark.parametrize(
    ("fault", "fragment"),
    [
        ({"status": 503}, "HTTP 503"),
        ({"status": 404, "body": "not found"}, "HTTP 404"),
        ({"status": 200, "body": "<html>login</html>"}, "without a JSON object"),
        ({"drop": True}, "failed"),
        ({"delay_ms": 1500, "status": 504}, "did not answer"),
    ],
    ids=["503", "404", "html", "drop", "timeout"],
)
def test_discovery_unavailable(session: Session, figures: Figures, fault: dict[str, Any],
                               fragment: str) -> None:
    # Both metadata documents (OIDC discovery and RFC 8414, which the library falls back
    # to and oidc-provider serves too) are unavailable.
    session.idp.inject_fault("/.well-known", count=10, **fault)
    source = session.source(http_timeout=0.5, max_retries=1)

    exc, elapsed = timed(source.token)

    assert_typed(exc, TransportError, fragment)
    # GETs are retried once: at most two timeouts plus the backoff
    assert elapsed < 2 * 0.5 + 0.5 + SLACK
    assert session.stored() == session.refresh_token
    recover(session, source)
    figures.add("discovery unavailable", "TransportError naming the URL, with a hint;"
                " session kept; next call discovers and refreshes")


def test_discovery_naming_another_issuer_is_refused(session: Session,
                                                    figures: Figures) -> None:
    doc = dict(session.idp.metadata)
    doc["issuer"] = "https://evil.example.test"
    session.idp.inject_fault(DISCOVERY, status=200, body=doc, count=1)
    source = session.source()

    exc, _ = timed(source.token)

    from oauth_auth import ConfigError

    assert_typed(exc, ConfigError, "evil.example.test")
    assert session.idp.counts().get("token", {}) == {}  # the refresh token was not sent
    recover(session, source)
    figures.add("discovery naming another issuer (mix-up)",
                "ConfigError; the refresh token is never sent; session kept")


# ------------------------------------------------------------------ JWKS during a login



@pytest.mark.parametrize(("fault", "fragment"), [({"status": 503}, "HTTP 503"),
                                                 ({"drop": True}, "failed")],
                         ids=["503", "drop"])
def test_jwks_unavailable_during_login(real_idp: Any, tmp_path: Any, figures: Figures,
                                       fault: dict[str, Any], fragment: str) -> None:
    """The browser login succeeds up to the code exchange, then the ID token cannot be
    checked: nothing is stored (an unverified login is not a session), the error says
    why, and the next login works once the JWKS is back."""
    from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCParams
    from tests.support.browser import Background, http_browser_login

    store = MemorySecrets()
    browser = Background(http_browser_login)
    source = OAuthTokenSource(
        OIDCParams(real_idp.issuer, real_idp.client_id, callback_port=free_port()),
        key_provider=lambda: "JWKS", secrets_provider=store, interactive=True,
        open_browser=browser, login_timeout=30, lock_dir=tmp_path / "locks",
        http_timeout=2.0, max_retries=1,
    )
    real_idp.inject_fault("/jwks", count=10, **fault)

    exc, elapsed = timed(source.token)
    browser.wait()

    assert_typed(exc, TransportError, fragment, "/jwks")
    assert elapsed < 10
    assert real_idp.counts()["token"] == {"authorization_code": {"ok": 1}}  # exchanged once
    assert store.get_secret("JWKS") is None  # nothing half-trusted was kept
    assert store.get_secret("JWKS_AT") is None

    real_idp.clear_faults()
    token = source.token()  # a new login, now verifiable
    browser.wait()
    assert token
    assert store.get_secret("JWKS") is not None
    assert real_idp.counts()["token"] == {"authorization_code": {"ok": 2}}
    figures.add("JWKS unavailable during login",
                "TransportError naming the JWKS URL; code exchanged once; nothing stored;"
                " the next login succeeds")
