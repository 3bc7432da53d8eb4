"""Keeping photos: one durable put per photo (two fsyncs) against a batch synced together (issue 21).

    PYTHONPATH=. /work/main/.venv/bin/python bench/photo_sync_bench.py --photos DIR [--batch 64] [--repeat 3]

Writes every photo of DIR into a temporary PhotoStore beside this checkout (the same disk as a data
folder), first with ``PhotoStore.put`` (file fsync + folder fsync each), then in batches written with
``durable=False`` and made durable by one ``PhotoStore.sync`` (each file, then the folder once), as
``reunite index`` keeps photos before each catalog commit. Interleaved per repeat; prints ms a photo.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from indexer.store.photos import PhotoStore

    blobs = [p.read_bytes() for p in sorted(args.photos.iterdir()) if p.is_file()]
    one, batched = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(dir=ROOT.parent) as tmp:
            photos = PhotoStore(Path(tmp), None)
            start = time.perf_counter()
            for blob in blobs:
                photos.put("bank-1", blob, encrypt=False)
            one.append((time.perf_counter() - start) / len(blobs) * 1000)
            start = time.perf_counter()
            for first in range(0, len(blobs), args.batch):
                tokens = [photos.put("bank-2", b, encrypt=False, durable=False)
                          for b in blobs[first:first + args.batch]]
                photos.sync(photos.path("bank-2", t) for t in tokens)
            batched.append((time.perf_counter() - start) / len(blobs) * 1000)
    print(f"{len(blobs)} photos; ms a photo: one durable put {[round(x, 3) for x in one]}, "
          f"batches of {args.batch} {[round(x, 3) for x in batched]}; "
          f"median ratio {statistics.median(one) / statistics.median(batched):.2f}")


if __name__ == "__main__":
    main()
