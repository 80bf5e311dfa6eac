"""The token value, its freshness rules and the shared access-token cache format (pure).

Freshness is always judged against an absolute expiry computed when the response arrived
(never `expires_in` relative to "now"), with the preemptive window as a named parameter,
so tests can drive it with a fake clock.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .errors import OAuthError

__all__ = [
    "DEFAULT_PREEMPTIVE_WINDOW",
    "MAX_EXPIRES_IN",
    "Token",
    "decode_at_entry",
    "encode_at_entry",
    "fingerprint",
    "format_rfc3339",
    "identity_claims",
    "parse_token_response",
]

#: Seconds before expiry at which a token stops being served and a refresh starts.
DEFAULT_PREEMPTIVE_WINDOW = 30.0
#: Longest token lifetime we believe (10 years); a larger `expires_in` is clamped to it.
MAX_EXPIRES_IN = 10 * 365 * 24 * 3600


def fingerprint(secret: str) -> str:
    """A short, non-reversible tag for a secret, for logs and reprs (8 hex chars of sha256)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Token:
    """An access token with its absolute expiry and, possibly, a refresh token.

    `expiry` is seconds since the epoch (UTC), or None when the provider gave no lifetime
    (such a token is served until a 401 invalidates it). `refresh_at` is when the holder
    should start refreshing: normally `expiry - window`, but for a token whose whole life
    is shorter than the window it is the middle of that life, so a short-lived token is
    refreshed once per half-life instead of on every call (the Go original's refresh loop).
    The repr shows only the expiry and fingerprints, never a secret.
    """

    access_token: str = field(repr=False)
    expiry: float | None
    refresh_token: str | None = field(default=None, repr=False)
    id_token: str | None = field(default=None, repr=False)
    scope: str | None = None
    refresh_at: float | None = None

    def __repr__(self) -> str:
        rt = f", refresh_token=<{fingerprint(self.refresh_token)}>" if self.refresh_token else ""
        return (
            f"Token(access_token=<{fingerprint(self.access_token)}>, expiry={self.expiry_text()}"
            f"{rt})"
        )

    def expiry_text(self) -> str:
        """The expiry in RFC 3339 UTC, or "none"."""
        return format_rfc3339(self.expiry) if self.expiry is not None else "none"

    @property
    def expiry_datetime(self) -> datetime | None:
        """The expiry as a timezone-aware UTC datetime."""
        if self.expiry is None:
            return None
        return datetime.fromtimestamp(self.expiry, tz=timezone.utc)

    def fresh(self, now: float) -> bool:
        """True while the token may be served without refreshing it first."""
        if self.expiry is None:
            return True
        limit = self.refresh_at if self.refresh_at is not None else self.expiry
        return now < limit

    def valid(self, now: float) -> bool:
        """True while the token has not expired (it may be inside its refresh window)."""
        return self.expiry is None or now < self.expiry

    def with_window(self, now: float, window: float) -> Token:
        """This token with `refresh_at` set for a holder whose preemptive window is `window`."""
        if self.expiry is None:
            return self
        refresh_at = self.expiry - window
        if refresh_at <= now:
            # The whole remaining life is inside the window: refresh at half of it rather
            # than at once, so a provider that issues short tokens cannot cause a loop.
            refresh_at = now + (self.expiry - now) / 2
        return Token(self.access_token, self.expiry, self.refresh_token, self.id_token,
                     self.scope, refresh_at)


def _expires_in(value: Any) -> float | None:
    """Validate `expires_in`: a positive number of seconds (a numeric string is tolerated)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise OAuthError("invalid_response", "expires_in is not a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise OAuthError("invalid_response", "expires_in is not a number") from None
    if isinstance(value, int) and abs(value) > MAX_EXPIRES_IN:
        # JSON integers can be too large for a float: clamp before any float arithmetic.
        value = MAX_EXPIRES_IN if value > 0 else -MAX_EXPIRES_IN
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OAuthError("invalid_response", "expires_in is not a finite number")
    if value <= 0:
        raise OAuthError(
            "invalid_response",
            f"expires_in is {value:g}: the provider issued an already expired token",
            hint="check the provider's clock and token lifetime settings",
        )
    return float(min(value, MAX_EXPIRES_IN))


def parse_token_response(
    doc: Mapping[str, Any], now: float, *, previous_refresh_token: str | None = None
) -> Token:
    """Turn a token endpoint's JSON success response into a Token (RFC 6749 section 5.1).

    The relative `expires_in` becomes an absolute expiry at `now`, the moment the response
    arrived. A response without a refresh token keeps `previous_refresh_token` (providers
    that don't rotate may omit it).

    Raises:
        OAuthError: `invalid_response` when the document is not a usable Bearer token.
    """
    access = doc.get("access_token")
    if not isinstance(access, str) or not access.strip():
        raise OAuthError("invalid_response", "the token response has no access_token")
    if any(c in access for c in "\r\n|") or not access.isprintable():
        raise OAuthError(
            "invalid_response", "the access token has characters a header cannot carry"
        )
    token_type = doc.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        shown = token_type if isinstance(token_type, str) else type(token_type).__name__
        raise OAuthError(
            "invalid_response",
            f"token_type is {shown[:40]!r}, not Bearer",
            hint="oauth-auth supports Bearer tokens only",
        )
    lifetime = _expires_in(doc.get("expires_in"))
    refresh = doc.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        refresh = previous_refresh_token
    id_token = doc.get("id_token")
    scope = doc.get("scope")
    return Token(
        access_token=access,
        expiry=None if lifetime is None else now + lifetime,
        refresh_token=refresh,
        id_token=id_token if isinstance(id_token, str) else None,
        scope=scope if isinstance(scope, str) else None,
    )


def format_rfc3339(when: float | datetime) -> str:
    """RFC 3339 UTC with whole seconds, e.g. 2026-11-28T22:15:03Z: ToolHive's format, for
    the `_AT` entry, the config file's `cached_token_expiry` and what the CLI prints.

    `when` is seconds since the epoch or a datetime (a naive one is taken as UTC).
    """
    if isinstance(when, datetime):
        when = (when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)).timestamp()
    return datetime.fromtimestamp(int(when), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_at_entry(token: Token) -> str | None:
    """The `<key>_AT` value: `<access token>|<expiry RFC 3339 UTC>`; None if not cacheable.

    A token with no expiry is not cached: another process could not know when to stop
    serving it.
    """
    if token.expiry is None or token.expiry <= 0:
        return None
    return f"{token.access_token}|{format_rfc3339(token.expiry)}"


def decode_at_entry(value: str | None) -> Token | None:
    """Parse a `<key>_AT` value; None for anything missing or malformed (never raises).

    Accepts any RFC 3339 timestamp with an offset (Go's time.RFC3339 may write `+00:00`
    or fractional seconds) and converts it to UTC (the rule is `_at_entry`'s).
    """
    from ._at_entry import parse_at_entry

    parsed = parse_at_entry(value)
    if parsed is None:
        return None
    return Token(access_token=parsed[0], expiry=parsed[1])


#: The ID-token claims that say who is logged in, in the order a display prefers them.
IDENTITY_CLAIMS = ("sub", "email", "name", "preferred_username")


def identity_claims(id_token: str | None) -> dict[str, str]:
    """Who an ID token names: its `sub`, `email`, `name` and `preferred_username` (those
    present, as printable text of at most 200 characters); {} without a readable token.

    Only decodes: the token was validated when it arrived (the login checks signature,
    issuer, audience and nonce before anything is kept), and this only displays it, so
    the user can see which account a login stored.
    """
    if not id_token or id_token.count(".") != 2:
        return {}
    import base64
    import json

    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return {}
    if not isinstance(claims, dict):
        return {}
    return {
        name: "".join(ch if ch.isprintable() else "?" for ch in value)[:200]
        for name in IDENTITY_CLAIMS
        if isinstance(value := claims.get(name), str) and value
    }
