"""Sans-IO OAuth pieces shared by the token source and the auth adapters.

Pure functions only: build the refresh and revocation forms, read a Bearer challenge,
decide whether a 401 deserves one retry. The drivers do the I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "BearerChallenge",
    "parse_bearer_challenges",
    "refresh_form",
    "revocation_form",
    "should_retry_401",
]


def refresh_form(refresh_token: str, client_id: str, audience: str = "") -> dict[str, str]:
    """The refresh_token grant of a public client (RFC 6749 section 6, RFC 8707).

    No `scope` is sent: the provider keeps the granted scopes, and sending a scope that is
    not a subset of the grant is `invalid_scope`.
    """
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    if audience:
        form["resource"] = audience
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
