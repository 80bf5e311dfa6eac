"""Library bugs found by the reliability suite, each pinned by a small, fast test.

Each test here failed before its fix (see the commit that added it); the end-to-end
versions of the same faults live in test_faults.py and test_hostile.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oauth_auth import OAuthError
from oauth_auth._http import oauth_error_from
from oauth_auth._token import parse_token_response


@pytest.mark.parametrize(
    "make",
    [
        lambda: parse_token_response({"token_type": "Bearer"}, 0.0),
        lambda: parse_token_response({"access_token": "a", "token_type": "Bearer",
                                      "expires_in": "soon"}, 0.0),
        lambda: oauth_error_from({"error": "invalid_scope"}, 400),
        lambda: oauth_error_from({"error": 42}, 400),
    ],
    ids=["no-access-token", "expires-in-string", "idp-error", "malformed-error"],
)
def test_every_oauth_error_has_a_hint(make: object) -> None:
    try:
        exc = make()  # type: ignore[operator]
    except OAuthError as raised:
        exc = raised
    assert isinstance(exc, OAuthError)
    assert exc.hint.strip()
    assert exc.hint in str(exc)


def test_deeply_nested_json_from_the_provider_is_not_a_recursion_error() -> None:
    import httpx

    from oauth_auth._http import IdPHttp

    body = b"[" * 100_000 + b"]" * 100_000
    http = IdPHttp(transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body)),
                   max_retries=0)
    try:
        with pytest.raises(OAuthError, match="not a JSON object"):
            http.post_form("https://idp.example.test/token", {})
        from oauth_auth import TransportError

        with pytest.raises(TransportError, match="without a JSON object"):
            http.get_json("https://idp.example.test/.well-known/openid-configuration")
    finally:
        http.close()


@pytest.mark.parametrize("sign", [1, -1])
def test_an_integer_expires_in_too_large_for_a_float_is_not_an_overflow(sign: int) -> None:
    import json

    from oauth_auth._token import MAX_EXPIRES_IN

    doc = json.loads('{"access_token": "a", "token_type": "Bearer", "expires_in": '
                     + ("-" if sign < 0 else "") + "1" + "0" * 400 + "}")
    if sign > 0:
        assert parse_token_response(doc, 100.0).expiry == 100.0 + MAX_EXPIRES_IN
    else:
        with pytest.raises(OAuthError, match="expires_in"):
            parse_token_response(doc, 100.0)


def test_an_unusable_lock_directory_is_a_typed_error_and_keeps_the_session(
    tmp_path: Path,
) -> None:
    from oauth_auth import ConfigError, MemorySecrets, OAuthTokenSource, OIDCParams
    from tests.support.fakes import ISSUER, FakeClock, FakeProvider

    base = tmp_path
    (base / "file").write_text("not a directory")
    provider = FakeProvider()
    store = MemorySecrets({"K": provider.seed("rt-0")})
    source = OAuthTokenSource(OIDCParams(ISSUER, "cli"), key_provider=lambda: "K",
                              secrets_provider=store, lock_dir=base / "file" / "locks",
                              transport=provider.transport(), clock=FakeClock())
    with pytest.raises(ConfigError, match="cannot create the refresh lock file") as info:
        source.token()
    assert "lock_dir" in info.value.hint
    assert store.get_secret("K") == "rt-0"
    assert provider.counts["refresh"] == 0
    (base / "file").unlink()
    assert source.token() == "at-1"


def test_a_rotated_refresh_token_the_store_refused_is_kept_and_stored_later(
    tmp_path: Path,
) -> None:
    """The store fails the write of a rotated refresh token (keyring gone for a moment):
    the stored one is spent, so the next refresh must use the new one from memory and
    store it, not spend the stored one and end the session with invalid_grant."""
    from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCParams
    from tests.support.fakes import ISSUER, CountingSecrets, FakeClock, FakeProvider

    provider = FakeProvider()
    inner = MemorySecrets({"K": provider.seed("rt-0")})
    store = CountingSecrets(inner)
    store.fail_writes = {"K"}
    clock = FakeClock()
    source = OAuthTokenSource(OIDCParams(ISSUER, "cli"), key_provider=lambda: "K",
                              secrets_provider=store, transport=provider.transport(),
                              clock=clock, lock_dir=tmp_path)
    assert source.token() == "at-1"  # served; rt-1 lives only in memory
    assert inner.get_secret("K") == "rt-0"

    clock.advance(3600)  # still failing: refresh with rt-1, remember rt-2
    assert source.token() == "at-2"
    assert inner.get_secret("K") == "rt-0"

    store.fail_writes.clear()  # the backend is back
    clock.advance(3600)
    assert source.token() == "at-3"
    assert provider.counts["invalid_grant"] == 0
    assert inner.get_secret("K") == "rt-3"



def test_a_config_lock_that_cannot_be_created_is_a_config_error(tmp_path: Path) -> None:
    import os

    from oauth_auth import ConfigError
    from oauth_auth._config import Config

    config = Config(tmp_path / "config.json")
    config.lock_path.mkdir()  # something that cannot be opened as a file is in the way
    os.mkdir(config.lock_path / "x")
    with pytest.raises(ConfigError, match="cannot create the config lock file") as info:
        config.set_entry("profiles", "p", {"issuer": "https://idp.example.test"})
    assert info.value.hint
    assert not config.path.exists()


@pytest.mark.parametrize("value", ["²", "³", "¹²"])
def test_a_retry_after_of_non_ascii_digits_is_ignored_not_a_value_error(value: str) -> None:
    import httpx

    from oauth_auth import TransportError
    from oauth_auth._http import IdPHttp, _retry_after

    assert _retry_after(value, 0.0) is None
    raw = [(b"Retry-After", value.encode("utf-8"))]  # as a provider would send it
    http = IdPHttp(transport=httpx.MockTransport(
        lambda r: httpx.Response(503, headers=raw)), max_retries=1, sleep=lambda s: None)
    try:
        with pytest.raises(TransportError, match="HTTP 503"):
            http.post_form("https://idp.example.test/token", {})
    finally:
        http.close()


def test_provider_error_text_cannot_carry_terminal_escapes() -> None:
    exc = oauth_error_from({"error": "invalid_grant\x1b[2J",
                            "error_description": "\x1b]0;pwned\x07 bye\r\nfake prompt $",
                            "error_uri": "https://x.test/\x1b[31m"}, 400)
    for text in (exc.error, exc.description, exc.error_uri, str(exc)):
        assert text.isprintable(), repr(text)
    assert "pwned" in exc.description  # the words survive, only the controls go


def test_malformed_urls_in_discovery_are_config_errors() -> None:
    from oauth_auth import ConfigError
    from oauth_auth._discovery import check_issuer_url, parse_metadata

    with pytest.raises(ConfigError, match="not a valid URL"):
        parse_metadata({"issuer": "https://idp.test", "token_endpoint": "https://[x"},
                       "https://idp.test")
    with pytest.raises(ConfigError, match="not a valid URL"):
        check_issuer_url("https://[x")
    with pytest.raises(ConfigError):
        parse_metadata({"issuer": "http://[x"}, "http://[x")


def test_a_malformed_device_verification_uri_is_a_login_error() -> None:
    from oauth_auth import LoginError
    from oauth_auth._authorize import parse_device_authorization

    with pytest.raises(LoginError, match="verification_uri"):
        parse_device_authorization({"device_code": "d", "user_code": "ABCD",
                                    "verification_uri": "http://[x"})
    auth = parse_device_authorization({"device_code": "d", "user_code": "ABCD",
                                       "verification_uri": "https://idp.test/device",
                                       "verification_uri_complete": "https://[x"})
    assert auth.verification_uri_complete == ""


@pytest.mark.parametrize("header", [
    'Negotiate, Bearer error="insufficient_scope"',
    'Bearer, Bearer error="insufficient_scope"',
    'Basic dXNlcjpwYXNz, Bearer error="insufficient_scope", scope="admin"',
])
def test_a_bearer_challenge_after_a_bare_scheme_is_seen(header: str) -> None:
    from oauth_auth._protocol import parse_bearer_challenges, should_retry_401

    assert any(c.error == "insufficient_scope" for c in parse_bearer_challenges([header]))
    assert should_retry_401(401, [header]) is False


def test_a_deeply_nested_config_file_is_a_config_error(tmp_path: Path) -> None:
    from oauth_auth import ConfigError
    from oauth_auth._config import Config

    path = tmp_path / "config.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="not valid JSON"):
        Config(path).load()


def _refusing_source(tmp_path: Path) -> tuple[Any, Any, Any]:
    from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCParams
    from tests.support.fakes import ISSUER, CountingSecrets, FakeClock, FakeProvider

    provider = FakeProvider()
    inner = MemorySecrets({"K": provider.seed("rt-0")})
    store = CountingSecrets(inner)
    store.fail_writes = {"K"}
    source = OAuthTokenSource(OIDCParams(ISSUER, "cli"), key_provider=lambda: "K",
                              secrets_provider=store, transport=provider.transport(),
                              clock=FakeClock(), lock_dir=tmp_path)
    assert source.token() == "at-1"  # rt-0 spent, rt-1 refused by the store
    assert inner.get_secret("K") == "rt-0"
    return source, store, inner


def test_a_refused_rotation_is_stored_when_the_source_goes_away(tmp_path: Path) -> None:
    """Before: a process that ended before its next refresh took the only copy of the new
    refresh token with it, and the next process met invalid_grant."""
    import gc

    source, store, inner = _refusing_source(tmp_path)
    store.fail_writes.clear()  # the backend is back before the process ends
    writes = store.calls["set"]
    del source
    gc.collect()
    assert inner.get_secret("K") == "rt-1"
    assert store.calls["set"] == writes + 1


def test_the_last_try_never_overwrites_another_processs_login(tmp_path: Path) -> None:
    import gc

    source, store, inner = _refusing_source(tmp_path)
    store.fail_writes.clear()
    inner.set_secret("K", "rt-from-a-new-login")  # another process logged in meanwhile
    del source
    gc.collect()
    assert inner.get_secret("K") == "rt-from-a-new-login"


def test_logout_forgets_a_refused_rotation(tmp_path: Path) -> None:
    import gc

    source, store, inner = _refusing_source(tmp_path)
    store.fail_writes.clear()
    source.logout()
    assert inner.get_secret("K") is None
    del source
    gc.collect()
    assert inner.get_secret("K") is None  # nothing written back after the logout


def test_a_refused_rotation_is_stored_when_the_process_exits(tmp_path: Path) -> None:
    """The same at a real interpreter exit, with the source still alive (a module global)."""
    import subprocess
    import sys
    import textwrap

    from tests.support.filesecrets import FileSecrets

    root = Path(__file__).resolve().parents[2]
    store_dir = tmp_path / "store"
    FileSecrets(store_dir).set_secret("K", "rt-0")
    code = textwrap.dedent(f"""
        import sys
        from oauth_auth import OAuthTokenSource, OIDCParams, SecretsError
        from tests.support.fakes import ISSUER, FakeClock, FakeProvider
        from tests.support.filesecrets import FileSecrets

        class Refusing(FileSecrets):
            refuse = True
            def set_secret(self, name, value):
                if self.refuse and name == "K":
                    raise SecretsError("backend read-only (test)")
                super().set_secret(name, value)

        provider = FakeProvider()
        provider.seed("rt-0")
        store = Refusing({str(store_dir)!r})
        SOURCE = OAuthTokenSource(OIDCParams(ISSUER, "cli"), key_provider=lambda: "K",
                                  secrets_provider=store, transport=provider.transport(),
                                  clock=FakeClock(), lock_dir={str(tmp_path)!r})
        print(SOURCE.token(), store.get_secret("K"))
        store.refuse = False
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=root, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["at-1", "rt-0"]
    assert FileSecrets(store_dir).get_secret("K") == "rt-1"
    assert "rt-1" not in result.stderr
    assert "rt-0" not in result.stderr
