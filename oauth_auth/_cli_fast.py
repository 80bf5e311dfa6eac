"""The cache-hit path of `oauth-auth token`: the shared access token, at the cost of a read.

Credential helpers (kubectl exec plugins, git, `apiKeyHelper`) run `oauth-auth token` for
every command, and nearly always the shared ``<key>_AT`` entry holds a token with time
left. The full path (argparse, the token source, keyring and its backend discovery)
costs more than that read itself. This path answers exactly those calls, and only those
it can answer exactly as the full path would:

- the command line is a plain ``[registry|llm] token`` with session-selecting options
  (no output option, no ``--debug``, nothing it does not know);
- the session's key comes from the same rules (`_config` for the entry, `_naming` for the
  key, `_keys` for the names), its window is the same (30 s, the LLM gateway's 600 s, or
  ``--min-valid``);
- the store is the keyring, and the keyring backend is keyring's own Secret Service, as
  an earlier full run recorded it for this very configuration (`_keyring_choice`: the
  environment, keyringrc.cfg and the installed packages unchanged); the item is read from
  the same daemon and collection (`_secret_service.read_once`); for the LLM gateway the
  environment variable that injects a token is consulted first, as `ChainSecrets` does;
- the entry holds a token with more than the window left.

Anything else, and any failure at all, returns None: the full path runs and decides
(refreshes, reports, prompts). Nothing is cached here and nothing is written: the token
lives in the Secret Service, as before.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

__all__ = ["cached_token"]

#: Options of `token` this path understands: name -> whether it takes a value.
_OPTIONS = {"--profile": True, "--issuer": True, "--client-id": True, "--scope": True,
            "--audience": True, "--config": True, "--min-valid": True, "--wait": True,
            "--registry": True, "--gateway": True}
#: The preemptive window of every session but the LLM gateway's (`_token`'s default).
_DEFAULT_WINDOW = 30.0


def _parse(argv: Sequence[str]) -> tuple[str, dict[str, str]] | None:
    """(kind, options) of a plain `token` command line; None for anything else."""
    words = list(argv)
    kind = "adhoc"
    if words and words[0] in ("registry", "llm"):
        kind = words.pop(0)
    if not words or words.pop(0) != "token":
        return None
    options: dict[str, str] = {}
    while words:
        word = words.pop(0)
        name, eq, value = word.partition("=")
        if name not in _OPTIONS or name in options:
            return None  # unknown, repeated (--scope twice) or positional: full path
        if not eq:
            if not words:
                return None
            value = words.pop(0)
        options[name] = value
    target = {"registry": "--registry", "llm": "--gateway"}.get(kind)
    if target is not None and not options.get(target):
        return None
    if kind == "adhoc" and ("--registry" in options or "--gateway" in options):
        return None
    return kind, options


def cached_token(argv: Sequence[str]) -> int | None:
    """Print the cached access token and return 0, or return None for the full path."""
    try:
        token = _lookup(argv)
    except Exception:  # noqa: BLE001 - the full path runs instead and reports it
        return None
    if token is None:
        return None
    try:
        sys.stdout.write(token + "\n")
        sys.stdout.flush()
    except (OSError, ValueError, AttributeError):
        return None  # the full path says what is wrong with stdout
    return 0


def _lookup(argv: Sequence[str]) -> str | None:
    parsed = _parse(argv)
    if parsed is None:
        return None
    kind, options = parsed
    from ._config import LLM_GATEWAYS, PROFILES, REGISTRIES, Config
    from ._keys import (
        LLM_KEY_PREFIX,
        LLM_SCOPE,
        REGISTRY_KEY_PREFIX,
        REGISTRY_SCOPE,
        env_access_token_var,
        scoped_name,
    )
    from ._naming import (
        ADHOC_PREFIX,
        LLM_PREEMPTIVE_WINDOW,
        STORE_ENV,
        profile_key_prefix,
        session_key,
    )

    if os.environ.get(STORE_ENV, "").strip():
        return None  # a fleet store: the full path
    name = options.get("--profile") or options.get("--registry") or options.get("--gateway")
    if kind == "adhoc" and not name and not options.get("--issuer"):
        name = os.environ.get("OAUTH_AUTH_PROFILE", "").strip() or None
    config = Config(options.get("--config"))
    doc = config.load()
    if doc.get("store"):
        return None
    section = {"registry": REGISTRIES, "llm": LLM_GATEWAYS}.get(kind, PROFILES)
    entry: dict[str, object] = {}
    if name:
        if kind == "adhoc":
            prefix = profile_key_prefix(name)
            if any(other != name and profile_key_prefix(other) == prefix
                   for other in doc[PROFILES]):
                return None  # refused by the full path, with the other profile's name
        entry = config.entry(section, name) or {}
    issuer = options.get("--issuer") or entry.get("issuer")
    client = options.get("--client-id") or entry.get("client_id")
    if not isinstance(issuer, str) or not isinstance(client, str) or not issuer or not client:
        return None
    audience = options.get("--audience")
    if audience is None:
        stored = entry.get("audience") or ""
        audience = stored if isinstance(stored, str) else ""
    if kind == "adhoc":
        plain = ADHOC_PREFIX
        prefix = profile_key_prefix(name) if name else plain
        key, _ = session_key(prefix=prefix, shared_prefix=plain, resource=audience or client,
                             own=(audience, client), issuer=issuer, entry=entry)
        scope, window = "", _DEFAULT_WINDOW
    else:
        if name is None:  # pragma: no cover - _parse requires the target option
            return None
        plain = REGISTRY_KEY_PREFIX if kind == "registry" else LLM_KEY_PREFIX
        key, _ = session_key(prefix=plain, shared_prefix=plain, resource=name, own=(name,),
                             issuer=issuer, entry=entry)
        scope = REGISTRY_SCOPE if kind == "registry" else LLM_SCOPE
        window = _DEFAULT_WINDOW if kind == "registry" else LLM_PREEMPTIVE_WINDOW
    if "--min-valid" in options:
        window = max(window, float(options["--min-valid"]))
    from ._keys import AT_SUFFIX

    value: str | None = None
    if kind == "llm":
        value = os.environ.get(env_access_token_var(key, scope))
    if value is None:
        entry_name = key + AT_SUFFIX
        value = _read_keyring(scoped_name(scope, entry_name) if scope else entry_name)
    return _servable(value, window)


def _read_keyring(name: str) -> str | None:
    """The entry from keyring's recorded Secret Service backend, or None (full path)."""
    if "keyring" in sys.modules:
        return None  # a program set its own backend: the full path asks keyring
    from ._keyring_choice import cached_choice
    from ._naming import KEYRING_SERVICE, SPLIT_PREFIX
    from ._secret_service import SECRET_SERVICE_BACKEND, read_once

    choice = cached_choice()
    if (choice is None or choice.secret_service is None or choice.chained
            or choice.backend != SECRET_SERVICE_BACKEND):
        return None
    collection, scheme = choice.secret_service
    value = read_once(KEYRING_SERVICE, name, collection_path=collection, scheme=scheme)
    if value is None or value.startswith(SPLIT_PREFIX):
        return None  # nothing there, or a split value: the full path
    return value


def _servable(value: str | None, window: float) -> str | None:
    """The access token of a ``<token>|<expiry>`` entry with more than `window` left."""
    if not value:
        return None
    import time

    from ._at_entry import parse_at_entry

    parsed = parse_at_entry(value)
    if parsed is None or time.time() >= parsed[1] - window:
        return None
    return parsed[0]
