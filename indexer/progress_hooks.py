"""Progress of long engine work that no front end asked for by name.

Some slow steps happen deep inside a search: the first search of a venue bank
trains its VLAD vocabulary (about a minute on a bank of 20 venues) before it
can answer, and nothing above the matcher knows it is coming. The engine
knows nothing of terminals or log lines (``api`` sits above it), so it asks
this module for a tracker, and a front end installs the factory that makes
them (``reunite`` installs :class:`api.progress.Progress`: a bar on a terminal,
counted log lines otherwise). Without a factory every tracker is silent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Tracker(Protocol):
    """One task's progress, as :class:`api.progress.Progress` keeps it."""

    def update(self, done: int, total: int | None = None, failed: int | None = None) -> None: ...

    def note(self, message: str) -> None: ...

    def close(self, completed: bool = True) -> None: ...


class _Silent:
    """The tracker when no front end installed a factory."""

    def update(self, done: int, total: int | None = None, failed: int | None = None) -> None:
        return None

    def note(self, message: str) -> None:
        return None

    def close(self, completed: bool = True) -> None:
        return None


Factory = Callable[[str, str, int | None], Tracker]
_factory: Factory | None = None


def install(factory: Factory | None) -> None:
    """Make every later :func:`track` call ``factory(label, unit, total)`` (None: silence)."""
    global _factory
    _factory = factory


def track(label: str, unit: str, total: int | None = None) -> Tracker:
    """A tracker for ``total`` steps of ``unit`` (counts only: never a path, label or name)."""
    return _factory(label, unit, total) if _factory is not None else _Silent()
