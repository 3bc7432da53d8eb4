"""Progress of long CLI work: a bar on a terminal, log lines everywhere else.

A cron job or a CI log has no terminal, and tqdm (rightly) draws nothing
there, so a four-minute ``reunite index`` said nothing until it ended. When
stderr is not a TTY this writes one plain line every :data:`EVERY_ITEMS`
items or :data:`EVERY_SECONDS` seconds, whichever comes first, and a last
one at the end: the count, the total when known, the rate, and failures::

    index: 1500/9000 img (16.7%), 41.3 img/s, 2 failed

Lines hold counts only, never a path, label or name. ``REUNITE_PROGRESS_EVERY``
and ``REUNITE_PROGRESS_SECONDS`` change the two intervals (tests and very
large runs); ``--quiet`` silences both forms.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any

EVERY_ITEMS = 500
EVERY_SECONDS = 30.0


def _interval(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


class Progress:
    """One task's progress; ``update`` after each step, ``close`` at the end (idempotent)."""

    def __init__(self, label: str, unit: str, total: int | None = None, *, quiet: bool = False,
                 stream: IO[str] | None = None, tty: bool | None = None) -> None:
        self.label, self.unit, self.total = label, unit, total
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_items = int(_interval("REUNITE_PROGRESS_EVERY", EVERY_ITEMS))
        self.every_seconds = _interval("REUNITE_PROGRESS_SECONDS", EVERY_SECONDS)
        self.done = self.failed = 0
        self._start = self._last_time = time.monotonic()
        self._last_done = 0
        self._logged_any = False
        self._closed = False
        self.bar: Any = None
        if not quiet and self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=unit, desc=label, file=self.stream, dynamic_ncols=True)

    def update(self, done: int, total: int | None = None, failed: int | None = None) -> None:
        """Record that ``done`` items (of ``total``) are finished, ``failed`` of them failed."""
        self.done = done
        if total is not None:
            self.total = total
        if failed is not None:
            self.failed = failed
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.total, self.bar.n = self.total, done
            if failed is not None:
                self.bar.set_postfix(errors=self.failed, refresh=False)
            self.bar.refresh()
            return
        now = time.monotonic()
        if done - self._last_done >= self.every_items or now - self._last_time >= self.every_seconds:
            self._log(now)

    def note(self, message: str) -> None:
        """One line about the task that is not a count (what a long step is about to do)."""
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(f"{self.label}: {message}", file=self.stream)
            return
        print(f"{self.label}: {message}", file=self.stream, flush=True)

    def _log(self, now: float) -> None:
        elapsed = max(now - self._start, 1e-9)
        of = f"/{self.total}" if self.total else ""
        share = f" ({100 * self.done / self.total:.1f}%)" if self.total else ""
        line = f"{self.label}: {self.done}{of} {self.unit}{share}, {self.done / elapsed:.1f} {self.unit}/s"
        if self.failed:
            line += f", {self.failed} failed"
        print(line, file=self.stream, flush=True)
        self._last_done, self._last_time, self._logged_any = self.done, now, True

    def close(self, completed: bool = True) -> None:
        """Close the bar, or log the final count (when anything happened since the last line).

        ``completed=False`` (the work was refused or failed) logs nothing more: the error is
        then the command's last line, and a refusal stays the one line it promises to be.
        """
        if self._closed:
            return
        self._closed = True
        if self.bar is not None:
            self.bar.close()
            return
        unlogged = self.done != self._last_done or (self.done and not self._logged_any)
        if completed and not self.quiet and unlogged:
            self._log(time.monotonic())
