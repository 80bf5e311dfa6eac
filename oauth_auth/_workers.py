"""Calls bounded by a timeout, on a small pool of daemon worker threads.

A keyring call can block forever (an unlock prompt that nobody answers), so each call runs
in a daemon thread and the caller waits with a timeout. Daemon threads, unlike
concurrent.futures', never keep the interpreter alive. A call that timed out is abandoned:
if it had not begun its real work yet it never will (`Job.enter` says so), and if it had,
it may still complete (a write may land later).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ._scrub import clear_frames

__all__ = ["CallTimedOut", "Job", "run_bounded"]

_T = TypeVar("_T")


class CallTimedOut(Exception):
    """The bounded call did not finish in time; `began` says whether its work had begun."""

    def __init__(self, began: bool) -> None:
        super().__init__("the call timed out")
        self.began = began


class Job:
    """One call handed to a worker thread."""

    __slots__ = (
        "_state", "abandoned", "deadline", "done", "entered", "error", "fn", "result", "started",
    )

    def __init__(self, fn: Callable[[Job], Any], deadline: float) -> None:
        self.fn = fn
        self.deadline = deadline
        self.done = threading.Event()
        self._state = threading.Lock()
        self.started = False  # a worker picked it up
        self.entered = False  # it holds its locks and does the real work
        self.abandoned = False
        self.result: Any = None
        self.error: BaseException | None = None

    def remaining(self) -> float:
        """Seconds left before the caller gives up."""
        return max(0.0, self.deadline - time.monotonic())

    def run(self) -> None:
        with self._state:
            if self.abandoned:
                return
            self.started = True
        try:
            self.result = self.fn(self)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            self.error = exc
        finally:
            self.done.set()

    def enter(self) -> bool:
        """Mark the real work as begun; False if the caller gave up (then it must not)."""
        with self._state:
            if self.abandoned:
                return False
            self.entered = True
            return True

    def abandon(self) -> bool:
        """Give up on the job; True if its real work had begun (it may still complete)."""
        with self._state:
            self.abandoned = True
            return self.entered


class _DaemonPool:
    """A small pool of daemon worker threads that grows on demand and shrinks when idle."""

    def __init__(self, idle_timeout: float = 30.0) -> None:
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # workers waiting for a job that no submitted job has claimed yet
        self._idle_timeout = idle_timeout

    def submit(self, job: Job) -> None:
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        self._jobs.put(job)
        if spawn:
            threading.Thread(target=self._work, name="oauth-auth-keyring", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self._idle_timeout)
            except queue.Empty:
                with self._lock:
                    # Leave only if an unclaimed idle worker remains (it may be us); when
                    # the count is zero a submitter has claimed us and its job is coming.
                    if self._idle > 0:
                        self._idle -= 1
                        return
                continue
            job.run()
            del job
            with self._lock:
                self._idle += 1


_POOL = _DaemonPool()


def _after_fork_in_child() -> None:
    # Worker threads do not survive fork.
    global _POOL
    _POOL = _DaemonPool()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def run_bounded(fn: Callable[[Job], _T], timeout: float) -> _T:
    """Run ``fn(job)`` on a worker thread and wait at most `timeout` seconds for it.

    `fn` gets its `Job`, to wait for locks no longer than `Job.remaining` and to call
    `Job.enter` before its real work. An exception it raises is raised here, with the
    worker's finished frames cleared (their locals may hold a value being stored).

    Raises:
        CallTimedOut: `fn` did not finish in time.
    """
    job = Job(fn, time.monotonic() + timeout)
    _POOL.submit(job)
    if not job.done.wait(timeout):
        began = job.abandon()
        if not job.done.is_set():
            raise CallTimedOut(began)
    if job.error is not None:
        error = job.error
        job.error = None  # no cycle through the traceback
        clear_frames(error)  # the worker's frames are finished: drop their locals
        raise error
    return job.result  # type: ignore[no-any-return]
