"""``reunite serve --workers 2``: two processes on one port answer from one saved hash index.

The data folder's PDQ index is a multi-index hash (forced by REUNITE_HASH_INDEX=mih), saved
once; each worker memory-maps that file instead of rebuilding. Every lookup, whichever worker
takes it, finds the references.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from api.auth import create_key
from indexer import pipeline
from indexer.signals.base import SignalVector
from indexer.store.catalog import Catalog
from indexer.store.mih import MultiIndexHashIndex
from indexer.store.store import NewImage, Store
from indexer.store.vectors import IndexChoice, load_saved

ROOT = Path(__file__).resolve().parent.parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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

    port = _port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REUNITE_HASH_INDEX": "mih"}
    server = subprocess.Popen([sys.executable, "-c", "from api.cli import main; main()", "--data",
                               str(tmp_path), "serve", "--port", str(port), "--workers", "2",
                               "--log-level", "warning"], cwd=ROOT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "serve --workers 2 did not start"
            time.sleep(0.2)
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
