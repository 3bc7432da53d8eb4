"""Ctrl-C during a crawl: a request to stop between images, never lost inside a library.

Python's default SIGINT handler raises KeyboardInterrupt wherever the main thread happens to be.
Inside a library's own waiting loop that exception can be caught and the run goes on: Ray Data's
row iterator did so in a loaded test run, and the "interrupted" crawl then ran to its end. So the
indexing loop installs this handler instead: the first Ctrl-C only sets a flag that the loop
reads after each image (what is done is stored, the run stops with exit 130); a second Ctrl-C
raises at once, for a run stuck where no image arrives.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class StopRequest:
    """Whether Ctrl-C was pressed since the handler was installed."""

    def __init__(self) -> None:
        self._asked = threading.Event()

    @property
    def asked(self) -> bool:
        return self._asked.is_set()

    def check(self) -> None:
        """Raise KeyboardInterrupt if a stop was asked (called between images)."""
        if self._asked.is_set():
            raise KeyboardInterrupt

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        if self._asked.is_set():
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        self._asked.set()


@contextlib.contextmanager
def stop_between_images() -> Iterator[StopRequest]:
    """Install the two-step SIGINT handler for the block (main thread only; elsewhere a no-op)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = signal.signal(signal.SIGINT, request._handle)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)
