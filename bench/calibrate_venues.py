"""Calibrate the venue searcher so that its false-accept rate holds whatever the bank's size.

    python bench/calibrate_venues.py bench/results/venues/ours_evidence.jsonl [--write]

Reads the raw evidence ``bench/venue_bench.py`` records for every venue of the
bank for every query (inliers, VLAD similarity, colour cosine of the venue's
best reference) and fits the parameters of the decision in
matcher/search/venues.py:

- ``vlad_weight`` w and ``colour_weight`` c of the fused evidence
  ``inliers + w * similarity + c * colour`` (a small fixed grid);
- ``net_weight`` n of the learned descriptor (``net`` in the evidence, the
  scene_net cosine): venues are ranked by the fused evidence plus
  ``n * max(net - 0.5, 0)`` and decided on the fused evidence without it
  (matcher/search/venues.py); evidence without ``net``, or ``--no-net``, fits
  the ``scene_sift`` section used by banks without the descriptor;
- ``chance_evidence`` F and the ``match`` margin T: a venue is a match when
  its evidence minus max(best other venue's evidence, F) is at least T;
- ``min_match_inliers`` (0 or 10): verified inliers a match also needs;
- ``review``: the same margin at a 10% false-accept budget (a person looks).

Why simulate bank sizes: the suite's bank holds the venue of every mated query
and 73 venues in all. A real bank is searched mostly with photos of rooms it
does not hold, and it may hold three venues or thirty thousand. A margin over
the runner-up alone, calibrated on the full suite, is a Lowe-style ratio test
whose false-accept rate depends on how many wrong venues compete: in a bank of
3 venues the best wrong venue is a weak estimate of chance. So every
candidate (F, T) is scored on banks of :data:`BANK_SIZES` venues drawn at
random from the suite (:data:`DRAWS` draws each, fixed seed); a query whose
venue was not drawn is a photo of an unknown room, and any match for it is
false. The fit keeps the (F, T) with the best top-1 + recall on the full bank
among those whose *worst* bank size stays within :data:`MATCH_FALSE_ACCEPTS`
(half the issue's 1%, as margin for suites unlike this one).

Simplifications, stated: the vocabulary stays the one trained on the whole
gallery (a small bank trains its own; bench/venue_bench.py ``--bank-sizes``
checks that end to end), and every venue of a drawn bank counts as verified
(the searcher verifies a shortlist of 50 references; on the suite a shortlist
of 20 vs all references changed top-1 by one query). ``--real-banks`` lifts the
first simplification: the evidence of real banks of a few venues, each with its
own vocabulary (bench/venue_bench.py ``--bank-evidence``), replaces the
simulated banks of those sizes, and ``--floor-slope`` lets the chance floor
depend on the bank's venue count (BENCHMARKS.md, issue 22 on 2026-12-03: it
moves recall from small banks to the suite, and is not shipped).

The suite is small (a few dozen places), so the same fit is also run
leave-one-place-out: the parameters are fitted without one place's queries
and applied to them, for every place in turn; those numbers are the honest
estimate. ``--write`` stores the all-data fit under the ``scene`` key of
matcher/defaults.json (only that key is rewritten).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULTS = Path(__file__).resolve().parent.parent / "matcher" / "defaults.json"
WEIGHTS = (0.0, 10.0, 25.0, 50.0, 100.0)
COLOUR_WEIGHTS = (0.0, 5.0, 10.0, 20.0)
FLOORS = tuple(float(f) for f in range(8, 61))
GATES = (0, 10)
BANK_SIZES = (2, 3, 5, 10, 20, 40)  # and the whole suite
DRAWS = 30
MATCH_FALSE_ACCEPTS = 0.005
REVIEW_FALSE_ACCEPTS = 0.10
SHORTLIST = 50
NET_WEIGHTS = (0.0, 25.0, 50.0, 100.0)
# The descriptor's cosine counts above this (unrelated rooms sit near it); fixed, not fitted
# (``--net-base``: another descriptor's unrelated rooms sit elsewhere).
NET_BASE = 0.5
# ``--floor-slope``: the chance floor may grow or shrink per doubling of the bank's venues
# (matcher.search.venues.SceneParams.chance_floor), measured from a bank of CHANCE_VENUES.
SLOPES = (-4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0)
CHANCE_VENUES = 20.0
Weights = tuple[float, float, float]  # (vlad_weight, colour_weight, net_weight)


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Banks:
    """For one weighting: the two best venues of every query in every simulated bank.

    Arrays are (banks, queries); bank 0 is the whole suite.
    """

    first: np.ndarray  # evidence of the first venue (-inf: the bank gave nothing)
    second: np.ndarray  # evidence of the best other venue (-inf: none)
    first_label: np.ndarray  # venue index of the first venue
    first_inliers: np.ndarray
    holds_truth: np.ndarray  # the query's venue is in the bank
    size: np.ndarray  # (banks,) venues in the bank


def venue_table(queries: list[dict], venues: dict[str, int], w: Weights) -> tuple[np.ndarray, np.ndarray]:
    """(queries, venues) evidence (-inf where not recorded) and inliers of each venue's best reference."""
    evidence = np.full((len(queries), len(venues)), -np.inf)
    inliers = np.zeros((len(queries), len(venues)))
    for qi, q in enumerate(queries):
        for c in q["candidates"]:
            e = c["inliers"] + w[0] * max(c["similarity"], 0.0) + w[1] * max(c.get("colour", 0.0), 0.0)
            if w[2] and c.get("net") is not None:
                e += w[2] * max(c["net"] - NET_BASE, 0.0)
            vi = venues[c["label"]]
            if e > evidence[qi, vi]:
                evidence[qi, vi], inliers[qi, vi] = e, c["inliers"]
    return evidence, inliers


def draw_banks(n_venues: int, seed: int = 0) -> list[np.ndarray]:
    """Boolean venue masks: the whole suite first, then DRAWS random banks of each size."""
    rng = np.random.default_rng(seed)
    banks = [np.ones(n_venues, bool)]
    for k in BANK_SIZES:
        if k >= n_venues:
            continue
        for _ in range(DRAWS):
            mask = np.zeros(n_venues, bool)
            mask[rng.choice(n_venues, k, replace=False)] = True
            banks.append(mask)
    return banks


@dataclass
class RealBank:
    """A real bank of a few venues (bench/venue_bench.py ``--bank-evidence``): its own vocabulary."""

    mask: np.ndarray  # (venues,) the bank's venues
    queries: list[dict]  # aligned with the suite's queries (no candidates where not recorded)


def load_real_banks(path: Path, queries: list[dict], venues: dict[str, int]) -> list[RealBank]:
    """small_banks_evidence.jsonl -> one RealBank per (size, draw), its rows in the suite's query order."""
    order = {q["query"]: i for i, q in enumerate(queries)}
    grouped: dict[tuple[int, int], dict[int, dict]] = defaultdict(dict)
    masks: dict[tuple[int, int], np.ndarray] = {}
    for rec in load(path):
        key = (int(rec["bank_size"]), int(rec["draw"]))
        if rec["query"] in order:
            grouped[key][order[rec["query"]]] = rec
        if key not in masks:
            masks[key] = np.zeros(len(venues), bool)
            masks[key][[venues[v] for v in rec["venues"]]] = True
    return [RealBank(masks[key], [grouped[key].get(i, {**q, "candidates": []})
                                  for i, q in enumerate(queries)]) for key in sorted(grouped)]


def simulate(queries: list[dict], venues: dict[str, int], w: Weights, banks: list[np.ndarray],
             real: Sequence[RealBank] = ()) -> Banks:
    """The first venue by the evidence with all of ``w`` (the ranking), decided on the evidence without
    the descriptor's term (matcher.search.venues.rank_venues): its lead over the best other venue's.

    ``banks`` are drawn from the whole suite's evidence; ``real`` banks bring their own."""
    full = (venue_table(queries, venues, w)[0], venue_table(queries, venues, (w[0], w[1], 0.0)))
    tables = [(mask, full[0], full[1]) for mask in banks]
    tables += [(rb.mask, venue_table(rb.queries, venues, w)[0],
                venue_table(rb.queries, venues, (w[0], w[1], 0.0))) for rb in real]
    truth = np.array([venues.get(q["label"], -1) if q["label"] else -1 for q in queries])
    rows = np.arange(len(queries))
    out = {k: [] for k in ("first", "second", "first_label", "first_inliers", "holds_truth")}
    for mask, ranked, (evidence, inliers) in tables:
        r = np.where(mask[None, :], ranked, -np.inf)
        e = np.where(mask[None, :], evidence, -np.inf)
        first = np.argmax(r, axis=1)
        others = e.copy()
        others[rows, first] = -np.inf
        out["first"].append(e[rows, first])
        out["second"].append(others.max(axis=1) if e.shape[1] > 1 else np.full(len(rows), -np.inf))
        out["first_label"].append(first)
        out["first_inliers"].append(inliers[rows, first])
        out["holds_truth"].append((truth >= 0) & mask[np.maximum(truth, 0)])
    return Banks(*(np.stack(out[k]) for k in ("first", "second", "first_label", "first_inliers",
                                                "holds_truth")),
                 size=np.array([int(t[0].sum()) for t in tables]))


def accepted(b: Banks, floor: float, margin: float, gate: int, slope: float = 0.0) -> np.ndarray:
    return lead(b, floor, gate, slope) >= margin


def floors(b: Banks, floor: float, slope: float) -> np.ndarray:
    """(banks, 1) chance floor of each bank: ``floor`` at CHANCE_VENUES, ``slope`` more per doubling."""
    return (floor + slope * np.log2(b.size / CHANCE_VENUES))[:, None]


def lead(b: Banks, floor: float, gate: int, slope: float = 0.0) -> np.ndarray:
    """The first venue's margin over max(runner-up, floor); -inf where it may not match at all."""
    out = b.first - np.maximum(b.second, floors(b, floor, slope))
    return np.where(np.isfinite(b.first) & (b.first_inliers >= gate), out, -np.inf)


def right_first(b: Banks, truth: np.ndarray) -> np.ndarray:
    return (b.first_label == truth[None, :]) & b.holds_truth


def lowest_margin(b: Banks, truth: np.ndarray, floor: float, gate: int, budget: float,
                  cols: np.ndarray | None, slope: float = 0.0) -> float:
    """The smallest margin at which no bank size has more than ``budget`` false accepts."""
    sel = slice(None) if cols is None else cols
    false_lead = np.where(right_first(b, truth), -np.inf, lead(b, floor, gate, slope))[:, sel]
    margin = 0.0
    for size in np.unique(b.size):
        values = np.sort(false_lead[b.size == size].ravel())[::-1]
        allowed = int(np.floor(budget * values.size))
        finite = values[np.isfinite(values)]
        if len(finite) > allowed:
            margin = max(margin, float(np.nextafter(finite[allowed], np.inf)))
    return margin


def top1_recall(b: Banks, truth: np.ndarray, floor: float, margin: float, gate: int,
                cols: np.ndarray | None, slope: float = 0.0) -> tuple[float, float]:
    """Top-1 and recall at the decision on the whole suite (bank 0), over the ``cols`` queries."""
    sel = slice(None) if cols is None else cols
    right = right_first(b, truth)[0, sel]
    acc = accepted(b, floor, margin, gate, slope)[0, sel]
    n = max(1, int(b.holds_truth[0, sel].sum()))
    return float(right.sum()) / n, float((acc & right).sum()) / n


def bank_recall(b: Banks, truth: np.ndarray, floor: float, margin: float, gate: int,
                cols: np.ndarray | None, slope: float = 0.0) -> float:
    """Recall at the decision averaged over the bank sizes (each size: its banks' mated queries)."""
    sel = slice(None) if cols is None else cols
    hit = (accepted(b, floor, margin, gate, slope) & right_first(b, truth))[:, sel]
    holds = b.holds_truth[:, sel]
    return float(np.mean([hit[b.size == k].sum() / max(1, holds[b.size == k].sum())
                          for k in np.unique(b.size)]))


def fit(sims: dict[Weights, Banks], truth: np.ndarray, cols: np.ndarray | None = None,
        floor_grid: tuple[float, ...] = FLOORS, gates: tuple[int, ...] = GATES,
        slopes: tuple[float, ...] = (0.0,), every_size: bool = False) -> dict[str, float]:
    """Best weights, floor (and its slope), gate and match margin on the ``cols`` queries (all by default).

    The objective is top-1 + recall on the whole suite, or with ``every_size``
    top-1 + the recall averaged over every bank size (a floor fitted for the
    suite alone may buy its recall with the small banks')."""
    best: tuple[tuple[float, float], dict[str, float]] | None = None
    for w, b in sims.items():
        for gate in gates:
            for slope in slopes:
                for floor in floor_grid:
                    m = lowest_margin(b, truth, floor, gate, MATCH_FALSE_ACCEPTS, cols, slope)
                    top1, recall = top1_recall(b, truth, floor, m, gate, cols, slope)
                    if every_size:  # the recall of small banks counts as much as the suite's
                        recall = bank_recall(b, truth, floor, m, gate, cols, slope)
                    # Ties go to the weights nearest the middle of the grid, then the flatter floor,
                    # then the lower one.
                    key = (round(top1 + recall, 6), -abs(w[0] - 25) - abs(w[1] - 5) - w[2] / 1000
                           - abs(slope) / 100 - floor / 1000)
                    if best is None or key > best[0]:
                        best = (key, {"vlad_weight": w[0], "colour_weight": w[1], "net_weight": w[2],
                                      "chance_evidence": floor, "chance_slope": slope,
                                      "min_match_inliers": gate, "match": m})
    assert best is not None
    params = best[1]
    review = lowest_margin(sims[weights_of(params)], truth, params["chance_evidence"], 0,
                           REVIEW_FALSE_ACCEPTS, cols, params["chance_slope"])
    params["review"] = min(review, params["match"])
    return params


def weights_of(params: dict[str, float]) -> Weights:
    return (params["vlad_weight"], params["colour_weight"], params.get("net_weight", 0.0))


def round_up(x: float) -> float:
    """Three decimals, rounded up: rounding a threshold down would admit the query it excludes."""
    return math.ceil(x * 1000) / 1000


def evaluate(queries: list[dict], venues: dict[str, int], sims: dict[Weights, Banks], truth: np.ndarray,
             params_for: list[dict[str, float]]) -> dict:
    """Whole-suite top-1, top-5, recall, false accepts per transform, and false accepts per bank size.

    ``params_for[i]`` are the parameters query i is decided with (one fit for
    all, or the fit that left query i's place out).
    """
    rows: dict[str, list[tuple[bool, bool, bool, bool, bool]]] = defaultdict(list)
    by_size: dict[int, list[float]] = defaultdict(list)
    recall_by_size: dict[int, list[float]] = defaultdict(list)
    for qi, q in enumerate(queries):
        p = params_for[qi]
        w = weights_of(p)
        b = sims[w]
        evidence, _inl = venue_table([q], venues, w)
        order = [i for i in np.argsort(-evidence[0]) if np.isfinite(evidence[0, i])][:5]
        acc = accepted(b, p["chance_evidence"], p["match"], int(p["min_match_inliers"]),
                       p.get("chance_slope", 0.0))[:, qi]
        right = (b.first_label[:, qi] == truth[qi]) & b.holds_truth[:, qi]
        mated = bool(q["label"])
        for key in ("all", q["transform"]):
            rows[key].append((mated, bool(right[0]), mated and truth[qi] in order,
                              bool(acc[0] and right[0]), bool(acc[0] and not right[0])))
        for i, size in enumerate(b.size):
            by_size[int(size)].append(float(acc[i] and not right[i]))
            if b.holds_truth[i, qi]:
                recall_by_size[int(size)].append(float(acc[i] and right[i]))
    out: dict = {}
    for key, vals in rows.items():
        mated_rows = [v for v in vals if v[0]]
        n = max(1, len(mated_rows))
        out[key] = {"mated": len(mated_rows), "queries": len(vals),
                    "top1": sum(v[1] for v in mated_rows) / n, "top5": sum(v[2] for v in mated_rows) / n,
                    "recall_at_default": sum(v[3] for v in mated_rows) / n,
                    "false_accept": sum(v[4] for v in vals) / max(1, len(vals))}
    out["false_accept_by_bank_size"] = {str(k): float(np.mean(v)) for k, v in sorted(by_size.items())}
    out["recall_by_bank_size"] = {str(k): float(np.mean(v)) for k, v in sorted(recall_by_size.items())}
    return out


def group_of(label: str, hold_out: str) -> str:
    """The held-out unit of a mated query: its place, or its place's source dataset."""
    return label.split("_")[0] if hold_out == "dataset" else label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("evidence", type=Path)
    parser.add_argument("--write", action="store_true", help="Store the fit in matcher/defaults.json.")
    parser.add_argument("--no-colour", action="store_true",
                        help="Fit with colour_weight 0 (the ranking without the colour histogram).")
    parser.add_argument("--no-net", action="store_true",
                        help="Fit with net_weight 0 (no learned descriptor; written as section scene_sift).")
    parser.add_argument("--hold-out", choices=("place", "dataset"), default="place",
                        help="What the honest estimate leaves out: one place, or every place of one "
                             "source dataset (the label's first word: scannet, 7scenes, chios...).")
    parser.add_argument("--no-lopo", action="store_true", help="Skip the leave-one-place-out estimate.")
    parser.add_argument("--real-banks", type=Path,
                        help="small_banks_evidence.jsonl of bench/venue_bench.py --bank-evidence: real banks "
                             "(own vocabularies) replace the simulated banks of the sizes they have.")
    parser.add_argument("--weights", type=lambda t: tuple(float(x) for x in t.split(",")),
                        help="VLAD,COLOUR,NET: fit the decision only, these weights fixed (fewer free "
                             "parameters; the weights themselves are what least carries to new places).")
    parser.add_argument("--every-size", action="store_true",
                        help="Fit for the recall averaged over every bank size, not the whole suite's alone.")
    parser.add_argument("--floor-slope", action="store_true",
                        help="Also fit how the chance floor changes per doubling of the bank's venues.")
    parser.add_argument("--net-base", type=float, default=0.5,
                        help="The cosine above which the descriptor counts (written as net_base).")
    args = parser.parse_args()
    global NET_BASE
    NET_BASE = args.net_base
    queries = load(args.evidence)
    venues = {label: i for i, label in enumerate(sorted({c["label"] for q in queries
                                                          for c in q["candidates"]}))}
    truth = np.array([venues.get(q["label"], -1) if q["label"] else -1 for q in queries])
    real = load_real_banks(args.real_banks, queries, venues) if args.real_banks else []
    real_sizes = {int(rb.mask.sum()) for rb in real}
    banks = [m for m in draw_banks(len(venues)) if int(m.sum()) not in real_sizes]
    slopes = SLOPES if args.floor_slope else (0.0,)
    colours = (0.0,) if args.no_colour else COLOUR_WEIGHTS
    nets = (0.0,) if args.no_net or not any(c.get("net") is not None for q in queries
                                             for c in q["candidates"]) else NET_WEIGHTS
    with_net = nets != (0.0,)
    grid = [args.weights] if args.weights else [(w, c, n) for w in WEIGHTS for c in colours for n in nets]
    if args.weights and len(args.weights) != 3:
        parser.error("--weights takes three numbers: VLAD,COLOUR,NET")
    with_net = with_net and (not args.weights or args.weights[2] > 0)
    sims = {w: simulate(queries, venues, w, banks, real) for w in grid}
    fitted = fit(sims, truth, slopes=slopes, every_size=args.every_size)
    fitted["match"], fitted["review"] = round_up(fitted["match"]), round_up(fitted["review"])
    report = {"hold_out": args.hold_out, "fit_on_all": fitted,
              "in_sample": evaluate(queries, venues, sims, truth, [fitted] * len(queries))}
    if not args.no_lopo:
        groups = [group_of(q["label"], args.hold_out) if q["label"] else f"nonmated-{i}"
                  for i, q in enumerate(queries)]
        params_for: list[dict[str, float]] = [{}] * len(queries)
        spread: dict[str, list[float]] = defaultdict(list)
        for g in sorted(set(groups)):
            held = np.array([x == g for x in groups])
            p = fit(sims, truth, np.nonzero(~held)[0], slopes=slopes, every_size=args.every_size)
            for qi in np.nonzero(held)[0]:
                params_for[qi] = p
            for k, v in p.items():
                spread[k].append(float(v))
        report[f"leave_one_{args.hold_out}_out"] = evaluate(queries, venues, sims, truth, params_for)
        report["lopo_parameter_spread"] = {k: [min(v), max(v)] for k, v in spread.items()}
    print(json.dumps(report, indent=2))
    if args.write:
        raw = json.loads(DEFAULTS.read_text(encoding="utf-8"))
        section = "scene" if with_net else "scene_sift"
        fitted = {**fitted, "net_base": NET_BASE} if section == "scene" else fitted
        sizes = sorted({int(m.sum()) for m in banks[1:]} | real_sizes)
        kinds = f" (real banks of {', '.join(map(str, sorted(real_sizes)))})" if real_sizes else ""
        raw[section] = {**fitted, "chance_venues": CHANCE_VENUES, "shortlist": SHORTLIST,
                        "calibrated_on": f"venues suite, {len(queries)} queries, "
                                         f"{sum(1 for q in queries if q['label'])} mated, banks of "
                                         f"{', '.join(map(str, sizes))}{kinds} and {len(venues)} venues; "
                                         "bench/calibrate_venues.py"}
        DEFAULTS.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
        print(f"wrote the {section} section of {DEFAULTS}")


if __name__ == "__main__":
    main()
