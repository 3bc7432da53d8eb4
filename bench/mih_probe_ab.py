"""Two implementations of the multi-index probe over ONE mapping, alternated query by query: CPU per probe.

    python bench/mih_probe_ab.py --data /tmp/refs10m --baseline ../main/indexer/store/mih.py

On a shared machine two processes measured one after the other differ by more than a
probe change is worth; here the baseline's ``MultiIndexHashIndex._probe`` (loaded from
another tree's ``mih.py``) and this tree's run on the same saved index, in the same
process, each query by both in alternating order, after a check that both find the
same hits (ids and distances) on the first 50 lookups of ``bench/hash_http.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
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
    parser.add_argument("--baseline", type=Path, required=True, help="another tree's indexer/store/mih.py")
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--radius", type=int, default=32)
    args = parser.parse_args()
    from bench.hash_http import lookups
    from indexer.signals import base as signals
    from indexer.store.vectors import load_saved

    spec = importlib.util.spec_from_file_location("baseline_mih", args.baseline)
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    path = max((args.data / "indexes").glob("bank-*/pdq.faiss"), key=lambda p: p.stat().st_size)
    index = load_saved(signals.get("pdq"), path)
    probes = {"baseline": lambda q: baseline.MultiIndexHashIndex._probe(index, q, args.radius),
              "this_tree": lambda q: index._probe(q, args.radius)}
    queries = [np.frombuffer(bytes.fromhex(h), dtype=np.uint8)[None, :] for h in lookups(args.lookups + 50)]
    for q in queries[:50]:
        found = []
        for probe in probes.values():
            ids, dist = probe(q)[0]
            order = np.lexsort((ids, dist))
            found.append((ids[order].tolist(), dist[order].tolist()))
        if found[0] != found[1]:
            raise SystemExit("the two probes disagree")
    spent = dict.fromkeys(probes, 0.0)
    names = list(probes)
    for n, q in enumerate(queries[50:]):
        for name in (names if n % 2 else names[::-1]):
            start = time.process_time()
            probes[name](q)
            spent[name] += time.process_time() - start
    print(json.dumps({"same_hits_on": 50, **{f"{k}_cpu_ms": round(v / args.lookups * 1000, 4)
                                               for k, v in spent.items()}}))


if __name__ == "__main__":
    main()
