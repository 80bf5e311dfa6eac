"""Step-up on 403 `insufficient_scope` (RFC 6750 section 3.1, the MCP authorization spec).

OIDCAuth with every client against a loopback API whose 403 names the scopes it needs: one
step-up, one more send with its token, and never a step-up that could not help (no `scope`
in the challenge, a body that cannot be replayed, a source that will not log in).
The source's own `step_up` is proven end to end in tests/e2e/test_mcp.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from oauth_auth import MemorySecrets, OAuthTokenSource, OIDCAuth, OIDCParams
from oauth_auth._protocol import step_up_scopes
from tests.support.api import ProtectedAPI
from tests.support.fakes import ISSUER, FakeClock, FakeProvider
from tests.unit.test_auth import CLIENTS, KEY, send


class StepUp:
    """A step-up login stand-in: records what it was asked for, returns a scoped token."""

    def __init__(self, api: ProtectedAPI, token: str | None = "at-admin") -> None:
        self.api = api
        self.token = token
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, scopes: Sequence[str]) -> str | None:
        self.calls.append(tuple(scopes))
        if self.token is not None:
            self.api.scoped_tokens.add(self.token)
        return self.token


@pytest.fixture
def source(fake_idp: FakeProvider, tmp_path: Any) -> OAuthTokenSource:
    store = MemorySecrets()
    store.set_secret(KEY, fake_idp.seed())
    return OAuthTokenSource(OIDCParams(ISSUER, "cli", ["read"]), key_provider=lambda: KEY,
                            secrets_provider=store, clock=FakeClock(),
                            transport=fake_idp.transport(), max_retries=0,
                            lock_dir=str(tmp_path))


@pytest.fixture
def api(api_factory: Callable[..., ProtectedAPI]) -> ProtectedAPI:
    made = api_factory(lambda token: token.startswith("at-"))
    made.mode = "step_up"
    return made


def test_scopes_come_only_from_a_403_insufficient_scope_challenge() -> None:
    challenge = ['Bearer error="insufficient_scope", scope="read admin read"']
    assert step_up_scopes(403, challenge) == ("read", "admin")
    assert step_up_scopes(401, challenge) == ()
    assert step_up_scopes(403, ['Bearer error="insufficient_scope"']) == ()
    assert step_up_scopes(403, ['Bearer error="invalid_token", scope="admin"']) == ()
    assert step_up_scopes(403, ['Basic realm="x", Bearer error="insufficient_scope", '
                                'scope="admin"']) == ("admin",)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_403_naming_scopes_gets_one_step_up_and_one_more_send(
    client: str, source: OAuthTokenSource, api: ProtectedAPI, fake_idp: FakeProvider
) -> None:
    step_up = StepUp(api)
    status, history = send(client, OIDCAuth(source, step_up=step_up), "POST",
                           api.url + "/data", json={"a": 1})
    assert status == 200
    assert step_up.calls == [("read", "admin")]
    assert [s.authorization for s in api.seen] == ["Bearer at-1", "Bearer at-admin"]
    assert api.seen[1].body == api.seen[0].body
    assert json.loads(api.seen[1].body) == {"a": 1}
    assert history == 1
    assert fake_idp.counts["refresh"] == 1  # a step-up is a login, never a refresh


@pytest.mark.parametrize("client", CLIENTS)
def test_a_step_up_that_does_not_log_in_leaves_the_403(
    client: str, source: OAuthTokenSource, api: ProtectedAPI
) -> None:
    step_up = StepUp(api, token=None)
    status, history = send(client, OIDCAuth(source, step_up=step_up), "GET", api.url + "/x")
    assert (status, history) == (403, 0)
    assert step_up.calls == [("read", "admin")]
    assert api.count() == 1


@pytest.mark.parametrize("client", CLIENTS)
def test_a_step_up_token_still_refused_is_not_stepped_up_again(
    client: str, source: OAuthTokenSource, api: ProtectedAPI
) -> None:
    step_up = StepUp(api)
    api.step_up_scope = "read admin"
    auth = OIDCAuth(source, step_up=lambda scopes: (step_up(scopes), "at-still-short")[1])
    status, _ = send(client, auth, "GET", api.url + "/x")
    assert status == 403
    assert len(step_up.calls) == 1  # one retry, no loop
    assert api.count() == 2


@pytest.mark.parametrize("client", CLIENTS)
def test_a_403_without_scope_or_other_error_is_final(
    client: str, source: OAuthTokenSource, api: ProtectedAPI
) -> None:
    step_up = StepUp(api)
    api.mode = "forbidden"  # a 403 with no challenge at all
    status, _ = send(client, OIDCAuth(source, step_up=step_up), "GET", api.url + "/x")
    assert status == 403
    assert step_up.calls == []
    assert api.count() == 1


@pytest.mark.parametrize("client", ["requests", "httpx", "httpx2"])
def test_a_body_that_cannot_be_replayed_gets_no_step_up(
    client: str, source: OAuthTokenSource, api: ProtectedAPI
) -> None:
    step_up = StepUp(api)
    body = (part for part in [b"one-", b"shot"])
    kwargs = {"data": body} if client == "requests" else {"content": body}
    status, _ = send(client, OIDCAuth(source, step_up=step_up), "POST", api.url + "/x",
                     **kwargs)
    assert status == 403
    assert step_up.calls == []


@pytest.mark.parametrize("client", CLIENTS)
def test_the_source_step_up_is_used_and_declines_when_not_interactive(
    client: str, source: OAuthTokenSource, api: ProtectedAPI, fake_idp: FakeProvider
) -> None:
    assert source.interactive is False
    status, _ = send(client, OIDCAuth(source), "GET", api.url + "/x")
    assert status == 403
    assert api.count() == 1
    assert source.oidc.scopes == ("read",)  # nothing was asked for, nothing changed


def test_source_step_up_declines_without_new_scopes(fake_idp: FakeProvider,
                                                    tmp_path: Any) -> None:
    logins: list[str] = []
    source = OAuthTokenSource(
        OIDCParams(ISSUER, "cli", ["read", "admin"]), key_provider=lambda: KEY,
        interactive=True, open_browser=logins.append, transport=fake_idp.transport(),
        lock_dir=str(tmp_path), login_timeout=1,
    )
    assert source.step_up(["admin"]) is None
    assert source.step_up(["read", "admin"]) is None
    assert logins == []
