"""The shared access-token entry's format, ``<access token>|<RFC 3339 expiry>`` (pure).

ToolHive's format for ``<key>_AT``. Parsing lives here, with nothing but `datetime`, so
that the command line's cache-hit path (`_cli_fast`) reads an entry by the very rule the
token source uses (`_token.decode_at_entry` wraps it into a `Token`) without importing
what a `Token` needs.
"""

from __future__ import annotations

__all__ = ["parse_at_entry"]


def parse_at_entry(value: object) -> tuple[str, float] | None:
    """(access token, expiry in seconds since the epoch) of a ``<key>_AT`` value; None
    for anything missing or malformed (never raises).

    Accepts any RFC 3339 timestamp with an offset (Go's time.RFC3339 may write `+00:00`
    or fractional seconds) and converts it to UTC.
    """
    if not value or not isinstance(value, str):
        return None
    access, sep, stamp = value.rpartition("|")
    if not sep or not access or "|" in access or not access.isprintable():
        return None
    stamp = stamp.strip()
    if not stamp or len(stamp) > 40:
        return None
    from datetime import datetime

    try:
        when = datetime.fromisoformat(stamp[:-1] + "+00:00" if stamp[-1] in "Zz" else stamp)
    except ValueError:
        return None
    if when.tzinfo is None or when.year < 1971:
        return None
    return access, when.timestamp()
