"""The bench's browsers work end to end against the provider and a loopback callback catcher."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable

import httpx
import pytest

from tests.support.browser import (
    Background,
    BrowserFlowError,
    CallbackCatcher,
    http_browser_deny,
    http_browser_login,
)
from tests.support.idp import IdP, authorization_url, exchange_code, make_pkce

pytestmark = pytest.mark.idp


def _login_url(idp: IdP, redirect_uri: str, state: str = "st-1") -> tuple[str, str]:
    verifier, challenge = make_pkce()
    url = authorization_url(
        idp,
        redirect_uri=redirect_uri,
        code_challenge=challenge,
        state=state,
        scopes=("openid", "offline_access", "email"),
    )
    return url, verifier


def test_http_login_follows_the_callback(real_idp: IdP, callback_catcher: CallbackCatcher) -> None:
    url, verifier = _login_url(real_idp, callback_catcher.redirect_uri)
    final = http_browser_login(url, login="carol")

    query = callback_catcher.wait()
    assert final.startswith(callback_catcher.redirect_uri + "?")
    assert dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(final).query)) == query
    assert query["state"] == "st-1"
    assert query["iss"] == real_idp.issuer
    assert callback_catcher.paths == ["/callback"]

    tokens = exchange_code(
        real_idp, query["code"], redirect_uri=callback_catcher.redirect_uri, code_verifier=verifier
    ).json()
    assert {"access_token", "refresh_token", "id_token"} <= set(tokens)
    assert real_idp.counts()["token"] == {"authorization_code": {"ok": 1}}


def test_http_deny_reaches_the_callback_with_access_denied(
    real_idp: IdP, callback_catcher: CallbackCatcher
) -> None:
    url, _ = _login_url(real_idp, callback_catcher.redirect_uri)
    http_browser_deny(url)
    query = callback_catcher.wait()
    assert query["error"] == "access_denied"
    assert query["state"] == "st-1"
    assert real_idp.counts()["token"] == {}


def test_unregistered_redirect_uri_is_reported(real_idp: IdP) -> None:
    url, _ = _login_url(real_idp, "http://127.0.0.1:4711/elsewhere")
    with pytest.raises(BrowserFlowError, match="400"):
        http_browser_login(url, follow_callback=False)


def test_dev_pages_do_not_reach_for_web_fonts(real_idp: IdP) -> None:
    url, _ = _login_url(real_idp, "http://127.0.0.1:4711/callback")
    with httpx.Client(follow_redirects=True) as client:
        page = client.get(url)
        device = client.get(f"{real_idp.issuer}/device")
    assert 'name="login"' in page.text
    assert "op.deviceInputForm" in device.text
    for text in (page.text, device.text):
        assert "fonts.googleapis.com" not in text
        assert "https://" not in text


def test_background_opener_runs_the_login_in_a_thread(
    real_idp: IdP,
    callback_catcher: CallbackCatcher,
    background_browser: Callable[..., Background],
) -> None:
    opener = background_browser(http_browser_login, login="dave")
    url, _ = _login_url(real_idp, callback_catcher.redirect_uri, state="bg")
    assert opener(url) is True
    final = opener.wait(timeout=20)
    assert opener.urls == [url]
    assert callback_catcher.wait()["state"] == "bg"
    assert "state=bg" in final


def test_callback_catcher_answers_404_elsewhere() -> None:
    with CallbackCatcher() as catcher:
        assert httpx.get(f"http://127.0.0.1:{catcher.port}/favicon.ico").status_code == 404
        ok = httpx.get(f"{catcher.redirect_uri}?code=c&state=s")
        assert ok.status_code == 200
        assert catcher.wait(timeout=1) == {"code": "c", "state": "s"}
        assert catcher.paths == ["/favicon.ico", "/callback"]


def test_chromium_navigation_errors_mean_not_yet_and_others_fail() -> None:
    """CI once failed on ChromeDriver's "Node with given id does not belong to the document",
    raised by a call on a page that was navigating away: that must read as "not yet"."""
    from selenium.common.exceptions import (
        NoSuchWindowException,
        StaleElementReferenceException,
        WebDriverException,
    )

    from tests.support.browser import _page_changing

    inspector = (
        "unknown error: unhandled inspector error: "
        '{"code":-32000,"message":"Node with given id does not belong to the document"}'
    )
    assert _page_changing(WebDriverException(inspector))
    assert _page_changing(WebDriverException("unknown error: Execution context was destroyed."))
    assert _page_changing(StaleElementReferenceException("stale element reference"))
    assert not _page_changing(WebDriverException("unknown error: chrome not reachable"))
    assert not _page_changing(NoSuchWindowException("no such window: target window already closed"))
    assert not _page_changing(ValueError("does not belong to the document"))


@pytest.mark.browser
def test_chromium_login_end_to_end(
    real_idp: IdP, chromium: Callable[..., str], callback_catcher: CallbackCatcher
) -> None:
    url, verifier = _login_url(real_idp, callback_catcher.redirect_uri, state="chr")
    final = chromium(url, login="erin")

    query = callback_catcher.wait()
    assert final.startswith(callback_catcher.redirect_uri)
    assert query["state"] == "chr"
    assert query["iss"] == real_idp.issuer
    assert "/callback" in callback_catcher.paths
    assert len(callback_catcher.queries) == 1

    response = exchange_code(
        real_idp, query["code"], redirect_uri=callback_catcher.redirect_uri, code_verifier=verifier
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["refresh_token"]
    assert real_idp.counts()["token"] == {"authorization_code": {"ok": 1}}


@pytest.mark.browser
def test_chromium_cancel_gives_access_denied(
    real_idp: IdP, chromium: Callable[..., str], callback_catcher: CallbackCatcher
) -> None:
    url, _ = _login_url(real_idp, callback_catcher.redirect_uri, state="no")
    chromium(url, consent=False)
    query = callback_catcher.wait()
    assert query["error"] == "access_denied"
    assert query["state"] == "no"
