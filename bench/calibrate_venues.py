"""Calibrate the venue searcher: VLAD weight and match/review margins, leave-one-place-out.

    python bench/calibrate_venues.py bench/results/venues/ours_evidence.jsonl [--write]

Reads the raw evidence ``bench/venue_bench.py`` records for every shortlisted
venue of every query (inliers, VLAD similarity) and fits, on all queries:

- ``vlad_weight`` w and ``colour_weight`` c of the fused evidence
  ``inliers + w * similarity + c * colour``: the pair of a small, fixed grid
  (w in 0, 10, 25, 50, 100; c in 0, 5, 10, 20) with the best top-1 plus recall
  at the fitted ``match`` (ranking and separation both count);
- ``match``: the lowest *margin* (first venue's evidence minus the best other
  venue's, as matcher/scene_search.py decides) at which at most 0.5% of all
  queries would be false accepts (a wrong first venue, or any venue for a
  non-mated query): half the issue's 1% budget, as margin for suites unlike
  this one;
- ``review``: the lowest margin at which at most 10% would be (a review needs
  no inliers: a person looks at it).

A ``match`` also needs MIN_MATCH_INLIERS inliers on the first venue (see
matcher/scene_search.py); the ``match`` margin is fitted with that rule.

The suite is small (a few dozen places), so the same fit is also run
leave-one-place-out: the parameters are fitted without one place's queries
and applied to them, for every place in turn. The report prints both; the
leave-one-place-out numbers are the honest estimate of what the defaults do
on places they were not fitted to. ``--write`` stores the all-data fit under
the ``scene`` key of matcher/defaults.json (only that key is rewritten).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from matcher.scene_search import CHANCE_EVIDENCE, MIN_MATCH_INLIERS  # noqa: E402

DEFAULTS = Path(__file__).resolve().parent.parent / "matcher" / "defaults.json"
WEIGHTS = (0.0, 10.0, 25.0, 50.0, 100.0)
COLOUR_WEIGHTS = (0.0, 5.0, 10.0, 20.0)
Weights = tuple[float, float]  # (vlad_weight, colour_weight)
MATCH_FALSE_ACCEPTS = 0.005
REVIEW_FALSE_ACCEPTS = 0.10
SHORTLIST = 50


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ranked(query: dict, w: Weights) -> list[tuple[str, float, int]]:
    """(label, evidence, inliers) per venue, best evidence first (a venue's best reference)."""
    best: dict[str, tuple[float, int]] = {}
    for c in query["candidates"]:
        e = c["inliers"] + w[0] * max(c["similarity"], 0.0) + w[1] * max(c.get("colour", 0.0), 0.0)
        if e > best.get(c["label"], (-1.0, 0))[0]:
            best[c["label"]] = (e, int(c["inliers"]))
    return sorted(((label, e, n) for label, (e, n) in best.items()), key=lambda x: (-x[1], x[0]))


def top1(queries: list[dict], w: Weights) -> float:
    mated = [q for q in queries if q["label"]]
    hits = sum(1 for q in mated if (r := ranked(q, w)) and r[0][0] == q["label"])
    return hits / max(1, len(mated))


def margin(r: list[tuple[str, float, int]], gated: bool = True) -> float:
    """The first venue's lead over the best other venue (over chance when there is none).

    ``gated``: as for a ``match`` in matcher/scene_search.py, a first venue with
    fewer than MIN_MATCH_INLIERS inliers has no margin (minus infinity).
    """
    if gated and r[0][2] < MIN_MATCH_INLIERS:
        return float("-inf")
    return r[0][1] - max(r[1][1] if len(r) > 1 else CHANCE_EVIDENCE, CHANCE_EVIDENCE)


def false_accept_evidence(q: dict, w: Weights, gated: bool = True) -> float:
    """The margin at or above which this query would produce a false accept."""
    r = ranked(q, w)
    if not r:
        return float("inf")
    if not q["label"]:
        return margin(r, gated)  # any match on a non-mated query is false
    return margin(r, gated) if r[0][0] != q["label"] else float("inf")


def threshold(queries: list[dict], w: Weights, budget: float, gated: bool = True) -> float:
    """Lowest margin T with at most ``budget`` of the queries falsely accepted at T."""
    bad = sorted((false_accept_evidence(q, w, gated) for q in queries), reverse=True)
    allowed = int(np.floor(budget * len(queries)))
    finite = [b for b in bad if np.isfinite(b)]
    if len(finite) <= allowed:
        return 1.0
    return float(np.nextafter(finite[allowed], np.inf))


def recall_at(queries: list[dict], w: Weights, t: float) -> float:
    mated = [q for q in queries if q["label"]]
    hits = sum(1 for q in mated if (r := ranked(q, w)) and r[0][0] == q["label"] and margin(r) >= t)
    return hits / max(1, len(mated))


def fit(queries: list[dict], colour_weights: tuple[float, ...] = COLOUR_WEIGHTS) -> dict[str, float]:
    def merit(x: Weights) -> tuple[float, float]:
        t = threshold(queries, x, MATCH_FALSE_ACCEPTS)
        # Ties go to the weights nearest the middle of the grid.
        return (round(top1(queries, x) + recall_at(queries, x, t), 6), -abs(x[0] - 25) - abs(x[1] - 5))

    w = max(itertools.product(WEIGHTS, colour_weights), key=merit)
    return {"vlad_weight": w[0], "colour_weight": w[1],
            "match": round_up(threshold(queries, w, MATCH_FALSE_ACCEPTS)),
            "review": round_up(threshold(queries, w, REVIEW_FALSE_ACCEPTS, gated=False))}


def round_up(x: float) -> float:
    """Three decimals, rounded up: rounding a threshold down would admit the query it excludes."""
    return math.ceil(x * 1000) / 1000


def evaluate(queries: list[dict], params_for: dict[str, dict[str, float]]) -> dict:
    """top-1, top-5, recall at match, false accepts: overall and per transform, with counts."""
    rows: dict[str, list[tuple[bool, bool, bool, bool, bool]]] = defaultdict(list)
    for q in queries:
        p = params_for[q["path_group"]]
        r = ranked(q, (p["vlad_weight"], p["colour_weight"]))
        first = r[0] if r else ("", -1.0)
        matched = bool(r) and margin(r) >= p["match"]
        right = bool(q["label"]) and first[0] == q["label"]
        in5 = bool(q["label"]) and q["label"] in [label for label, *_ in r[:5]]
        false = (matched and not right) if q["label"] else matched
        for key in ("all", q["transform"]):
            rows[key].append((bool(q["label"]), right, in5, matched and right, false))
    out = {}
    for key, vals in rows.items():
        mated = [v for v in vals if v[0]]
        out[key] = {"mated": len(mated), "queries": len(vals),
                    "top1": sum(v[1] for v in mated) / max(1, len(mated)),
                    "top5": sum(v[2] for v in mated) / max(1, len(mated)),
                    "recall_at_default": sum(v[3] for v in mated) / max(1, len(mated)),
                    "false_accept": sum(v[4] for v in vals) / max(1, len(vals))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("evidence", type=Path)
    parser.add_argument("--write", action="store_true", help="Store the fit in matcher/defaults.json.")
    parser.add_argument("--no-colour", action="store_true",
                        help="Fit with colour_weight 0 (the ranking without the colour histogram).")
    args = parser.parse_args()
    queries = load(args.evidence)
    for i, q in enumerate(queries):
        q["path_group"] = q["label"] or f"nonmated-{i}"
    groups = sorted({q["path_group"] for q in queries})
    colours = (0.0,) if args.no_colour else COLOUR_WEIGHTS
    fitted = fit(queries, colours)
    lopo = {}
    for g in groups:
        lopo[g] = fit([q for q in queries if q["path_group"] != g], colours)
    report = {"fit_on_all": fitted,
              "in_sample": evaluate(queries, {g: fitted for g in groups}),
              "leave_one_place_out": evaluate(queries, lopo),
              "lopo_parameter_spread": {
                  k: [min(p[k] for p in lopo.values()), max(p[k] for p in lopo.values())] for k in fitted}}
    print(json.dumps(report, indent=2))
    if args.write:
        raw = json.loads(DEFAULTS.read_text(encoding="utf-8"))
        raw["scene"] = {**fitted, "shortlist": SHORTLIST,
                        "calibrated_on": f"venues suite, {len(queries)} queries, "
                                         f"{sum(1 for q in queries if q['label'])} mated; "
                                         "bench/calibrate_venues.py"}
        DEFAULTS.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
        print(f"wrote the scene section of {DEFAULTS}")


if __name__ == "__main__":
    main()
