"""Calibrate the copy-detection decision (hash thresholds + the ``copy`` rule) on half a suite.

    OMP_NUM_THREADS=1 python bench/calibrate_copy.py ../shared/bench/copydet \\
        [--records /tmp/copydet-records.jsonl] [--data /tmp/copydet-data] [--dry-run]

Only the calibration half (bench.copy_suite.split: half of the original
photos, every edit of one photo on the same side) is looked at. The rule is
"no impostor may reach ``match``, with a margin":

- each hash signal: ``match`` = 90% of (and at least 2 below) the smallest distance any wrong-label
  candidate (or any candidate of a non-mated query) had, PDQ's flat
  low-quality hashes excluded (they can never auto-match anyway);
  ``review`` = the 1st percentile of those impostor distances;
- local features: for each ``min_coverage`` on a small grid,
  ``match_inliers`` = 1.25 x the most tight inliers an impostor reached with
  that coverage; the grid point with the best calibration recall wins.
  ``strong_inliers`` = 1.5 x the most tight inliers any impostor reached at any
  coverage: that many are a copy even when they cover little.
  ``review_inliers`` = 6 tight inliers under a plausible homography: chance
  fits almost never get there, while look-alikes (another photo of the same
  face or room) do, and those are worth a human look in this work.
  ``consistent_share``: at least ``review_inliers`` tight inliers that are this
  share of all tentative matches and span ``consistent_coverage`` (0.2) of an
  image are a match (low-texture crops: see matcher.search.decide.CopyRule); the share
  is 0.8 (four of five matches agree), raised to 0.1 above the largest share any
  impostor with ``review_inliers`` reached (0.62 on copydet's calibration half).

The result goes into matcher/defaults.json by read-modify-write: the hash
entries of ``signals`` and the top-level ``copy`` section, nothing else. The
held-out half's numbers are printed and recorded next to the thresholds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import copy_suite as cs  # noqa: E402

from indexer.signals import base as signals  # noqa: E402
from matcher import defaults as defaults_mod  # noqa: E402

COVERAGE_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
MARGIN_HASH = 0.9
# At the small distances of 64-bit hashes 90% is no margin: stay two bits clear of impostors.
HASH_STEP_MARGIN = 2
MARGIN_INLIERS = 1.25
MARGIN_STRONG = 1.5
MIN_MATCH_INLIERS = 12
MIN_REVIEW_INLIERS = 6
MIN_CONSISTENT_SHARE = 0.8
CONSISTENT_MARGIN = 0.1
CONSISTENT_COVERAGE = 0.2


def impostors(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evidence of every candidate that is not the query's subject."""
    return [c["evidence"] for r in records for c in r["candidates"] if c["label"] != r["label"]]


def hash_thresholds(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out = {}
    bad = impostors(records)
    for signal in signals.select(["hashes"]):
        min_quality = getattr(signal, "min_quality", None)
        dists = [float(e[signal.name]) for e in bad if signal.name in e
                 and not (min_quality is not None and e.get(f"{signal.name}_quality") is not None
                          and e[f"{signal.name}_quality"] * 100 < min_quality)]
        if not dists:
            continue
        closest = min(dists)
        # A small gallery overstates how far impostors stay (more references, closer
        # impostors), so a match never reaches beyond the signal's own review distance.
        ceiling = signal.default_thresholds.review
        match = max(0.0, min(math.floor(MARGIN_HASH * closest), closest - HASH_STEP_MARGIN, ceiling))
        review = max(match + 1, float(np.floor(np.percentile(dists, 1))))
        out[signal.name] = {"match": match, "review": review}
    return out


def local_rule(records: list[dict[str, Any]], hash_table: dict[str, dict[str, float]],
               base: dict[str, Any]) -> dict[str, Any]:
    bad = [e for e in impostors(records) if "local_tight_inliers" in e]
    tight = np.array([e["local_tight_inliers"] for e in bad], dtype=float)
    cover = np.array([max(e.get("local_coverage", 0.0), e.get("local_query_coverage", 0.0))
                      for e in bad], dtype=float)
    review = MIN_REVIEW_INLIERS
    # Beyond 1.5x the most any impostor reached, anywhere, coverage no longer matters.
    strong = int(np.ceil(MARGIN_STRONG * tight.max())) if len(tight) else 60
    shares = [e["local_inliers"] / e["local_matches"] for e in bad
              if e["local_tight_inliers"] >= review and e.get("local_matches")]
    consistent = round(max([MIN_CONSISTENT_SHARE] + [min(1.0, x + CONSISTENT_MARGIN) for x in shares]), 3)
    best: tuple[float, dict[str, Any]] | None = None
    for min_cov in COVERAGE_GRID:
        reach = tight[cover >= min_cov]
        match = max(MIN_MATCH_INLIERS, int(np.ceil(MARGIN_INLIERS * reach.max())) if len(reach) else 0)
        rule = {"match_inliers": match, "review_inliers": min(review, match - 1),
                "min_coverage": min_cov, "strong_inliers": max(strong, 2 * match),
                "consistent_share": consistent, "consistent_coverage": CONSISTENT_COVERAGE}
        m = cs.metrics(records, cs.ours(candidate_defaults(base, hash_table, rule)))["OVERALL"]
        print(f"  min_coverage {min_cov:.2f}: match_inliers {match:3d}  "
              f"recall {m['recall']:.4f}  false accepts {m['false_accepts']}")
        # Ties go to the larger coverage: the same recall with a wider margin against look-alikes.
        if m["false_accepts"] == 0 and (best is None or m["recall"] >= best[0]):
            best = (m["recall"], rule)
    if best is None:
        raise SystemExit("no rule without false accepts on the calibration half")
    return best[1]


def candidate_defaults(raw: dict[str, Any], hash_table: dict[str, dict[str, float]],
                       rule: dict[str, Any]) -> defaults_mod.Defaults:
    """Defaults as they would read with these thresholds (nothing written)."""
    merged = json.loads(json.dumps(raw))
    merged.setdefault("signals", {}).update(hash_table)
    merged["copy"] = {**merged.get("copy", {}), **rule}
    table = {n: signals.Thresholds(float(t["match"]), float(t["review"]))
             for n, t in merged["signals"].items()}
    return defaults_mod.Defaults(version=str(merged.get("version")), signals=table, raw=merged)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", type=Path)
    ap.add_argument("--records", type=Path, default=Path("/tmp/copydet-records.jsonl"),
                    help="Raw answers (reused and resumed when the file exists).")
    ap.add_argument("--data", type=Path, default=Path("/tmp/copydet-data"))
    ap.add_argument("--dry-run", action="store_true", help="Print, do not write defaults.json.")
    ap.add_argument("--partial", action="store_true",
                    help="Use the records there are (a first pass before a full collection).")
    args = ap.parse_args()

    queries = cs.read_csv(args.suite / "queries.csv")
    if not args.partial and (not args.records.exists()
                             or len(args.records.read_text().splitlines()) < len(queries)):
        store, bank, _secs = cs.build(args.suite, args.data)
        records = cs.collect(store, bank, args.suite, queries, args.records)
    else:
        done = {json.loads(line)["query"]: json.loads(line)
                for line in args.records.read_text().splitlines() if line.strip()}
        records = [done[q["path"]] for q in queries if q["path"] in done]
    half = cs.split(args.suite, queries)
    cal = [r for r in records if half[r["query"]] == "cal"]
    test = [r for r in records if half[r["query"]] == "test"]
    print(f"calibration half: {len(cal)} queries, held-out half: {len(test)} queries")

    path = defaults_mod.DEFAULTS_PATH
    raw = json.loads(path.read_text(encoding="utf-8"))
    hash_table = hash_thresholds(cal)
    print("hash thresholds:", hash_table)
    rule = local_rule(cal, hash_table, raw)
    print("copy rule:", rule)
    fitted = candidate_defaults(raw, hash_table, rule)
    held = cs.metrics(test, cs.ours(fitted))
    calm = cs.metrics(cal, cs.ours(fitted))["OVERALL"]
    o = held["OVERALL"]
    print(f"calibration half: recall {calm['recall']:.4f}  false accepts {calm['false_accepts']}")
    print(f"held-out half:    recall {o['recall']:.4f}  top1 {o['top1']:.4f}  "
          f"false accepts {o['false_accepts']} ({o['false_accept']:.4%})")
    worst = min((m["recall"], t) for t, m in held.items() if t != "OVERALL")
    print(f"held-out weakest transform: {worst[1]} {worst[0]:.4f}")
    if args.dry_run:
        return
    # Read-modify-write right before writing: other calibrations own other sections.
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw.setdefault("signals", {}).update(hash_table)
    raw["copy"] = {
        **rule, "signal": "sift",
        "calibrated_on": {
            "suite": args.suite.name, "date": dt.date.today().isoformat(),
            "split": "sha1(label or provenance source_file)[0] % 2 == 0 is the calibration half",
            "calibration_queries": len(cal), "held_out_queries": len(test),
            "held_out": {k: round(v, 4) if isinstance(v, float) else v for k, v in o.items()},
            "hash_signals": sorted(hash_table),
        },
    }
    path.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
