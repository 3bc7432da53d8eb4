"""Two multi-index layouts over the same hashes: same hits, CPU per radius-31 lookup.

    python bench/mih_layouts.py --data /tmp/refs10m --substrings 11

Reads the saved PDQ index of a ``bench/hash_http.py build`` folder (the layout
it was built with), builds a second layout of the same codes and ids in memory,
checks that both return the same hits (ids and distances, in order) for the
script's lookups, and times both on the rest, alternated.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--substrings", type=int, default=11)
    parser.add_argument("--lookups", type=int, default=400)
    args = parser.parse_args()
    from bench.hash_http import lookups
    from indexer.signals import base as signals
    from indexer.store.mih import MultiIndexHashIndex
    from indexer.store.vectors import load_saved

    path = max((args.data / "indexes").glob("bank-*/pdq.faiss"), key=lambda p: p.stat().st_size)
    saved = load_saved(signals.get("pdq"), path)
    t0 = time.time()
    other = MultiIndexHashIndex.from_vectors(256, np.array(saved._ids), np.array(saved._codes),
                                             substrings=args.substrings, flips=2)
    out = {"hashes": len(saved), "saved_substrings": saved.m, "other_substrings": other.m,
           "other_build_s": round(time.time() - t0), "other_offsets_mb": round(other._offsets.nbytes / 1e6)}
    queries = [np.frombuffer(bytes.fromhex(h), dtype=np.uint8)[None, :] for h in lookups(args.lookups)]
    for q in queries[:50]:
        (a_ids, a_d), (b_ids, b_d) = saved.radius_arrays(q, 31)[0], other.radius_arrays(q, 31)[0]
        if a_ids.tolist() != b_ids.tolist() or a_d.tolist() != b_d.tolist():
            raise SystemExit("the two layouts disagree")
    out["same_hits_on"] = 50
    for rnd in range(2):
        for label, index in (("saved", saved), ("other", other)):
            start = time.process_time()
            for q in queries[50:]:
                index.radius_arrays(q, 31)
            spent = (time.process_time() - start) / (len(queries) - 50)
            out[f"{label}_cpu_ms_round{rnd}"] = round(spent * 1000, 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
