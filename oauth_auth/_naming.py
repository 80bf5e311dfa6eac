"""How a session's secrets key is named from its settings (pure, standard library only).

One rule each, shared by `profiles.open_session` and the command line's cache-hit path
(`_cli_fast`), which must find the very entry a full session would use without importing
the token source:

- a named profile's key prefix is ``OAUTH_AUTH_<NAME>_``: the name upper-cased, every
  character outside A-Z0-9 as ``_`` (DESIGN, "Accounts and the command line"), so two
  profiles never share an entry even with the same issuer and client;
- the issuer enters a key without its trailing slashes: ``https://x/`` and ``https://x``
  are one session (discovery still checks the issuer exactly as configured).
"""

from __future__ import annotations

__all__ = ["ADHOC_PREFIX", "key_issuer", "profile_key_prefix"]

#: The key prefix of ad-hoc flags (and the start of every named profile's).
ADHOC_PREFIX = "OAUTH_AUTH_"


def profile_key_prefix(name: str) -> str:
    """``OAUTH_AUTH_<NAME>_`` for the profile `name` (one character in, one out).

    ``work`` and ``WORK``, or ``a-b`` and ``a.b``, give the same prefix: creating the
    second is refused (`profiles.open_session`), since they would share one session.
    """
    mapped = "".join(ch.upper() if ch.isascii() and ch.isalnum() else "_" for ch in name)
    return f"{ADHOC_PREFIX}{mapped}_"


def key_issuer(issuer: str) -> str:
    """The issuer as it enters a secrets key: without trailing slashes."""
    return issuer.rstrip("/") or issuer
