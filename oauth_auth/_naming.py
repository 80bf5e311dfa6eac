"""How a session's secrets key is named from its settings (pure, standard library only).

One rule each, shared by `profiles.open_session` and the command line's cache-hit path
(`_cli_fast`), which must find the very entry a full session would use without importing
the token source:

- a named profile's key prefix is ``OAUTH_AUTH_<NAME>_``: the name upper-cased, every
  character outside A-Z0-9 as ``_`` (DESIGN, "Accounts and the command line"), so two
  profiles never share an entry even with the same issuer and client;
- the issuer enters a key without its trailing slashes: ``https://x/`` and ``https://x``
  are one session (discovery still checks the issuer exactly as configured);
- which key a session uses: the config entry's cached ref when it was written for this
  session, else the derived one (`session_key`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ADHOC_PREFIX", "KEYRING_SERVICE", "LLM_PREEMPTIVE_WINDOW", "SPLIT_PREFIX",
           "STORE_ENV",
           "key_issuer", "profile_key_prefix", "session_key"]

#: The environment variable naming a fleet store by URL (`_store_url`).
STORE_ENV = "OAUTH_AUTH_STORE"
#: The keyring service of every entry oauth-auth stores (library and command alike).
KEYRING_SERVICE = "oauth-auth"
#: The value `KeyringSecrets` stores under a name whose value it split into parts
#: (``<name>.part1`` ...), followed by the part count.
SPLIT_PREFIX = "oauth-auth-split:"
#: The key prefix of ad-hoc flags (and the start of every named profile's).
ADHOC_PREFIX = "OAUTH_AUTH_"
#: How long before expiry the LLM profile stops serving a token: a credential helper
#: called every 5 minutes never hands out one that expires before its next call.
LLM_PREEMPTIVE_WINDOW = 600.0


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


def session_key(*, prefix: str, shared_prefix: str, resource: str, own: tuple[str, ...],
                issuer: str, entry: Mapping[str, Any]) -> tuple[str, str]:
    """The secrets key of a session, and the ignored ref with why ("" when none).

    The entry's ``cached_refresh_token_ref`` when it was written for this session (its
    issuer is this one, `_keys.ref_written_for` holds for `own` resources, and it is not
    the key every named profile of a client shared before Release 2, `shared_prefix`),
    else ``derive_secret_key(prefix, resource, key_issuer(issuer))``.

    Args:
        prefix: this session's key prefix (`profile_key_prefix` for a named profile).
        shared_prefix: the kind's plain prefix (``OAUTH_AUTH_`` for profiles).
        resource: what the key derives from (URL, or audience or client id).
        own: the resources a derived ref may derive from.
        issuer: the issuer in use.
        entry: the config entry ({} when none).
    """
    from ._keys import derive_secret_key, ref_written_for

    derived = derive_secret_key(prefix, resource, key_issuer(issuer))
    ref = entry.get("cached_refresh_token_ref") or ""
    if not isinstance(ref, str) or not ref:
        return derived, ""
    if key_issuer(entry.get("issuer") or issuer) != key_issuer(issuer):
        return derived, ""  # the ref belongs to another issuer's session
    if not ref_written_for(ref, issuer=issuer, resources=own):
        return derived, "it is the key of another issuer's or client's session"
    if prefix != shared_prefix and ref in {
            derive_secret_key(shared_prefix, r, form) for r in own if r
            for form in (issuer, key_issuer(issuer))}:
        return derived, ""  # the key every profile of this client shared before Release 2
    return ref, ""
