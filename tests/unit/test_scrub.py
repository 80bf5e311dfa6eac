"""No secret in the locals of the traceback frames of an error that leaves the library.

Each test makes an error leave through a public entry point (a refresh answered 503, a
login whose ID token fails, a 401 whose fresh token cannot be had, on httpx and requests)
and renders its traceback the way error trackers and `pytest -l` do
(`capture_locals=True`): none of the secrets involved may appear in any frame's locals
outside this file.
"""

from __future__ import annotations

import io
import traceback
from typing import Any

import httpx
import pytest
import requests
import requests.adapters

from oauth_auth import (
    LoginError,
    MemorySecrets,
    OAuthTokenSource,
    OIDCAuth,
    OIDCParams,
    TransportError,
)
from oauth_auth._scrub import clear_frames, scrubbed
from tests.support.fakes import ISSUER, FakeProvider
from tests.unit.test_login import ISSUER as LOGIN_ISSUER
from tests.unit.test_login import META, FakeBrowser, Stub, free_port

LONG_RT = "refresh-token-that-must-never-be-in-a-traceback-0123456789"
LONG_AT = "access-token-that-must-never-be-in-a-traceback-0123456789"
LONG_CODE = "authorization-code-that-must-never-be-in-a-traceback-012345"


def locals_text(exc: BaseException) -> str:
    """Every local of every frame outside this file, as a traceback printer shows them."""
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__, capture_locals=True)
    parts: list[str] = []
    pending = [te]
    while pending:
        current = pending.pop()
        for frame in current.stack:
            if frame.filename != __file__:
                parts.append(f"[frame {frame.name}]")
                parts.extend(f"{frame.name}: {k} = {v}" for k, v in (frame.locals or {}).items())
        pending.extend(e for e in (current.__cause__, current.__context__) if e)
    assert parts, "the traceback has library frames"
    return "\n".join(parts)


@pytest.fixture
def secrets() -> MemorySecrets:
    return MemorySecrets()


def source_for(fake_idp: FakeProvider, secrets: MemorySecrets, **kw: Any) -> OAuthTokenSource:
    return OAuthTokenSource(OIDCParams(ISSUER, "cli"), key_provider=lambda: "k",
                            secrets_provider=secrets, transport=fake_idp.transport(),
                            max_retries=0, **kw)


@pytest.fixture(autouse=True)
def _lock_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTH_AUTH_LOCK_DIR", str(tmp_path))


def test_a_refresh_answered_503_leaves_no_refresh_token_in_frame_locals(
    fake_idp: FakeProvider, secrets: MemorySecrets
) -> None:
    secrets.set_secret("k", fake_idp.seed(LONG_RT))
    fake_idp.faults = [(503, {"error": "temporarily_unavailable"}, {})]
    with pytest.raises(TransportError) as caught:
        source_for(fake_idp, secrets).token()
    text = locals_text(caught.value)
    assert "[frame _refresh_and_store]" in text
    assert "[frame _send]" in text
    assert LONG_RT not in text  # ...without their locals
    assert secrets.get_secret("k") == LONG_RT


class LongStub(Stub):
    """The login stub, with real-length tokens and an ID token that fails its nonce."""

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/openid-configuration"):
            return httpx.Response(200, json={
                "issuer": LOGIN_ISSUER, "token_endpoint": META.token_endpoint,
                "authorization_endpoint": META.authorization_endpoint,
                "jwks_uri": META.jwks_uri,
            })
        response = super().handler(request)
        if request.url.path != "/token":
            return response
        body = response.json()
        body.update(access_token=LONG_AT, refresh_token=LONG_RT)
        return httpx.Response(200, json=body)


def test_a_login_whose_id_token_fails_leaves_no_code_or_tokens_in_frame_locals(
    secrets: MemorySecrets,
) -> None:
    stub = LongStub()
    stub.claims = {"nonce": "replayed"}
    browser = FakeBrowser(stub, callbacks=[{"code": LONG_CODE, "state": "<state>",
                                            "iss": LOGIN_ISSUER}])
    source = OAuthTokenSource(
        OIDCParams(LOGIN_ISSUER, "cli", callback_port=free_port()), key_provider=lambda: "k",
        secrets_provider=secrets, interactive=True, open_browser=browser,
        transport=httpx.MockTransport(stub.handler), stderr=io.StringIO(), login_timeout=10,
    )
    with pytest.raises(LoginError, match="nonce") as caught:
        source.token()
    browser.join()
    assert stub.token_forms[0]["code"] == LONG_CODE  # the code was exchanged
    text = locals_text(caught.value)
    for secret in (LONG_CODE, LONG_AT, LONG_RT, stub.token_forms[0]["code_verifier"]):
        assert secret not in text
    assert secrets.get_secret("k") is None


def _refused_then_down(fake_idp: FakeProvider, secrets: MemorySecrets) -> OAuthTokenSource:
    """A source serving LONG_AT from the shared cache; the refresh after a 401 fails."""
    secrets.set_secret("k", fake_idp.seed(LONG_RT))
    secrets.set_secret("k_AT", f"{LONG_AT}|2099-01-01T00:00:00Z")
    fake_idp.faults = [(503, {"error": "temporarily_unavailable"}, {})]
    return source_for(fake_idp, secrets)


def api_401(request: httpx.Request) -> httpx.Response:
    return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def test_httpx_a_401_whose_refresh_fails_leaves_no_token_in_frame_locals(
    fake_idp: FakeProvider, secrets: MemorySecrets
) -> None:
    auth = OIDCAuth(_refused_then_down(fake_idp, secrets))
    with httpx.Client(auth=auth, transport=httpx.MockTransport(api_401)) as client, \
            pytest.raises(TransportError) as caught:
        client.get("https://api.example.test/x")
    text = locals_text(caught.value)
    assert LONG_AT not in text
    assert LONG_RT not in text


async def test_httpx_async_a_401_whose_refresh_fails_leaves_no_token_in_frame_locals(
    fake_idp: FakeProvider, secrets: MemorySecrets
) -> None:
    auth = OIDCAuth(_refused_then_down(fake_idp, secrets))
    async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(api_401)) as client:
        with pytest.raises(TransportError) as caught:
            await client.get("https://api.example.test/x")
    text = locals_text(caught.value)
    assert LONG_AT not in text
    assert LONG_RT not in text


class Always401(requests.adapters.BaseAdapter):
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 401
        response.request = request
        response.url = str(request.url)
        response.raw = io.BytesIO(b"")
        response.connection = self
        return response

    def close(self) -> None:
        pass


def test_requests_a_401_whose_refresh_fails_leaves_no_token_in_frame_locals(
    fake_idp: FakeProvider, secrets: MemorySecrets
) -> None:
    session = requests.Session()
    session.mount("https://", Always401())
    session.auth = OIDCAuth(_refused_then_down(fake_idp, secrets))
    with pytest.raises(TransportError) as caught:
        session.get("https://api.example.test/x")
    text = locals_text(caught.value)
    assert LONG_AT not in text
    assert LONG_RT not in text


def test_scrubbed_clears_the_finished_frames_of_the_whole_chain() -> None:
    def inner(secret: str) -> None:
        try:
            {}[secret]
        except KeyError:
            raise ValueError("failed") from None

    with pytest.raises(ValueError, match="failed") as caught, scrubbed:
        inner(LONG_RT)
    context = caught.value.__context__
    assert isinstance(context, KeyError)  # suppressed from printing, still reachable
    inner_frames = [f for f in _frames(caught.value) + _frames(context)
                    if f.f_code.co_name == "inner"]
    assert len(inner_frames) == 2
    assert all(LONG_RT not in repr(f.f_locals) for f in inner_frames)
    clear_frames(caught.value)  # idempotent


def _frames(exc: BaseException) -> list[Any]:
    out = []
    tb = exc.__traceback__
    while tb is not None:
        out.append(tb.tb_frame)
        tb = tb.tb_next
    return out
