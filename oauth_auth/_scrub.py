"""No secret in the locals of a traceback that leaves the library.

Error trackers (Sentry by default), rich's `show_locals` and `pytest -l` print every
local of every frame of a traceback. The frames below the library's public entry points
hold refresh tokens, codes, verifiers, token responses and the forms posted with them,
so every public entry point runs its work under `scrubbed`: when an exception leaves
it, every finished frame of its traceback (and of the exceptions chained to it) is
cleared with `frame.clear()`, which drops the locals and keeps the file, line and
function names a traceback shows. Frames still running (the entry point's own and its
callers') cannot be cleared, so the entry points keep no secret in their own locals.

This is the one mechanism: the secrets providers use `clear_frames` for the same reason
(the value being stored sits in their frames).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from types import TracebackType
from typing import ParamSpec, TypeVar

__all__ = ["clear_frames", "scrubbed", "scrubs"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def clear_frames(exc: BaseException) -> None:
    """Clear the locals of every finished frame of `exc`'s traceback and of the
    exceptions chained to it (cause, context, the members of an exception group)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            with contextlib.suppress(RuntimeError):  # a frame still running keeps its locals
                tb.tb_frame.clear()
            tb = tb.tb_next
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        pending.extend(getattr(current, "exceptions", ()))


class _Scrubbed:
    """`with scrubbed:` clears the frames of an exception that leaves the block."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            clear_frames(exc)


#: Stateless, so one instance serves every thread and task.
scrubbed = _Scrubbed()


def scrubs(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Decorate a function so an exception leaving it leaves no locals behind it, its
    own arguments included (a secret a store was asked to write); the hot paths use
    `scrubbed`."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            clear_frames(exc)
            del args, kwargs  # this frame is still running: drop what it was called with
            raise

    return wrapper
