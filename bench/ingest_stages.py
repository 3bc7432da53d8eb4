"""Per-photo wall ms of each stage of `--signals hashes` indexing in one process: the decode, each hash, the
linker's print (what a worker does for one photo), on the photos of a folder.

    OMP_NUM_THREADS=1 PYTHONPATH=TREE .venv/bin/python bench/ingest_stages.py DIR [N]

Run it with PYTHONPATH set to each checkout in turn (alternated) for a before/after: the machine is shared.
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path


def main() -> None:
    from indexer import images
    from indexer.signals import base
    from matcher.networks import prints as link_prints

    paths = sorted(Path(sys.argv[1]).iterdir())[:int(sys.argv[2]) if len(sys.argv) > 2 else 100]
    blobs = [p.read_bytes() for p in paths]
    chosen = [base.get(s.name) for s in base.select(["hashes"])]
    spent: dict[str, float] = {}

    def add(stage: str, start: float) -> None:
        spent[stage] = spent.get(stage, 0.0) + time.perf_counter() - start

    for _ in range(3):
        for data in blobs:
            start = time.perf_counter()
            picture = images.load(data, max_side=256, grey=True)
            add("load", start)
            start = time.perf_counter()
            hashlib.sha256(data).hexdigest()
            add("sha256", start)
            for signal in chosen:
                start = time.perf_counter()
                signal.extract(picture)
                add(signal.name, start)
            start = time.perf_counter()
            link_prints.print_of(picture)
            add("print", start)
    n = 3 * len(blobs)
    for stage, seconds in spent.items():
        print(f"{stage:8s} {seconds / n * 1000:6.3f} ms")
    print(f"{'total':8s} {sum(spent.values()) / n * 1000:6.3f} ms")


if __name__ == "__main__":
    main()
