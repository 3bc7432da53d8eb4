"""The catalog on SQLite and on PostgreSQL, side by side in one run: what the backend costs.

What it measures, for each backend on the same machine and data:

- ``open``: opening a catalog already at the newest schema revision (``Catalog.open``:
  engine, the one-query migration check, the folder binding), median of 20, ms;
- ``store``: ``Store.add_images`` of ``--images`` pre-extracted hash-only images in
  batches of 64 (the index writer's path: one transaction per batch, items, subjects,
  vectors and revisions), images/s; extraction is done once beforehand and not counted;
- ``decide``: ``ReviewQueue.decide`` (compare-and-set, decision row, audit not included)
  on ``--decisions`` candidates, one after the other, decisions/s.

PostgreSQL is a throwaway server started here (tests/pg_server.py: Debian's
postgresql, fsync off as in the tests), or ``--pg-url`` of a real one. It
shares the machine with the benchmark, over TCP on loopback.

Usage::

    .venv/bin/python bench/catalog_backends.py --images 2000 --decisions 300
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import jpeg_bytes, tiles  # noqa: E402
from pg_server import PostgresServer, find_bin  # noqa: E402

from indexer import pipeline  # noqa: E402
from indexer.signals import base as signals  # noqa: E402
from indexer.store.catalog import Catalog  # noqa: E402
from indexer.store.store import NewImage, Store  # noqa: E402
from matcher.review import queue as review  # noqa: E402
from matcher.search.query import Candidate  # noqa: E402

HASHES = [s.name for s in signals.select(["hashes"])]


def measure(data: Path, url: str | None, extractions: list, decisions: int) -> dict[str, float]:
    store = Store(data, url)
    bank = store.catalog.ensure_bank("ads", "ads")
    start = time.perf_counter()
    items = []
    for k in range(0, len(extractions), 64):
        batch = [NewImage(ex, f"ad-{k + n}") for n, ex in enumerate(extractions[k:k + 64])]
        items += [item for item, _new in store.add_images(bank, batch)]
    stored = len(extractions) / (time.perf_counter() - start)
    queue = review.ReviewQueue(store.catalog)
    ids = [queue.record([Candidate(bank="ads", label=f"ad-{n}", subject_id=item.subject_id, pseudonym=None,
                                   item=item.id, score=0.9, decision="match")],
                        {"ads": bank}, f"{n:064d}", "bench")[0] for n, item in enumerate(items[:decisions])]
    start = time.perf_counter()
    for cid in ids:
        queue.decide(cid, "bench", "reviewer", "confirm")
    decided = len(ids) / (time.perf_counter() - start)
    store.catalog.engine.dispose()
    opens = []
    for _ in range(20):
        start = time.perf_counter()
        catalog = Catalog.open(data, url)
        opens.append((time.perf_counter() - start) * 1000)
        catalog.engine.dispose()
    return {"open_ms": round(statistics.median(opens), 1), "store_images_per_s": round(stored, 1),
            "decisions_per_s": round(decided, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--pg-url", default=None, help="an empty PostgreSQL database (default: start one)")
    args = parser.parse_args()
    extractions = [pipeline.extract(jpeg_bytes(t), HASHES) for t in tiles(args.images, size=64, seed=5)]
    server = None
    url = args.pg_url
    if url is None:
        bindir = find_bin()
        if bindir is None:
            raise SystemExit("no PostgreSQL binaries (make postgres), and no --pg-url")
        server = PostgresServer(bindir)
        server.start()
        url = server.create_database()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = {"images": args.images, "decisions": args.decisions,
                   "sqlite": measure(Path(tmp) / "sqlite", None, extractions, args.decisions),
                   "postgresql": measure(Path(tmp) / "pg", url, extractions, args.decisions)}
    finally:
        if server is not None:
            server.stop()
    out["ratio_pg_over_sqlite"] = {k: round(out["postgresql"][k] / out["sqlite"][k], 2)
                                   for k in out["sqlite"]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
