"""Unit tests of the loopback callback server: a thread plays the browser with httpx."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from urllib.parse import urlencode

import httpx
import pytest

from oauth_auth._loopback import CallbackServer, listen_addresses
from oauth_auth.errors import ConfigError, LoginError
from tests.support.servers import free_port

ISSUER = "https://idp.example.com"
STATE = "the-state-0123456789"



def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


IPV6 = has_ipv6_loopback()


def can_bind(port: int, address: str = "127.0.0.1") -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, port))
        except OSError:
            return False
    return True


class Browser:
    """Plays the browser tab in a thread: GETs the given URLs in order, records answers."""

    def __init__(self) -> None:
        self.responses: list[httpx.Response] = []
        self.errors: list[BaseException] = []
        self._thread: threading.Thread | None = None

    def visit(self, *urls: str) -> None:
        def run() -> None:
            try:
                with httpx.Client(trust_env=False, timeout=5) as client:
                    for url in urls:
                        self.responses.append(client.get(url))
            except BaseException as exc:
                self.errors.append(exc)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(10)
            assert not self._thread.is_alive()
        assert not self.errors, self.errors


def url(port: int, host: str = "127.0.0.1", path: str = "/callback", **params: str) -> str:
    netloc = f"[{host}]" if ":" in host else host
    q = f"?{urlencode(params)}" if params else ""
    return f"http://{netloc}:{port}{path}{q}"


class Clock:
    """Fake monotonic clock: every reading advances it by `step`."""

    def __init__(self, step: float = 0.0) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def make_server(port: int) -> Iterator[Callable[..., CallbackServer]]:
    servers: list[CallbackServer] = []

    def make(**kw: object) -> CallbackServer:
        args: dict[str, object] = {"host": "127.0.0.1", "port": port, "state": STATE,
                                   "issuer": ISSUER}
        args.update(kw)
        server = CallbackServer(**args)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.close()


def wait(server: CallbackServer, seconds: float = 10.0) -> str:
    # A real deadline as the safety net; the tests never get near it.
    import time

    return server.wait(deadline=time.monotonic() + seconds)


def test_code_is_returned_and_success_page_shown(make_server: Callable[..., CallbackServer],
                                                  port: int) -> None:
    server = make_server()
    assert server.redirect_uri == f"http://127.0.0.1:{port}/callback"
    browser = Browser()
    browser.visit(url(port, code="the-code", state=STATE))
    assert wait(server) == "the-code"
    browser.join()
    (page,) = browser.responses
    assert page.status_code == 200
    assert "Login complete" in page.text
    assert "the-code" not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_favicon_and_other_paths_get_404_then_callback_works(
    make_server: Callable[..., CallbackServer], port: int
) -> None:
    server = make_server()
    browser = Browser()
    browser.visit(
        url(port, path="/favicon.ico"),
        url(port, path="/", code="x", state=STATE),
        url(port, path="/callback/", code="x", state=STATE),
        url(port, code="real", state=STATE),
    )
    assert wait(server) == "real"
    browser.join()
    assert [r.status_code for r in browser.responses] == [404, 404, 404, 200]


def test_wrong_state_is_ignored_then_the_right_one_works(
    make_server: Callable[..., CallbackServer], port: int
) -> None:
    server = make_server()
    browser = Browser()
    browser.visit(
        url(port, code="evil", state="forged"),
        url(port, code="evil"),
        url(port, error="access_denied", state="forged"),
        url(port, code="good", state=STATE),
    )
    assert wait(server) == "good"
    browser.join()
    assert [r.status_code for r in browser.responses] == [400, 400, 400, 200]
    assert "does not belong to the login in progress" in browser.responses[0].text


def test_access_denied_ends_the_login_with_the_error_code(
    make_server: Callable[..., CallbackServer], port: int
) -> None:
    server = make_server()
    browser = Browser()
    browser.visit(url(port, error="access_denied", error_description="User cancelled",
                      state=STATE))
    with pytest.raises(LoginError) as info:
        wait(server)
    browser.join()
    assert info.value.error == "access_denied"
    assert info.value.description == "User cancelled"
    page = browser.responses[0]
    assert "Login failed" in page.text
    assert "access_denied" in page.text
    assert "User cancelled" in page.text


def test_echoed_text_is_html_escaped(make_server: Callable[..., CallbackServer],
                                     port: int) -> None:
    server = make_server()
    evil = '<script>alert("x")</script>'
    browser = Browser()
    browser.visit(
        url(port, error="<img src=x onerror=alert(1)>", error_description=evil, state="nope"),
        url(port, error="server_error", error_description=evil, state=STATE),
    )
    with pytest.raises(LoginError):
        wait(server)
    browser.join()
    for page in browser.responses:
        assert "<script>" not in page.text
        assert "<img" not in page.text
    assert "&lt;script&gt;" in browser.responses[1].text
    assert "&lt;img" in browser.responses[0].text


def test_iss_mismatch(make_server: Callable[..., CallbackServer], port: int) -> None:
    server = make_server()
    browser = Browser()
    browser.visit(url(port, code="c", state=STATE, iss="https://evil.example.com"))
    with pytest.raises(LoginError, match=r"evil\.example\.com"):
        wait(server)
    browser.join()
    assert browser.responses[0].status_code == 400


def test_missing_iss_when_promised(make_server: Callable[..., CallbackServer],
                                   port: int) -> None:
    server = make_server(require_iss=True)
    browser = Browser()
    browser.visit(url(port, code="c", state=STATE))
    with pytest.raises(LoginError, match="iss"):
        wait(server)
    browser.join()


def test_matching_iss(make_server: Callable[..., CallbackServer], port: int) -> None:
    server = make_server(require_iss=True)
    browser = Browser()
    browser.visit(url(port, code="c", state=STATE, iss=ISSUER))
    assert wait(server) == "c"
    browser.join()


def test_missing_code(make_server: Callable[..., CallbackServer], port: int) -> None:
    server = make_server()
    browser = Browser()
    browser.visit(url(port, state=STATE))
    with pytest.raises(LoginError, match="no authorization code"):
        wait(server)
    browser.join()


def test_only_get_is_served(make_server: Callable[..., CallbackServer], port: int) -> None:
    server = make_server()
    with httpx.Client(trust_env=False, timeout=5) as client:
        response = client.post(url(port, code="c", state=STATE))
    assert response.status_code == 405
    browser = Browser()
    browser.visit(url(port, code="c", state=STATE))
    assert wait(server) == "c"
    browser.join()


def test_late_callbacks_after_the_end_are_told_so(
    make_server: Callable[..., CallbackServer], port: int
) -> None:
    server = make_server()
    browser = Browser()
    browser.visit(url(port, code="first", state=STATE))
    assert wait(server) == "first"
    browser.join()
    with httpx.Client(trust_env=False, timeout=5) as client:
        late = client.get(url(port, code="second", state=STATE))
    assert late.status_code == 409
    assert "already finished" in late.text


def test_busy_port_names_the_port(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(LoginError) as info:
            CallbackServer(host="localhost", port=port, state=STATE, issuer=ISSUER)
    assert str(port) in str(info.value)
    assert "callback_port" in str(info.value)
    assert info.value.error == "port_in_use"
    # Nothing half-bound stays behind (the ::1 socket, if it had been opened first).
    assert can_bind(port)
    if IPV6:
        assert can_bind(port, "::1")


@pytest.mark.skipif(not IPV6, reason="no IPv6 loopback on this machine")
def test_busy_ipv6_port_is_busy_too(port: int) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as squatter:
        squatter.bind(("::1", port))
        squatter.listen()
        with pytest.raises(LoginError, match=str(port)):
            CallbackServer(host="localhost", port=port, state=STATE, issuer=ISSUER)
    assert can_bind(port)


def test_timeout_with_a_fake_clock(make_server: Callable[..., CallbackServer]) -> None:
    server = make_server()
    clock = Clock(step=100.0)
    with pytest.raises(LoginError, match="timed out") as info:
        server.wait(deadline=clock.now + 250, clock=clock)
    assert info.value.error == "timeout"


def test_keyboard_interrupt_releases_the_port(port: int) -> None:
    def interrupted() -> float:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), CallbackServer(
        host="localhost", port=port, state=STATE, issuer=ISSUER
    ) as server:
        server.wait(deadline=1e12, clock=interrupted)
    assert can_bind(port)
    if IPV6:
        assert can_bind(port, "::1")


def test_port_is_released_after_close(port: int) -> None:
    server = CallbackServer(host="127.0.0.1", port=port, state=STATE, issuer=ISSUER)
    assert not can_bind(port)
    server.close()
    server.close()  # idempotent
    assert can_bind(port)


def test_localhost_listens_on_both_loopbacks(make_server: Callable[..., CallbackServer],
                                             port: int) -> None:
    server = make_server(host="localhost")
    assert server.redirect_uri == f"http://localhost:{port}/callback"
    expected = ["127.0.0.1", "::1"] if IPV6 else ["127.0.0.1"]
    assert server.addresses == expected
    browser = Browser()
    urls = [url(port, "127.0.0.1", code="via4", state="x")]
    if IPV6:
        urls.append(url(port, "::1", code="via6", state=STATE))
    else:
        urls.append(url(port, "127.0.0.1", code="via6", state=STATE))
    browser.visit(*urls)
    assert wait(server) == "via6"
    browser.join()
    assert [r.status_code for r in browser.responses] == [400, 200]


@pytest.mark.skipif(not IPV6, reason="no IPv6 loopback on this machine")
def test_ip_literal_listens_there_only(make_server: Callable[..., CallbackServer],
                                       port: int) -> None:
    server = make_server(host="127.0.0.1")
    assert server.addresses == ["127.0.0.1"]
    assert can_bind(port, "::1")
    server6 = CallbackServer(host="::1", port=free_port(), state=STATE, issuer=ISSUER)
    try:
        assert server6.addresses == ["::1"]
        assert server6.redirect_uri.startswith("http://[::1]:")
    finally:
        server6.close()


def test_non_loopback_hosts_are_refused(port: int) -> None:
    for host in ("0.0.0.0", "example.com", "192.168.1.1"):
        with pytest.raises(ConfigError):
            CallbackServer(host=host, port=port, state=STATE, issuer=ISSUER)
    assert listen_addresses("LOCALHOST") == ["127.0.0.1", "::1"]


def test_nothing_secret_is_logged(make_server: Callable[..., CallbackServer], port: int,
                                  caplog: pytest.LogCaptureFixture,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG, logger="oauth_auth")
    server = make_server()
    browser = Browser()
    browser.visit(url(port, code="SECRET-CODE", state="WRONG"),
                  url(port, code="SECRET-CODE", state=STATE))
    assert wait(server) == "SECRET-CODE"
    browser.join()
    out, err = capsys.readouterr()
    assert "SECRET-CODE" not in out + err
    assert "SECRET-CODE" not in caplog.text
    assert STATE not in caplog.text


# --- the one-time start page and the Host check (issue 15, item 1) ---------------------------

AUTH_URL = f"{ISSUER}/auth?state={STATE}&nonce=n&code_challenge=c"


def test_the_start_page_redirects_once_then_the_callback_works(
    make_server: Callable[..., CallbackServer], port: int
) -> None:
    server = make_server(authorization_url=AUTH_URL)
    start = server.start_url
    assert start.startswith(f"http://127.0.0.1:{port}/start/")
    assert STATE not in start
    assert len(start.rsplit("/", 1)[1]) >= 43  # 32 random bytes
    with httpx.Client(trust_env=False, timeout=5) as client:
        first = client.get(start)
    assert first.status_code == 302
    assert first.headers["location"] == AUTH_URL
    assert first.headers["cache-control"] == "no-store"
    assert first.headers["referrer-policy"] == "no-referrer"
    browser = Browser()
    browser.visit(url(port, code="the-code", state=STATE))
    assert wait(server) == "the-code"
    browser.join()


def test_a_second_fetch_of_the_start_page_ends_the_login(
    make_server: Callable[..., CallbackServer], port: int
) -> None:
    server = make_server(authorization_url=AUTH_URL)
    browser = Browser()
    browser.visit(server.start_url, server.start_url, url(port, code="late", state=STATE))
    with pytest.raises(LoginError) as info:
        wait(server)
    browser.join()
    first, second, late = browser.responses
    assert first.status_code == 302
    assert second.status_code == 400
    assert "location" not in second.headers
    assert STATE not in second.text  # the second fetcher learns nothing
    assert "Login stopped" in second.text
    assert late.status_code == 409  # the code that came after is not used
    assert info.value.error == "start_page_reused"
    assert info.value.hint


def test_a_wrong_start_token_is_a_404_and_changes_nothing(
    make_server: Callable[..., CallbackServer], port: int
) -> None:
    server = make_server(authorization_url=AUTH_URL)
    token = server.start_url.rsplit("/", 1)[1]
    wrong = [server.start_url[:-1] + ("A" if token[-1] != "A" else "B"),
             url(port, path="/start/"), server.start_url + "/", server.start_url.upper()]
    browser = Browser()
    browser.visit(*wrong, server.start_url, url(port, code="c", state=STATE))
    assert wait(server) == "c"
    browser.join()
    assert [r.status_code for r in browser.responses] == [404, 404, 404, 404, 302, 200]


def test_without_an_authorization_url_there_is_no_start_page(
    make_server: Callable[..., CallbackServer], port: int
) -> None:
    server = make_server()
    browser = Browser()
    browser.visit(server.start_url, url(port, code="c", state=STATE))
    assert wait(server) == "c"
    browser.join()
    assert browser.responses[0].status_code == 404


@pytest.mark.parametrize("host", [
    "evil.example", "evil.example:{port}", "127.0.0.1:1", "localhost:{port}", "127.0.0.2:{port}",
    "", "127.0.0.1:{port}.evil.example",
])
def test_a_foreign_host_header_gets_421_and_the_login_goes_on(
    make_server: Callable[..., CallbackServer], port: int, host: str
) -> None:
    """DNS rebinding: a page of another site whose name resolves to 127.0.0.1."""
    server = make_server(authorization_url=AUTH_URL)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        header = f"Host: {host.format(port=port)}\r\n" if host else ""
        path = server.start_url.split(str(port), 1)[1]
        conn.sendall(f"GET {path} HTTP/1.1\r\n{header}Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 421 "), answer[:80]
    assert AUTH_URL.encode() not in answer
    # The start page was not used up, and the login goes on.
    with httpx.Client(trust_env=False, timeout=5) as client:
        assert client.get(server.start_url).status_code == 302
    Browser().visit(url(port, code="c", state=STATE))
    assert wait(server) == "c"


def test_localhost_answers_its_loopback_names_and_nothing_else(port: int) -> None:
    from oauth_auth._loopback import allowed_hosts

    assert allowed_hosts("localhost", port) == {
        f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}
    assert allowed_hosts("127.0.0.1", port) == {f"127.0.0.1:{port}"}
    assert allowed_hosts("::1", port) == {f"[::1]:{port}"}
    assert allowed_hosts("LOCALHOST", 80) >= {"localhost", "localhost:80"}


def test_peer_uid_finds_the_owner_of_the_other_end(port: int) -> None:
    from oauth_auth._loopback import peer_uid

    if not sys.platform.startswith("linux"):
        pytest.skip("/proc/net/tcp is Linux's")
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        if family == socket.AF_INET6 and not IPV6:
            continue
        with socket.create_server((address, 0), family=family) as server:
            with socket.create_connection((address, server.getsockname()[1])) as client:
                conn, peer = server.accept()
                with conn:
                    assert peer_uid(peer, conn.getsockname()) == os.getuid()
                    # Not a connection of this machine's table: unknown, not refused.
                    assert peer_uid((address, 1), conn.getsockname()) is None
                    assert client.getsockname()[1] == peer[1]


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.getuid() != 0,
                    reason="another local user needs root to play")
def test_another_local_users_requests_get_403_and_count_for_nothing(
    make_server: Callable[..., CallbackServer], port: int
) -> None:
    from tests.support.fake_browser import fetch_as_another_user

    server = make_server(authorization_url=AUTH_URL)
    assert fetch_as_another_user(server.start_url) == 403
    assert fetch_as_another_user(url(port, code="theirs", state=STATE)) == 403
    with httpx.Client(trust_env=False, timeout=5) as client:
        assert client.get(server.start_url).status_code == 302  # still unused
    Browser().visit(url(port, code="ours", state=STATE))
    assert wait(server) == "ours"
