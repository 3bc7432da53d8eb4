"""Answer one suite's queries with two (or more) source trees in the same run, one query at a time.

    OMP_NUM_THREADS=1 nice -n 10 python bench/alternate_runs.py --root /tmp/frames2 \\
        --queries /tmp/frames2/queries.csv --out /tmp/frames2/run base=/tmp/base new=.

The machine these benchmarks run on is shared and its load swings from 1 to 15
within minutes: two systems timed one after the other, or side by side, see
different machines. Here each tree gets a worker process (its own ``matcher``
imported from that tree), and every query is answered by every worker in turn,
the order reversed on every other query, so that both see the same load. Records
are written as bench/copy_suite.py's ``collect`` writes them (``OUT/NAME.jsonl``,
resumed when present), to be scored by bench/frames_suite.py's ``report`` or
bench/copy_suite.py's ``metrics``.

``--root`` holds ``suite/`` (gallery.csv, queries.csv, images) and ``data/`` (the
bank built by ``copy_suite.build``; every tree must read its catalog revision).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path


def worker(tree: Path, root: Path, out: Path) -> None:
    """Answer queries read from stdin (one JSON row a line) with ``tree``'s matcher."""
    sys.path.insert(0, str(tree / "bench"))
    sys.path.insert(0, str(tree))
    import copy_suite as cs
    import faiss

    from indexer.store.store import Store
    from matcher.search.query import Matcher

    faiss.omp_set_num_threads(1)
    store = Store(root / "data")
    bank = store.bank_or_error("copy")
    matcher = Matcher(store)
    with out.open("a", encoding="utf-8") as f:
        print("ready", flush=True)
        for line in sys.stdin:
            rec = cs.answer_one(matcher, store, bank, root / "suite", json.loads(line))
            f.write(json.dumps(rec) + "\n")
            f.flush()
            print("done", flush=True)


def coordinate(root: Path, queries: Path, out: Path, trees: list[tuple[str, Path]]) -> None:
    """Every query to every tree's worker in turn (order reversed on every other query)."""
    out.mkdir(parents=True, exist_ok=True)
    workers, done = [], {}
    for name, tree in trees:
        records = out / f"{name}.jsonl"
        done[name] = ({json.loads(line)["query"] for line in records.read_text().splitlines() if line.strip()}
                      if records.exists() else set())
        proc = subprocess.Popen([sys.executable, __file__, "--worker", str(tree), "--root", str(root),
                                 "--out", str(records)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        if proc.stdout is None or proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"worker for {name} did not start")
        workers.append((name, proc))
    with queries.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for n, q in enumerate(rows):
        for name, proc in workers if n % 2 == 0 else workers[::-1]:
            if q["path"] in done[name]:
                continue
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(q) + "\n")
            proc.stdin.flush()
            if proc.stdout.readline().strip() != "done":
                raise SystemExit(f"worker for {name} stopped at {q['path']}")
        if n % 20 == 0:
            print(f"{n}/{len(rows)} queries", file=sys.stderr, flush=True)
    for _name, proc in workers:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--queries", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("trees", nargs="*", help="NAME=TREE (a source tree to import the matcher from)")
    args = ap.parse_args()
    if args.worker is not None:
        worker(args.worker, args.root, args.out)
        return
    if not args.queries or len(args.trees) < 2 or any("=" not in t for t in args.trees):
        print("need --queries and two or more NAME=TREE", file=sys.stderr)
        raise SystemExit(2)
    trees = [(name, Path(tree).resolve()) for name, tree in (t.split("=", 1) for t in args.trees)]
    coordinate(args.root, args.queries, args.out, trees)


if __name__ == "__main__":
    main()
