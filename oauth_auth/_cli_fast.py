"""The cache-hit path of `oauth-auth token` (filled in below)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["cached_token"]


def cached_token(argv: Sequence[str]) -> int | None:
    """Serve `argv` from the shared cache when that is certain; None: take the full path."""
    return None
