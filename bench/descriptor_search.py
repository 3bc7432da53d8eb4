"""Flat against inverted-file search of a bank's stored local features: CPU a photo and recall.

    python bench/descriptor_search.py --data DIR [--bank ads] [--photos 20] \
        [--lists 256 512 1024] [--nprobe 8 16]

Why: linking searches every new photo's stored RootSIFT rows (plain and mirrored) against the
bank's descriptor index, and a flat index's cost grows with every descriptor stored; the
inverted file's lists and probes trade that cost against recall. The queries are the first
``--photos`` photos' own rows (as the linker searches them), k 10; recall is the share of the
flat search's neighbours closer than ``--close`` (squared L2) that the inverted file returns.
Reads the catalog of an embedded (SQLite) data folder directly.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from indexer.signals import local  # noqa: E402
from indexer.store.faiss_tuned import faiss  # noqa: E402

K = 10


def bank_rows(data: Path, bank: str) -> list[np.ndarray]:
    """RootSIFT rows of every stored photo of ``bank``, in vector id order."""
    with sqlite3.connect(f"file:{data / 'catalog.sqlite'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT v.data FROM vectors v JOIN banks b ON b.id = v.bank_id "
                          "WHERE b.name = ? AND v.signal = ? ORDER BY v.id", (bank, local.SIFT.name))
        return [local.unpack(bytes(blob)).rootsift() for (blob,) in rows]


def timed_search(index: faiss.Index, queries: list[np.ndarray]) -> tuple[float, list]:
    start = time.process_time()
    found = [index.search(q, K) for q in queries]
    return (time.process_time() - start) / len(queries) * 1000, found


def recall(flat: list, other: list, close: float) -> float:
    hit = total = 0
    for (d0, i0), (_d1, i1) in zip(flat, other, strict=True):
        for want, got, dist in zip(i0, i1, d0, strict=True):
            keep = want[dist < close]
            total += len(keep)
            hit += len(np.intersect1d(keep, got))
    return hit / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--bank", default="ads")
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--lists", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--close", type=float, default=0.25)
    args = parser.parse_args()
    per_photo = bank_rows(args.data, args.bank)
    stored = np.ascontiguousarray(np.concatenate(per_photo), dtype=np.float32)
    queries = per_photo[:args.photos]
    flat = faiss.IndexFlatL2(local.DESCRIPTOR_DIM)
    flat.add(stored)
    flat_ms, flat_found = timed_search(flat, queries)
    out = {"photos": len(per_photo), "descriptors": len(stored), "queries": len(queries),
           "flat_ms": round(flat_ms, 1), "ivf": []}
    rng = np.random.default_rng(0)
    for lists in args.lists:
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(local.DESCRIPTOR_DIM), local.DESCRIPTOR_DIM, lists)
        ivf.cp.niter, ivf.cp.seed = 10, 1234
        sample = stored[rng.choice(len(stored), min(len(stored), 40 * lists), replace=False)]
        start = time.process_time()
        ivf.train(sample)
        ivf.add(stored)
        built = time.process_time() - start
        for nprobe in args.nprobe:
            ivf.nprobe = nprobe
            ms, found = timed_search(ivf, queries)
            out["ivf"].append({"lists": lists, "nprobe": nprobe, "ms": round(ms, 1),
                               "build_s": round(built, 2),
                               "recall": round(recall(flat_found, found, args.close), 4)})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
