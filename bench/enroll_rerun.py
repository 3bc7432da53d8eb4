"""A no-op `reunite enroll` re-run against the first run, for two checkouts alternated.

The issue 15 trial: enrolling 30 missing persons took as long the second time,
with nothing new, as the first (30 s against 5 s for a no-op `index`), because
every row was decoded and its faces extracted before the bank was asked
whether it already held the photo. This builds a 30-person manifest from the
faces suite's gallery (one photo each, synthetic consent columns), enrols it
into a fresh data folder with each checkout's `reunite`, then runs the same
command again, and prints the wall time of each run, round by round::

    OMP_NUM_THREADS=1 nice -n 10 python bench/enroll_rerun.py --checkout /work/main --checkout . --rounds 3

The suite is read in place (../shared/bench/faces), never copied.
"""

from __future__ import annotations

import argparse
import base64
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = Path(__file__).resolve().parents[2] / "shared" / "bench" / "faces"


def manifest(folder: Path, people: int, suite: Path) -> Path:
    """The first ``people`` labels of the gallery, one photo each, with a consent record."""
    rows, seen = [], set()
    with (suite / "gallery.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row["label"] in seen:
                continue
            seen.add(row["label"])
            rows.append({"path": str(suite / row["path"]), "label": f"person-{len(rows):02d}",
                         "consent_by": "family", "consent_date": "2026-01-01",
                         "consent_expires": "2030-01-01", "case_ref": f"case-{len(rows):02d}"})
            if len(rows) == people:
                break
    out = folder / "people.csv"
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def timed(checkout: Path, data: Path, people: Path, env: dict[str, str]) -> float:
    cmd = [sys.executable, "-m", "api.cli", "--data", str(data), "enroll", str(people), "--bank", "people",
           "--kind", "missing_person", "--quiet", "--no-back-search"]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=checkout, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", action="append", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--people", type=int, default=30)
    parser.add_argument("--suite", type=Path, default=SUITE)
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "REUNITE_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode()}
    times: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="enroll-rerun-") as tmp:
        people = manifest(Path(tmp), args.people, args.suite)
        for n in range(args.rounds):
            for checkout in args.checkout:
                data = Path(tmp) / f"data-{checkout.resolve().name}-{n}"
                first = timed(checkout, data, people, env)
                again = timed(checkout, data, people, env)
                runs = times.setdefault(str(checkout), {"first": [], "rerun": []})
                runs["first"].append(first)
                runs["rerun"].append(again)
                print(f"round {n + 1} {checkout}: first {first:.2f} s, no-op re-run {again:.2f} s",
                      flush=True)
    for checkout, runs in times.items():
        print(f"{checkout}: median first {statistics.median(runs['first']):.2f} s, "
              f"median no-op re-run {statistics.median(runs['rerun']):.2f} s")


if __name__ == "__main__":
    main()
