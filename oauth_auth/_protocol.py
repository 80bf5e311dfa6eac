"""Sans-IO OAuth pieces shared by the token source and the auth adapters.

Pure functions only: build the refresh and revocation forms, choose and apply the client
authentication method, read a Bearer challenge, decide whether a 401 deserves one retry.
The drivers do the I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from ._keys import normalize_scopes

if TYPE_CHECKING:
    from ._discovery import ProviderMetadata

__all__ = [
    "CLIENT_AUTH_METHODS",
    "BearerChallenge",
    "ClientAuthentication",
    "add_audience",
    "choose_client_auth",
    "client_auth_for",
    "encode_client_auth",
    "parse_bearer_challenges",
    "refresh_form",
    "revocation_form",
    "should_retry_401",
    "step_up_scopes",
]

#: The token endpoint client authentication methods oauth-auth speaks (RFC 6749 2.3.1,
#: OIDC Core section 9).
CLIENT_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
#: What a form post with client authentication is sent as.
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class ClientAuthentication:
    """How this client authenticates at the provider's endpoints; the secret never shows."""

    client_id: str
    client_secret: str = field(default="", repr=False)
    method: str = "none"


def choose_client_auth(
    client_id: str, client_secret: str, supported: Sequence[str] = ()
) -> ClientAuthentication:
    """The client authentication to use (pure).

    Without a secret: `none` (client_id in the form, a public client). With one:
    `client_secret_basic`, the method every server must support (RFC 6749 2.3.1), unless
    the provider lists only `client_secret_post` among `supported` (its
    `token_endpoint_auth_methods_supported`).
    """
    if not client_secret:
        return ClientAuthentication(client_id, "", "none")
    if "client_secret_post" in supported and "client_secret_basic" not in supported:
        return ClientAuthentication(client_id, client_secret, "client_secret_post")
    return ClientAuthentication(client_id, client_secret, "client_secret_basic")


def client_auth_for(
    client_id: str,
    client_secret: str,
    metadata: ProviderMetadata,
    *,
    revocation: bool = False,
    fallback: Sequence[str] = (),
) -> ClientAuthentication:
    """`choose_client_auth` with the methods the provider's metadata lists for the token
    endpoint (or, for `revocation`, the revocation endpoint's when it lists its own);
    `fallback` (the preset's) when it lists none."""
    methods = metadata.token_endpoint_auth_methods_supported
    if revocation and metadata.revocation_endpoint_auth_methods_supported:
        methods = metadata.revocation_endpoint_auth_methods_supported
    return choose_client_auth(client_id, client_secret, methods or fallback)


def encode_client_auth(
    auth: ClientAuthentication, url: str, form: Mapping[str, str]
) -> tuple[dict[str, str], str]:
    """The headers and body of a form post to `url`, authenticated as `auth` says.

    The encoding is authlib's (`authlib.oauth2.auth.ClientAuth`): an `Authorization: Basic`
    header, or `client_id` and `client_secret` in the body, or `client_id` alone. Any
    client_id the form already has is dropped first, so it is sent exactly once. For
    Basic, id and secret are form-urlencoded before authlib joins them, as RFC 6749 2.3.1
    asks (a secret with ":" or "%" must survive the server's decoding).
    """
    from authlib.oauth2.auth import ClientAuth

    body = urlencode(
        [(k, v) for k, v in form.items() if k not in ("client_id", "client_secret")]
    )
    if auth.method == "client_secret_basic":
        client = ClientAuth(
            quote(auth.client_id, safe=""), quote(auth.client_secret, safe=""), auth.method
        )
    elif auth.method in CLIENT_AUTH_METHODS:
        client = ClientAuth(auth.client_id, auth.client_secret, auth.method)
    else:  # pragma: no cover - choose_client_auth never returns another method
        raise ValueError(f"unsupported client authentication method {auth.method!r}")
    _, headers, encoded = client.prepare(
        "POST", url, {"Content-Type": FORM_CONTENT_TYPE}, body
    )
    return dict(headers), str(encoded)


def add_audience(form: dict[str, str], audience: str, audience_param: str = "resource") -> None:
    """Add the audience to a request form the way the provider reads it (RFC 8707
    `resource`, Auth0's `audience`), or not at all when `audience_param` is ""."""
    if audience and audience_param:
        form[audience_param] = audience


def refresh_form(
    refresh_token: str, client_id: str, audience: str = "", audience_param: str = "resource"
) -> dict[str, str]:
    """The refresh_token grant (RFC 6749 section 6, RFC 8707).

    No `scope` is sent: the provider keeps the granted scopes, and sending a scope that is
    not a subset of the grant is `invalid_scope`. `client_id` is in the form for a public
    client; `encode_client_auth` moves it where the client's method wants it.
    """
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    add_audience(form, audience, audience_param)
    return form


def revocation_form(token: str, client_id: str, hint: str = "refresh_token") -> dict[str, str]:
    """An RFC 7009 revocation request of a public client."""
    return {"token": token, "token_type_hint": hint, "client_id": client_id}


class BearerChallenge:
    """The parameters of one `Bearer` challenge in a WWW-Authenticate header (RFC 6750)."""

    __slots__ = ("params",)

    def __init__(self, params: dict[str, str]) -> None:
        self.params = params

    @property
    def error(self) -> str:
        """The `error` parameter ("" when absent)."""
        return self.params.get("error", "")

    def __repr__(self) -> str:
        return f"BearerChallenge({self.params!r})"


# auth-scheme, then auth-params (token68 is not used by Bearer). Values are tokens or
# quoted strings with backslash escapes (RFC 9110 section 11.2).
_PARAM = re.compile(
    r'\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*(?:,|$)'
)
# A scheme may follow a comma (the list separator) and be followed by one (no params).
_SCHEME = re.compile(r"[\s,]*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)(?:\s+|(?=,)|$)")

#: Longest header value we parse; anything longer is not a challenge we act on.
MAX_CHALLENGE_LENGTH = 8192


def parse_bearer_challenges(headers: Iterable[str]) -> list[BearerChallenge]:
    """Every Bearer challenge in the given WWW-Authenticate header values.

    Tolerant by design: malformed input never raises, it only yields fewer challenges.
    Other schemes (Basic, DPoP...) in the same header are skipped.
    """
    found: list[BearerChallenge] = []
    for header in headers:
        if not isinstance(header, str) or len(header) > MAX_CHALLENGE_LENGTH:
            continue
        pos = 0
        current: dict[str, str] | None = None
        while pos < len(header):
            m = _PARAM.match(header, pos)
            if m and current is not None:
                name, value = m.group(1).lower(), m.group(2)
                if value.startswith('"'):
                    value = re.sub(r"\\(.)", r"\1", value[1:-1])
                current.setdefault(name, value)
                pos = m.end()
                continue
            s = _SCHEME.match(header, pos)
            if not s or s.end() == pos:
                break
            scheme = s.group(1)
            pos = s.end()
            if scheme.lower() == "bearer":
                current = {}
                found.append(BearerChallenge(current))
            else:
                current = None
                # skip this scheme's params (or token68) up to the next scheme
                while pos < len(header):
                    m = _PARAM.match(header, pos)
                    if not m:
                        break
                    pos = m.end()
                if pos < len(header) and not _SCHEME.match(header, pos):
                    break
    return found


def step_up_scopes(status_code: int, www_authenticate: Iterable[str]) -> tuple[str, ...]:
    """The scopes a 403 asks for when its Bearer challenge says `insufficient_scope`.

    RFC 6750 section 3.1 answers a token that lacks a permission with 403 and
    `error="insufficient_scope"`, and may name in `scope` the scopes the request needs; the
    MCP authorization spec makes that the signal for a step-up login. Only a 403 with both
    counts: without `scope` the client cannot know what to ask for, so it does not guess.
    Returns () when there is nothing to step up to.
    """
    if status_code != 403:
        return ()
    for challenge in parse_bearer_challenges(www_authenticate):
        if challenge.error == "insufficient_scope":
            scopes = tuple(normalize_scopes([challenge.params.get("scope", "")]))
            if scopes:
                return scopes
    return ()


def should_retry_401(status_code: int, www_authenticate: Iterable[str]) -> bool:
    """Whether a response deserves exactly one retry with a fresh token.

    Only a 401, and not when a Bearer challenge says `insufficient_scope` (RFC 6750 3.1):
    the token is valid but lacks a permission, and a new token of the same grant would have
    the same scopes. Every other 401 is retried once: no challenge, `invalid_token`, and
    the codes some servers invent (`token_expired`...), which a fresh token may cure.
    """
    if status_code != 401:
        return False
    return all(c.error != "insufficient_scope" for c in parse_bearer_challenges(www_authenticate))
