"""`reunite serve` freezes what its start left alive, and still collects what requests leave behind.

A started server holds some 190,000 long-lived objects; each full collection walked
them all (a 100-130 ms pause of the worker at 10M references, BENCHMARKS.md). Frozen
after the start (:func:`api.cli.service.frozen_after_start`), later collections skip
them, while a request's own cyclic garbage is collected as before.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

from api.cli import service


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_a_worker_app_is_frozen_after_its_start_and_later_garbage_is_collected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(service._WORKER_DATA_ENV, str(tmp_path))
    gc.unfreeze()
    try:
        application = service.worker_app()
        frozen = gc.get_freeze_count()
        assert frozen > 1000  # the app, its routes, the service: all there at the start
        assert application.state.service is not None
        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a cycle made after the start: only the collector frees it
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
        assert gc.get_freeze_count() == frozen  # nothing made later is frozen
    finally:
        gc.unfreeze()
