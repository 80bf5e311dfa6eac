"""`oauth-auth profiles`: every configured profile, registry and LLM gateway, with its state.

The state of each comes from its own session (`profiles.open_session`), read the way
`status` reads it, so both always agree; nothing here refreshes or prints a secret.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ._config import LLM_GATEWAYS, PROFILES, REGISTRIES, Config
from .errors import OAuthAuthError

__all__ = ["list_profiles", "profile_names"]

_SECTIONS = ((PROFILES, "profile"), (REGISTRIES, "registry"), (LLM_GATEWAYS, "llm"))


def profile_names(config_path: str | None) -> list[str]:
    """The configured profile names (for shell completion); [] when there is no file."""
    try:
        return sorted(Config(config_path).load()[PROFILES])
    except OAuthAuthError:
        return []


def _row(section: str, kind_name: str, name: str, entry: dict[str, Any],
         config_path: str | None, default: str) -> dict[str, Any]:
    from ._token import format_rfc3339
    from .profiles import LLM, PROFILE, REGISTRY, open_session

    kind = {"profile": PROFILE, "registry": REGISTRY, "llm": LLM}[kind_name]
    row: dict[str, Any] = {
        "kind": kind_name, "name": name, "default": kind_name == "profile" and name == default,
        "issuer": entry.get("issuer"), "client_id": entry.get("client_id"),
        "state": "", "identity": {}, "expiry": None, "key": None,
    }
    try:
        session = open_session(kind, name, interactive=False, config_path=config_path)
    except OAuthAuthError as exc:
        row["state"] = f"not configured ({exc.message})"
        return row
    try:
        row["key"] = session.key
        view = session.source.status()
        if view.stored_refresh_token is None:
            row["state"] = "unknown (the secrets store failed)"
        elif view.shared_fresh or view.stored_refresh_token:
            row["state"] = "logged in"
        else:
            row["state"] = "not logged in"
        if view.shared_expiry is not None:
            row["expiry"] = format_rfc3339(view.shared_expiry.timestamp())
        from .cli import IDENTITY_FIELD

        ident = entry.get(IDENTITY_FIELD)
        if row["state"] == "logged in" and isinstance(ident, dict):
            row["identity"] = {str(k): str(v) for k, v in ident.items()}
    except OAuthAuthError as exc:
        row["state"] = f"unknown ({exc.message})"
    finally:
        session.source.close()
    return row


def list_profiles(config_path: str | None, *, as_json: bool, names: bool = False,
                  emit: Callable[[str], None]) -> int:
    """Print every entry (a table, or JSON); exit 0, or 1 when the file is invalid."""
    if names:
        emit("".join(f"{n}\n" for n in profile_names(config_path)))
        return 0
    from .cli import PROFILE_ENV

    config = Config(config_path)
    doc = config.load()
    default = os.environ.get(PROFILE_ENV, "").strip()
    rows = [_row(section, kind, name, dict(entry), config_path, default)
            for section, kind in _SECTIONS for name, entry in sorted(doc[section].items())]
    if as_json:
        import json

        emit(json.dumps(rows, indent=2) + "\n")
        return 0
    if not rows:
        emit(f"No profiles, registries or gateways in {config.path}; run: oauth-auth login"
             " --profile NAME --issuer URL --client-id ID\n")
        return 0
    from ._cli_store import who

    header = ("", "KIND", "NAME", "ISSUER", "STATE", "WHO")
    table = [header] + [
        ("*" if r["default"] else "", r["kind"], r["name"], r["issuer"] or "",
         r["state"], who(r["identity"])) for r in rows]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    emit("".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                 + "\n" for line in table))
    return 0
