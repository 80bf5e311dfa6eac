"""A hostile provider on a real loopback socket: a whole call is bounded by `http_timeout`
(connect, send, every read), and the body cap holds while the body streams in."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from oauth_auth import MemorySecrets, OAuthError, OAuthTokenSource, OIDCParams, TransportError
from oauth_auth._http import MAX_BODY, IdPHttp
from tests.reliability.conftest import Figures
from tests.support.hostile_server import HostileIdP

GAP = 0.8  # the provider sends one byte every GAP seconds, well inside any read timeout
TIMEOUT = 2.0


def _source(idp: HostileIdP) -> OAuthTokenSource:
    secrets = MemorySecrets()
    secrets.set_secret("k", "refresh-token-for-the-hostile-provider")
    return OAuthTokenSource(
        OIDCParams(idp.issuer, "cli"),
        key_provider=lambda: "k",
        secrets_provider=secrets,
        http_timeout=TIMEOUT,
        max_retries=0,
    )


@pytest.mark.parametrize("mode", ["trickle_headers", "trickle_body"])
def test_a_trickling_provider_is_cut_off_at_http_timeout(
    mode: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch, figures: Figures
) -> None:
    monkeypatch.setenv("OAUTH_AUTH_LOCK_DIR", str(tmp_path))
    with HostileIdP(mode, gap=GAP) as idp:
        source = _source(idp)
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"did not answer within 2 s"):
            source.token()
        elapsed = time.monotonic() - started
        source.close()
        assert idp.token_requests == 1
        # Without the whole-call deadline this held on for 4000 * 0.8 s.
        assert elapsed < TIMEOUT + 1.5, elapsed
        assert idp.sent >= 1  # the trickle had begun: each read alone would have succeeded
    figures.add(
        "provider trickles 1 byte / 0.8 s (http_timeout=2)",
        "TransportError, lock released", cases=1, **{f"seconds_{mode}": round(elapsed, 1)},
    )


def test_a_huge_answer_is_not_read_beyond_the_cap(figures: Figures) -> None:
    with HostileIdP("huge", huge_bytes=400 << 20) as idp:
        http = IdPHttp(timeout=30, max_retries=0)
        tracemalloc.start()
        try:
            started = time.monotonic()
            with pytest.raises(OAuthError, match="larger than 1 MiB") as caught:
                http.post_form(f"{idp.issuer}/token", {"grant_type": "refresh_token"})
            elapsed = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            http.close()
        assert caught.value.error == "invalid_response"
        # The whole body is 400 MiB; what the client held stays near the 1 MiB cap.
        assert peak < 4 * MAX_BODY, peak
        assert idp.sent < 64 * MAX_BODY, idp.sent
    figures.add("provider answers 400 MiB", "OAuthError invalid_response, body cap held",
                cases=1, peak_mib=round(peak / (1 << 20), 1), seconds=round(elapsed, 2))
