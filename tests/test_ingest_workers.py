"""`reunite index` decodes on every core by default, in forked workers, with the results of one worker.

Why pinned: the worker count and start method are what make a crawl use the machine (issue 21:
`--workers 2` gave no gain when each worker started an interpreter and imported everything again);
the catalog must not depend on them (same vectors, same order, same ids).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import select

from indexer import ingest
from indexer.store.catalog import Item, Vector
from indexer.store.store import Store
from tests.conftest import ROOT, tiles


def test_the_default_is_one_worker_per_core_when_the_crawl_is_big_enough() -> None:
    per = ingest.MIN_IMAGES_PER_WORKER
    assert ingest.worker_count(None, per - 1) == 1  # a handful of photos: no process to start
    assert ingest.worker_count(None, 10**6) == ingest.cores() == len(os.sched_getaffinity(0))
    assert ingest.worker_count(None, 2 * per) == min(2, ingest.cores())
    assert ingest.worker_count(4, 3) == 3 and ingest.worker_count(1, 10**6) == 1


def test_a_single_threaded_process_forks_and_one_with_threads_does_not() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", "from indexer import ingest; print(ingest.start_method())"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "fork"
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert ingest.start_method() == "forkserver"  # a lock held by that thread could be copied
    finally:
        stop.set()
        other.join()


def _stored(store: Store) -> list[tuple]:
    with store.catalog.session() as s:
        items = [(i.id, i.sha256, i.source) for i in s.scalars(select(Item).order_by(Item.id))]
        vectors = [(v.item_id, v.signal, bytes(v.data), v.quality)
                   for v in s.scalars(select(Vector).order_by(Vector.id))]
    return [items, vectors]


def test_workers_store_what_one_worker_stores_in_the_crawl_s_order(tmp_path: Path) -> None:
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    for i, tile in enumerate(tiles(2 * ingest.MIN_IMAGES_PER_WORKER + 3, size=80, seed=9)):
        tile.save(crawl / f"ad{i:03d}.png")
    names = ["pdq", "phash", "dhash", "ahash", "whash"]
    stored = []
    for workers in (1, None):
        store = Store(tmp_path / f"data-{workers}")
        bank = store.catalog.ensure_bank("ads", "ads")
        report = ingest.index_records(store, bank, ingest.iter_source(crawl), names, workers=workers)
        assert report.indexed == 2 * ingest.MIN_IMAGES_PER_WORKER + 3 and report.failed == 0
        stored.append(_stored(store))
    assert stored[0] == stored[1]
