"""Skip locally, fail in CI: a part of the bench that is missing must not hide in CI."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """True when running under CI (CI=true), where every part of the bench must exist."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(part: str, how: str) -> NoReturn:
    """Fail (in CI) or skip (locally) because `part` is missing; `how` says how to install it."""
    text = f"{part} is not available: {how}"
    if in_ci():
        pytest.fail(text, pytrace=False)
    pytest.skip(text)
