"""Hashing throughput: reunite's one-decode pipeline vs the naive peer, same photos, same run.

    python bench/hash_throughput.py [--suite-root ../shared/bench] [--n 600] [--repeat 3]

The naive peer is what most tools do: ``imagehash.phash``, ``imagehash.dhash``
and ``pdqhash.compute`` each on its own full decode of the file. reunite computes
more (SHA-256, pHash, dHash, aHash, wHash and PDQ with quality) from ONE decode
(JPEG draft at reduced size, one shared grey square). Both run in this one
process on one core (OMP/OpenCV threads pinned to 1); the photos are read into
memory first so the disk is not measured. The ratio is what BENCHMARKS.md
reports, because absolute rates move with the machine's load.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's code, not whichever copy is installed

import imagehash  # noqa: E402
import numpy as np  # noqa: E402
import pdqhash  # noqa: E402
from PIL import Image  # noqa: E402

from indexer import pipeline  # noqa: E402
from indexer.signals import base as signals  # noqa: E402


def pick_photos(suite_root: Path, n: int) -> list[Path]:
    """Large originals first (copydet gallery photos up to 1600 px, venue photos up to 800 px),
    then LFW-sized ad photos, so the mix holds both phone photos and thumbnails."""
    paths: list[Path] = []
    copydet = suite_root / "copydet"
    with (copydet / "gallery.csv").open() as f:
        rows = list(csv.DictReader(f))
    large = [copydet / r["path"] for r in rows if "__" in r["label"]]
    small = [copydet / r["path"] for r in rows if "__" not in r["label"]]
    venues = suite_root / "venues"
    with (venues / "gallery.csv").open() as f:
        venue_rows = [venues / r["path"] for r in csv.DictReader(f)]
    with (venues / "queries.csv").open() as f:
        venue_rows += [venues / r["path"] for r in csv.DictReader(f)]
    paths = large + venue_rows
    paths += small[: max(0, n - len(paths))]
    return paths[:n]


def naive(data: bytes) -> None:
    imagehash.phash(Image.open(io.BytesIO(data)))
    imagehash.dhash(Image.open(io.BytesIO(data)))
    pdqhash.compute(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def ours(data: bytes, names: list[str]) -> None:
    pipeline.extract(data, names)


def timed(fn, blobs: list[bytes]) -> float:
    start = time.perf_counter()
    for b in blobs:
        fn(b)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--suite-root", type=Path, default=ROOT.parent / "shared" / "bench")
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    try:
        import cv2
        cv2.setNumThreads(1)
    except ImportError:
        pass

    paths = pick_photos(args.suite_root, args.n)
    blobs = [p.read_bytes() for p in paths]
    megapixels = []
    for b in blobs:
        w, h = Image.open(io.BytesIO(b)).size
        megapixels.append(w * h / 1e6)
    names = [s.name for s in signals.select(["hashes"])]
    ours(blobs[0], names)
    naive(blobs[0])  # warm both up

    ratios, ours_rates, naive_rates = [], [], []
    for _ in range(args.repeat):  # interleaved so both see the same machine load
        t_naive = timed(naive, blobs)
        t_ours = timed(lambda b: ours(b, names), blobs)
        naive_rates.append(len(blobs) / t_naive)
        ours_rates.append(len(blobs) / t_ours)
        ratios.append(t_naive / t_ours)
    big = sum(1 for m in megapixels if m >= 1.0)
    print(f"photos: {len(blobs)} JPEGs, {big} of 1-3 megapixels, "
          f"median {statistics.median(megapixels):.2f} MP, max {max(megapixels):.2f} MP")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, one process, "
          f"{platform.python_implementation()} {platform.python_version()}")
    print(f"reunite  (sha256+pHash+dHash+aHash+wHash+PDQ, one decode): "
          f"{statistics.median(ours_rates):7.1f} images/s")
    print(f"naive peer (pHash, dHash, PDQ; one full decode each):     "
          f"{statistics.median(naive_rates):7.1f} images/s")
    print(f"ratio reunite / naive: {statistics.median(ratios):.2f}x "
          f"(runs: {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
