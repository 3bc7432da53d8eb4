"""Page faults and CPU of a fresh process's first multi-index probes (indexer/store/mih.py).

    python bench/mih_faults.py --data /tmp/refs10m [--batches 6]

Maps a data folder's saved multi-index file as a new worker does (``load_saved``) and
probes it at radius 31 with the lookups of ``bench/hash_http.py``, 100 at a time: CPU per
probe and minor/major page faults per probe (getrusage) for each batch, so that the cost
of a worker's first lookups on a cold mapping shows against its steady state.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    import numpy as np

    from bench.hash_http import lookups
    from indexer.signals import base as signals
    from indexer.store.vectors import load_saved

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--batches", type=int, default=6)
    args = parser.parse_args()
    [path] = sorted(args.data.glob("indexes/*/pdq.faiss"))
    start = time.process_time()
    index = load_saved(signals.get("pdq"), path)
    print(json.dumps({"load_cpu_s": round(time.process_time() - start, 2), "index": type(index).__name__}))
    queries = [np.frombuffer(bytes.fromhex(h), dtype=np.uint8)[None, :] for h in lookups(100 * args.batches)]
    for b in range(args.batches):
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
        for q in queries[100 * b:100 * (b + 1)]:
            index.radius_arrays(q, 31)
        spent, after = time.process_time() - start, resource.getrusage(resource.RUSAGE_SELF)
        print(json.dumps({"batch": b + 1, "cpu_ms_per_probe": round(spent * 10, 3),
                          "minor_faults_per_probe": round((after.ru_minflt - before.ru_minflt) / 100, 1),
                          "major_faults_per_probe": round((after.ru_majflt - before.ru_majflt) / 100, 2)}))


if __name__ == "__main__":
    main()
