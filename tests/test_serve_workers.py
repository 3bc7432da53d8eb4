"""``reunite serve --workers 2``: two processes on one port answer from one saved hash index.

The data folder's PDQ index is a multi-index hash (forced by REUNITE_HASH_INDEX=mih), saved
once; each worker memory-maps that file instead of rebuilding. Every lookup, whichever worker
takes it, finds the references.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import numpy as np
from serve_process import start_serve, wait_ready

from api.auth import create_key
from indexer import pipeline
from indexer.signals.base import SignalVector
from indexer.store.catalog import Catalog
from indexer.store.mih import MultiIndexHashIndex
from indexer.store.store import NewImage, Store
from indexer.store.vectors import IndexChoice, load_saved


def test_two_workers_share_the_saved_multi_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    codes = rng.integers(0, 256, (50, 32), dtype=np.uint8)
    store = Store(tmp_path)
    store.indexes.choice = IndexChoice("mih")
    bank = store.catalog.ensure_bank("list", "hashes", {"signals": ["hashes"], "partner_lookup": True})
    store.add_images(bank, [NewImage(pipeline.Extraction(f"{n:064x}", 64, 64, "PNG", 1,
                                                         [SignalVector("pdq", codes[n], quality=1.0)]),
                                     f"ref-{n}") for n in range(50)])
    assert isinstance(store.indexes.get(bank.id, "pdq"), MultiIndexHashIndex)
    store.checkpoint()
    saved = store.indexes.path(bank.id, "pdq")
    from indexer.signals import base as signals
    assert isinstance(load_saved(signals.get("pdq"), saved), MultiIndexHashIndex)
    mtime = saved.stat().st_mtime_ns
    key = create_key(Catalog.open(tmp_path), "partner", "two-workers")

    env = {**os.environ, "OMP_NUM_THREADS": "1", "REUNITE_HASH_INDEX": "mih"}
    server, url = start_serve(tmp_path, env, "--workers", "2")
    try:
        wait_ready(server, url, timeout=120)
        for n in range(12):  # a partner key may queue 20 candidates an hour (api.budgets)
            # A new connection each time: the kernel spreads them over the two workers.
            r = httpx.post(f"{url}/v1/match/hashes", headers={"X-API-Key": key}, timeout=60,
                           json={"hashes": {"pdq": codes[n].tobytes().hex()}, "banks": ["list"]})
            assert r.status_code == 200, r.text
            assert [h["decision"] for h in r.json()["hits"]] == ["match"], r.text
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert saved.stat().st_mtime_ns == mtime  # loaded as saved, not rebuilt by either worker
