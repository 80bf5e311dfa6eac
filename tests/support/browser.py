"""Browser helpers for the bench: an HTTP-level browser, headless Chromium, a callback catcher.

- `http_browser_login(url)`: plays the user on oidc-provider's development pages with httpx
  (login form, consent form) until the provider redirects to the loopback redirect URI, then
  GETs that callback (where the library's server under test listens) unless told not to.
- `http_device_approve(verification_uri, user_code)`: the user side of the device grant.
- `chromium_login(url)`: the same login in a real headless Chromium (selenium + Debian's
  chromium/chromedriver, nothing downloaded).
- `CallbackCatcher`: a loopback server that records GET /callback (404 for anything else), to
  run the browser end to end without the library.
- `Background`: run any of these in a thread, e.g. as the library's `open_browser` callable.

Fixtures: `chromium` (the `chromium_login` function, after checking the binaries),
`callback_catcher` (a started `CallbackCatcher`), `background_browser` (a factory of
`Background` openers, joined at teardown).
"""

from __future__ import annotations

import contextlib
import functools
import html.parser
import http.server
import os
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.support.require import missing

__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "Background",
    "BrowserFlowError",
    "CallbackCatcher",
    "chromium_login",
    "http_browser_deny",
    "http_browser_login",
    "http_device_approve",
    "require_chromium",
]

CHROMIUM = os.environ.get("BENCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("BENCH_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_HINT = (
    "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
)
MAX_STEPS = 25


class BrowserFlowError(AssertionError):
    """The provider's pages did not lead where the helper expected (shows the page text)."""


# -- HTML parsing ----------------------------------------------------------------------------------


@dataclass
class _Form:
    id: str | None
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    buttons: list[tuple[str, str]] = field(default_factory=list)  # (name, value) of submitters


@dataclass
class _Page:
    forms: list[_Form] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (href, text)
    text: list[str] = field(default_factory=list)

    def form(self, predicate: Callable[[_Form], bool]) -> _Form | None:
        return next((f for f in self.forms if predicate(f)), None)

    def summary(self) -> str:
        return " ".join(" ".join(self.text).split())[:500]


class _Parser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = _Page()
        self._current: _Form | None = None
        self._link: list[str] | None = None
        self._in_style = False
        self._loose_buttons: list[tuple[str, str, str]] = []  # (form id, name, value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("style", "script"):
            self._in_style = True
        elif tag == "form":
            self._current = _Form(a.get("id"), a.get("action", ""), a.get("method", "get").upper())
            self.page.forms.append(self._current)
        elif tag == "input" and a.get("name"):
            kind = a.get("type", "text").lower()
            if kind in ("submit", "button", "image"):
                self._add_button(a)
            elif kind not in ("checkbox", "radio") or "checked" in a:
                target = self._target(a)
                if target is not None:
                    target.fields.append((a["name"], a.get("value", "")))
        elif tag == "button":
            self._add_button(a)
        elif tag == "a" and "href" in a:
            self._link = [a["href"]]

    def _target(self, a: dict[str, str]) -> _Form | None:
        if a.get("form"):
            return next((f for f in self.page.forms if f.id == a["form"]), None)
        return self._current

    def _add_button(self, a: dict[str, str]) -> None:
        if a.get("type", "submit").lower() != "submit":
            return
        entry = (a.get("name", ""), a.get("value", ""))
        if a.get("form"):
            self._loose_buttons.append((a["form"], *entry))
        elif self._current is not None:
            self._current.buttons.append(entry)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._in_style = False
        elif tag == "form":
            self._current = None
        elif tag == "a" and self._link is not None:
            self.page.links.append((self._link[0], "".join(self._link[1:]).strip()))
            self._link = None

    def handle_data(self, data: str) -> None:
        if self._in_style:
            return
        self.page.text.append(data)
        if self._link is not None:
            self._link.append(data)

    def close(self) -> None:
        super().close()
        for form_id, name, value in self._loose_buttons:
            form = next((f for f in self.page.forms if f.id == form_id), None)
            if form is not None:
                form.buttons.append((name, value))


def _parse(text: str) -> _Page:
    parser = _Parser()
    parser.feed(text)
    parser.close()
    return parser.page


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc


def _submit(
    client: httpx.Client, base: str, form: _Form, extra: dict[str, str], button: str | None = None
) -> httpx.Response:
    pairs = [(k, v) for k, v in form.fields if k not in extra] + list(extra.items())
    if button is not None:
        pairs += [b for b in form.buttons if b[0] == button]
    data: dict[str, list[str]] = {}
    for name, value in pairs:
        data.setdefault(name, []).append(value)
    action = urllib.parse.urljoin(base, form.action or base)
    if form.method == "POST":
        return client.post(action, data=data)
    return client.get(action, params=data)


def _is_auto_post(page: _Page) -> bool:
    """oidc-provider's self-submitting form (form_post), e.g. after a complete verification URI."""
    return len(page.forms) == 1 and "Submitting Callback" in page.summary()


def _fields(form: _Form) -> dict[str, str]:
    return dict(form.fields)


# For the players of other servers' pages (tests/support/dot.py): one HTML form parser.
parse_page = _parse
submit_form = _submit


# -- HTTP-level browser ----------------------------------------------------------------------------


def http_browser_login(
    authorization_url: str,
    *,
    login: str = "alice",
    password: str = "secret",
    follow_callback: bool = True,
    consent: bool = True,
    cancel: bool = False,
    timeout: float = 10.0,
) -> str:
    """Play the user through oidc-provider's dev login and consent pages; return the callback URL.

    `authorization_url` may also be the library's one-time start page (a browser command
    gets that), which is followed to the provider first.
    Follows the provider's redirects with its cookies, submits the login form (`login`, any
    password) and the consent form, and stops at the first redirect that leaves the provider
    (the loopback redirect URI, carrying code, state and iss, or error). Then GETs that URL
    (the library's callback server answers it) unless `follow_callback` is False.
    `consent=False` or `cancel=True` clicks "[ Cancel ]" instead (at consent, or at login when
    cancel=True), so the callback carries error=access_denied.
    Raises BrowserFlowError when a page is not what a dev interaction page should be.
    """
    with httpx.Client(follow_redirects=False, timeout=timeout) as client:
        response = client.get(authorization_url)
        if _is_start_page(authorization_url):
            # The library's one-time start page (what a browser command is given): it
            # redirects to the provider's authorization URL.
            if response.status_code != 302:
                raise BrowserFlowError(f"the start page answered {response.status_code}")
            authorization_url = response.headers["location"]
            response = client.get(authorization_url)
        provider = _origin(authorization_url)
        for _ in range(MAX_STEPS):
            url = str(response.url)
            if response.is_redirect:
                target = urllib.parse.urljoin(url, response.headers["location"])
                if _origin(target) != provider:
                    if follow_callback:
                        client.get(target)
                    return target
                response = client.get(target)
                continue
            page = _parse(response.text)
            if response.status_code != 200:
                raise BrowserFlowError(
                    f"the provider answered {response.status_code} at {url}: {page.summary()}"
                )
            login_form = page.form(lambda f: _fields(f).get("prompt") == "login")
            consent_form = page.form(lambda f: _fields(f).get("prompt") == "consent")
            abort = next((href for href, _ in page.links if "/abort" in href), None)
            if _is_auto_post(page):  # a form that JavaScript would submit
                action = urllib.parse.urljoin(url, page.forms[0].action)
                if _origin(action) != provider:
                    raise BrowserFlowError(f"form_post to {action} is not supported")
                response = _submit(client, url, page.forms[0], {})
            elif (cancel or (consent_form is not None and not consent)) and abort:
                response = client.get(urllib.parse.urljoin(url, abort))
            elif login_form is not None:
                response = _submit(client, url, login_form, {"login": login, "password": password})
            elif consent_form is not None:
                response = _submit(client, url, consent_form, {})
            else:
                raise BrowserFlowError(f"unexpected page at {url}: {page.summary()}")
        raise BrowserFlowError(f"no redirect to the callback after {MAX_STEPS} steps")


def _is_start_page(url: str) -> bool:
    from oauth_auth._discovery import is_loopback_host
    from oauth_auth._loopback import START_PATH_PREFIX

    parts = urllib.parse.urlsplit(url)
    return is_loopback_host(parts.hostname) and parts.path.startswith(START_PATH_PREFIX)


def http_browser_deny(authorization_url: str, **kwargs: Any) -> str:
    """`http_browser_login` that cancels at the first page: the callback has error=access_denied."""
    return http_browser_login(authorization_url, cancel=True, **kwargs)


def http_device_approve(
    verification_uri: str,
    user_code: str | None = None,
    *,
    login: str = "alice",
    password: str = "secret",
    deny: bool = False,
    timeout: float = 10.0,
) -> str:
    """Approve (or deny) a device grant as the user, at HTTP level; returns the last page's text.

    Opens `verification_uri` (its complete form carries user_code, then `user_code` may be
    None), submits the code, confirms (or clicks "[ Abort ]" when `deny`), logs in and
    consents. A client polling the token endpoint then receives its tokens (or access_denied).
    """
    if user_code is None:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(verification_uri).query))
        user_code = query.get("user_code")
        if not user_code:
            raise BrowserFlowError("no user_code given and none in the verification URI")
    with httpx.Client(follow_redirects=False, timeout=timeout) as client:
        response = client.get(verification_uri)
        for _ in range(MAX_STEPS):
            url = str(response.url)
            if response.is_redirect:
                response = client.get(urllib.parse.urljoin(url, response.headers["location"]))
                continue
            page = _parse(response.text)
            if response.status_code != 200:
                raise BrowserFlowError(
                    f"the provider answered {response.status_code} at {url}: {page.summary()}"
                )
            text = page.summary()
            input_form = page.form(lambda f: f.id == "op.deviceInputForm")
            confirm_form = page.form(lambda f: f.id == "op.deviceConfirmForm")
            login_form = page.form(lambda f: _fields(f).get("prompt") == "login")
            consent_form = page.form(lambda f: _fields(f).get("prompt") == "consent")
            if _is_auto_post(page):
                response = _submit(client, url, page.forms[0], {})
            elif confirm_form is not None:
                response = _submit(client, url, confirm_form, {}, button="abort" if deny else None)
            elif input_form is not None:
                if "interrupted" in text and deny:
                    return text  # aborted: the device code now holds access_denied
                if "incorrect" in text or "error" in text.lower():
                    raise BrowserFlowError(f"the device page refused the code: {text}")
                response = _submit(client, url, input_form, {"user_code": user_code})
            elif login_form is not None:
                response = _submit(client, url, login_form, {"login": login, "password": password})
            elif consent_form is not None:
                response = _submit(client, url, consent_form, {})
            elif "Success" in text:
                return text
            else:
                raise BrowserFlowError(f"unexpected device page at {url}: {text}")
        raise BrowserFlowError(f"the device flow did not finish after {MAX_STEPS} steps")


# -- headless Chromium -----------------------------------------------------------------------------


def require_chromium() -> None:
    """Skip (locally) or fail (CI) unless chromium, chromedriver and selenium are there."""
    for path, part in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            missing(f"{part} ({path})", CHROMIUM_HINT)
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing("selenium", "install the dev dependency group (`make deps`)")


def _chromium_driver(user_data_dir: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--disable-extensions",
        "--disable-default-apps",
        "--password-store=basic",
        "--use-mock-keychain",
        "--window-size=800,600",
        f"--user-data-dir={user_data_dir}",
    ):
        options.add_argument(argument)
    service = Service(executable_path=CHROMEDRIVER, log_output=os.devnull)
    return webdriver.Chrome(options=options, service=service)


def _start_chromium(profile: str, attempts: int = 3) -> Any:
    """A new headless Chromium, retried: on a loaded 2-core machine Chromium now and then
    fails to start in time ("DevToolsActivePort file doesn't exist", "chrome not
    reachable"), which says nothing about the flow under test."""
    from selenium.common.exceptions import WebDriverException

    for attempt in range(1, attempts + 1):
        try:
            return _chromium_driver(tempfile.mkdtemp(prefix="run-", dir=profile))
        except WebDriverException as exc:
            if attempt == attempts:
                raise
            print(f"Chromium did not start (attempt {attempt}): {str(exc).splitlines()[0]}")
            time.sleep(1.0)
    raise AssertionError("unreachable")


def chromium_login(
    authorization_url: str,
    *,
    login: str = "alice",
    password: str = "secret",
    consent: bool = True,
    timeout: float = 30.0,
) -> str:
    """Log in with a fresh headless Chromium; returns the URL the browser ended on (the callback).

    Fills the dev login form and clicks Continue on consent (or "[ Cancel ]" when
    `consent=False`), then waits until the browser left the provider and the callback page
    loaded (the loopback server under test must answer it). The driver always quits.
    """
    require_chromium()
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium manager: never download anything
    from selenium.webdriver.common.by import By

    provider = _origin(authorization_url)
    with tempfile.TemporaryDirectory(prefix="bench-chromium-") as profile:
        driver = _start_chromium(profile)
        try:
            driver.set_page_load_timeout(timeout)

            def next_step() -> Any:
                if (
                    _origin(driver.current_url) != provider
                    and driver.execute_script("return document.readyState") == "complete"
                ):
                    return "done"
                found = driver.find_elements(By.CSS_SELECTOR, "input[name=login]")
                if found:
                    return ("login", found[0])
                found = driver.find_elements(By.CSS_SELECTOR, "input[name=prompt][value=consent]")
                if found:
                    return ("consent", found[0])
                return None

            def act(kind: str, element: Any) -> bool:
                if kind == "login":
                    element.clear()
                    element.send_keys(login)
                    password_input = driver.find_element(By.CSS_SELECTOR, "input[name=password]")
                    password_input.clear()
                    password_input.send_keys(password)
                    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
                elif consent:
                    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
                else:
                    driver.find_element(By.PARTIAL_LINK_TEXT, "Cancel").click()
                return True

            deadline = time.monotonic() + timeout
            driver.get(authorization_url)
            for _ in range(MAX_STEPS):
                step = _poll(next_step, deadline, "a login, consent or callback page")
                if step == "done":
                    return str(driver.current_url)
                kind, element = step
                # The page may be replaced while we type or click (a reload, a slow redirect):
                # then the element is gone, nothing was submitted, and the next step looks again.
                if _settled(functools.partial(act, kind, element)) is None:
                    continue
                _poll(functools.partial(_gone, element), deadline, "the next page")
            raise BrowserFlowError(f"Chromium did not reach the callback after {MAX_STEPS} steps")
        finally:
            driver.quit()


def _page_changing(exc: BaseException) -> bool:
    """Whether a WebDriver error only means "the document changed under this call".

    While a page navigates, ChromeDriver answers calls on the old document with
    StaleElementReference, or with "unknown error" texts such as "Node with given id does not
    belong to the document" or "Execution context was destroyed". Those are "not yet", never a
    failure; anything else (the browser died, the session is gone) is a real error.
    """
    from selenium.common.exceptions import (
        JavascriptException,
        NoSuchElementException,
        StaleElementReferenceException,
        WebDriverException,
    )

    if isinstance(exc, (StaleElementReferenceException, NoSuchElementException)):
        return True
    if isinstance(exc, (JavascriptException, WebDriverException)):
        text = (getattr(exc, "msg", None) or str(exc)).lower()
        return any(marker in text for marker in _CHANGING_MARKERS)
    return False


_CHANGING_MARKERS = (
    "does not belong to the document",
    "execution context was destroyed",
    "cannot find context with specified id",
    "node is detached",
    "no node with given id",
    "stale element",
    "document unloaded",
    "inspected target navigated or closed",
)


def _settled(call: Callable[[], Any]) -> Any:
    """`call()`, or None when the document changed under it (see `_page_changing`)."""
    try:
        return call()
    except Exception as exc:
        if _page_changing(exc):
            return None
        raise


def _poll(check: Callable[[], Any], deadline: float, what: str) -> Any:
    """Call `check` every 50 ms until it returns something other than None or False."""
    while True:
        result = _settled(check)
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            raise BrowserFlowError(f"Chromium did not show {what} in time")
        time.sleep(0.05)


def _gone(element: Any) -> bool:
    """Whether `element` no longer belongs to the browser's current document."""
    try:
        element.is_enabled()
    except Exception as exc:
        if _page_changing(exc):
            return True
        raise
    return False


# -- a loopback callback catcher -------------------------------------------------------------------


class CallbackCatcher:
    """A stdlib HTTP server on 127.0.0.1 (port 0) that records GET /callback queries.

    Answers 200 on /callback, 404 elsewhere (a browser's /favicon.ico). Use as a context manager.
    Safe for concurrent use.

    Attributes:
        port, redirect_uri ("http://127.0.0.1:PORT/callback"),
        queries: the parsed query of each /callback hit, paths: every path requested.
    """

    def __init__(self, host: str = "127.0.0.1", path: str = "/callback") -> None:
        catcher = self
        self.path = path
        self.queries: list[dict[str, str]] = []
        self.paths: list[str] = []
        self._hit = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                catcher.paths.append(parts.path)
                if parts.path == catcher.path:
                    catcher.queries.append(dict(urllib.parse.parse_qsl(parts.query)))
                    body, status = b"<html><body>Login complete.</body></html>", 200
                    catcher._hit.set()
                else:
                    body, status = b"not found", 404
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = self._server.server_address[1]
        self.redirect_uri = f"http://{host}:{self.port}{path}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def wait(self, timeout: float = 10.0) -> dict[str, str]:
        """The first /callback query (waits for it)."""
        if not self._hit.wait(timeout):
            raise BrowserFlowError(f"no request to {self.redirect_uri} within {timeout} s")
        return self.queries[0]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> CallbackCatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- running a browser in the background -----------------------------------------------------------


class Background:
    """A callable `open_browser(url)` that runs `fn(url, **kwargs)` in a thread.

    `wait()` joins it and returns fn's result, re-raising its exception. Useful as the
    library's `open_browser`, which must not block its own callback server.
    """

    def __init__(self, fn: Callable[..., Any], **kwargs: Any) -> None:
        self.fn = fn
        self.kwargs = kwargs
        self.urls: list[str] = []
        self._thread: threading.Thread | None = None
        self._result: Any = None
        self._error: BaseException | None = None

    def __call__(self, url: str) -> bool:
        self.urls.append(url)

        def run() -> None:
            try:
                self._result = self.fn(url, **self.kwargs)
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=run, name="bench-browser", daemon=True)
        self._thread.start()
        return True

    @property
    def called(self) -> bool:
        return self._thread is not None

    def failure(self, timeout: float = 5.0) -> BaseException | None:
        """The browser side's exception, if it finished with one within `timeout`."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._error

    def wait(self, timeout: float = 60.0) -> Any:
        if self._thread is None:
            raise BrowserFlowError("the browser was never opened")
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise BrowserFlowError(f"the browser thread did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._result


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def chromium() -> Callable[..., str]:
    """`chromium_login`, after checking that chromium and chromedriver are installed."""
    require_chromium()
    return chromium_login


@pytest.fixture
def callback_catcher() -> Iterator[CallbackCatcher]:
    """A started `CallbackCatcher` on 127.0.0.1."""
    with CallbackCatcher() as catcher:
        yield catcher


@pytest.fixture
def background_browser() -> Iterator[Callable[..., Background]]:
    """`background_browser(fn, **kwargs) -> Background`; threads are joined at teardown."""
    made: list[Background] = []

    def factory(fn: Callable[..., Any] = http_browser_login, **kwargs: Any) -> Background:
        opener = Background(fn, **kwargs)
        made.append(opener)
        return opener

    yield factory
    for opener in made:
        if opener._thread is not None:
            with contextlib.suppress(BaseException):
                opener._thread.join(30)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that use the `chromium` fixture get the `browser` marker."""
    for item in items:
        if "chromium" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
