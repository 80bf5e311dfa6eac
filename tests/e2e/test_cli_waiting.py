"""A command line that never waits in silence, through the console script, against the
real provider and Secret Service (issue 14, items 3 and 4, and the paste mode).

Each test fails on the code before the fix: `token` waited up to six minutes saying
nothing while another terminal's login waited for its user; the browser login printed
its URL and then nothing; a wrong client id showed its error only in the browser while
the command waited the whole timeout; the timeout's hint named a flag that did not exist;
and there was no way to log in over SSH without port forwarding.
"""

from __future__ import annotations

import subprocess
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import http_browser_login
from tests.support.cli import ROOT, browser_program, browser_urls, cli, cli_env, script
from tests.support.hygiene import LEDGER
from tests.support.idp import IdP
from tests.support.servers import free_port

pytestmark = [pytest.mark.idp, pytest.mark.keyring]


@pytest.fixture
def env(secret_service: Any, tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path, secret_service.subprocess_env())


class Running:
    """A command running in the background, its stderr read line by line."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([*script(), *argv], env=env, cwd=ROOT, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.proc.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not seen on stderr:\n{''.join(self.lines)}")

    def finish(self, stdin: str = "", timeout: float = 60) -> tuple[int, str, str]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        # Not communicate(): it would read stderr too, racing the reader thread.
        self.proc.stdin.write(stdin)
        self.proc.stdin.close()
        self.proc.wait(timeout=timeout)
        out = self.proc.stdout.read()
        self.proc.stdout.close()
        self.reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        err = "".join(self.lines)
        LEDGER.text("cli-stderr", err)
        return self.proc.returncode, out, err

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def test_token_says_once_whom_it_waits_for_then_exits_4(real_idp: IdP, env: dict[str, str]
                                                        ) -> None:
    flags = ["--issuer", real_idp.issuer, "--client-id", real_idp.client_id]
    # A login in another terminal waits for its user (nobody opens the URL).
    login = Running(["login", *flags, "--no-browser", "--callback-port", str(free_port())],
                    env)
    try:
        login.wait_for("Waiting for the browser")
        started = time.monotonic()
        result = cli(["token", *flags, "--wait", "2"], env)
        elapsed = time.monotonic() - started
    finally:
        login.stop()
    assert (result.returncode, result.stdout) == (4, ""), result.stderr
    assert result.stderr.count(f"waiting for process {login.proc.pid}") == 1, result.stderr
    assert "--wait SECONDS" in result.stderr
    assert 2 <= elapsed < 30


def test_the_browser_login_says_it_waits_once_on_stderr(real_idp: IdP, env: dict[str, str],
                                                        tmp_path: Path) -> None:
    program = browser_program(tmp_path / "b")
    result = cli(["login", "--issuer", real_idp.issuer, "--client-id", real_idp.client_id,
                  "--callback-port", str(free_port())], {**env, "BROWSER": str(program)})
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    assert result.stderr.count("Ctrl-C to cancel") == 1
    assert result.stderr.count("Waiting for the browser") == 1
    cli(["logout", "--issuer", real_idp.issuer, "--client-id", real_idp.client_id], env)


def test_a_wrong_client_id_fails_at_once(real_idp: IdP, env: dict[str, str],
                                         tmp_path: Path) -> None:
    program = browser_program(tmp_path / "b")
    started = time.monotonic()
    result = cli(["login", "--issuer", real_idp.issuer, "--client-id", "no-such-client",
                  "--callback-port", str(free_port())], {**env, "BROWSER": str(program)})
    elapsed = time.monotonic() - started
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert "refused the authorization request (HTTP 400)" in result.stderr
    assert "no-such-client" in result.stderr
    assert browser_urls(tmp_path / "b") == []  # no browser opened on a doomed login
    assert elapsed < 60  # not the 300 s login timeout


def test_the_timeout_hint_names_a_real_flag(real_idp: IdP, env: dict[str, str]) -> None:
    result = cli(["login", "--issuer", real_idp.issuer, "--client-id", real_idp.client_id,
                  "--no-browser", "--timeout", "1", "--callback-port", str(free_port())], env)
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert "timed out" in line
    assert "--timeout SECONDS" in line
    assert cli(["login", "--help"], env).stdout.count("--timeout") >= 1


def _login_url(running: Running) -> str:
    line = running.wait_for("/auth?")
    return next(w for w in line.split() if w.startswith("http"))


def test_paste_mode_checks_the_pasted_url_like_a_callback(real_idp: IdP,
                                                          env: dict[str, str]) -> None:
    flags = ["--issuer", real_idp.issuer, "--client-id", real_idp.client_id]
    running = Running(["login", *flags, "--paste"], env)
    try:
        url = _login_url(running)
        running.wait_for("paste it here")
        # The user's browser ends on the redirect URI, which nothing here serves.
        final = http_browser_login(url, follow_callback=False)
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(final).query))
        assert query["iss"] == real_idp.issuer
        stale = final.replace(f"state={urllib.parse.quote(query['state'])}", "state=stale")
        assert stale != final
        code, out, err = running.finish(stale + "\n" + final + "\n")
    finally:
        running.stop()
    assert (code, out) == (0, ""), err
    assert "belongs to another login" in err  # the stale state was refused, not used
    assert "Logged in" in err
    assert real_idp.token_requests("authorization_code") == 1
    token = cli(["token", *flags], env)
    assert token.returncode == 0
    LEDGER.secret(token.stdout.strip(), "pasted login's access token")
    cli(["logout", *flags], env)


def test_paste_mode_refuses_another_issuers_response(real_idp: IdP,
                                                     env: dict[str, str]) -> None:
    flags = ["--issuer", real_idp.issuer, "--client-id", real_idp.client_id]
    running = Running(["login", *flags, "--paste"], env)
    try:
        url = _login_url(running)
        final = http_browser_login(url, follow_callback=False)
        query = urllib.parse.urlsplit(final).query
        forged = final.replace(urllib.parse.quote(real_idp.issuer, safe=""),
                               urllib.parse.quote("https://evil.example.test", safe=""))
        assert forged != final, query
        code, out, err = running.finish(forged + "\n")
    finally:
        running.stop()
    assert (code, out) == (1, "")
    assert "comes from issuer 'https://evil.example.test'" in err
    assert real_idp.token_requests("authorization_code", outcome=None) == 0
