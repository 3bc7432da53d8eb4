"""Why mated venue queries are rejected at the default, and which decision rules could accept them.

    python bench/venue_misses.py bench/results/venues/ours_evidence.jsonl [--json out.json]

Reads the per-venue raw evidence that bench/venue_bench.py (``ours_evidence.jsonl``)
or bench/venue_references.py ``--rescore`` writes (inliers, VLAD similarity,
colour cosine and the learned descriptor's cosine of each venue's reference)
and answers, with the shipped decision (matcher/defaults.json, section ``scene``):

1. *Ranking or margin?* Where the right venue of each rejected mated query
   is ranked, its cues against the best wrong venue's, and how many of the
   right venues ranked below the first would clear the decision if they were
   ranked first (the ceiling of any ranking change on recall).
2. *Another decision?* Decision families with one or two free parameters, each
   fitted as bench/calibrate_venues.py fits the shipped one (budget 0.5% false
   accepts at every simulated bank size of 2-73 venues, the fusion weights
   fixed at the shipped ones), scored in sample, leave-one-place-out and
   leave-one-dataset-out: the shipped margin over max(runner-up, chance floor);
   a ratio to max(runner-up, floor) (what face and place retrieval use); the
   margin or ratio over the runner-up alone; an absolute threshold; and the
   shipped rule OR a second path on the descriptor (its cosine's lead over
   max(runner-up's cosine, a floor) above a margin), the way a learned
   descriptor would decide venues whose walls share no keypoints.

The descriptor path is scored on the cosine of the reference each venue's
row carries (the one the ranking kept).

3. *What the whole bank cannot tell.* The suite's full bank has only 10
   non-mated queries, so a rule fitted there alone (as a lead over the
   runner-up can be) is barely tested on photos of rooms the bank does not
   hold, which most real queries are. The descriptor's lead plus a share of
   the colour cosine's lead, its threshold fitted on the whole bank alone (at
   most 0.5% false accepts there), is scored on banks of every size up to 66
   of the 73 venues, where a tenth or more of the queries become unknown rooms.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import calibrate_venues as cv  # noqa: E402

Rule = Callable[[float], np.ndarray]  # parameter -> (banks, queries) score; accepted where >= a threshold


def shipped() -> dict[str, float]:
    return json.loads(cv.DEFAULTS.read_text(encoding="utf-8"))["scene"]


def net_table(queries: list[dict], venues: dict[str, int]) -> np.ndarray:
    """(queries, venues) descriptor cosine of each venue's recorded reference (-inf: none)."""
    out = np.full((len(queries), len(venues)), -np.inf)
    for qi, q in enumerate(queries):
        for c in q["candidates"]:
            if c.get("net") is not None:
                out[qi, venues[c["label"]]] = max(out[qi, venues[c["label"]]], float(c["net"]))
    return out


def colour_table(queries: list[dict], venues: dict[str, int]) -> np.ndarray:
    """(queries, venues) colour cosine of each venue's recorded reference (-inf: none)."""
    out = np.full((len(queries), len(venues)), -np.inf)
    for qi, q in enumerate(queries):
        for c in q["candidates"]:
            out[qi, venues[c["label"]]] = max(out[qi, venues[c["label"]]], float(c.get("colour", 0.0)))
    return out


def descriptor_pair(b: cv.Banks, net: np.ndarray, banks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(banks, queries) cosine of the first-ranked venue and the best other venue's cosine in each bank."""
    rows = np.arange(net.shape[0])
    d1, d2 = [], []
    for bi, mask in enumerate(banks):
        d = np.where(mask[None, :], net, -np.inf)
        first = b.first_label[bi]
        d1.append(d[rows, first])
        d[rows, first] = -np.inf
        d2.append(d.max(axis=1))
    return np.stack(d1), np.stack(d2)


def lowest_threshold(score: np.ndarray, wrong: np.ndarray, size: np.ndarray, cols: np.ndarray,
                     also: np.ndarray | None = None) -> float:
    """Smallest threshold on ``score`` (OR ``also``) within the budget at every bank size; inf if none."""
    t = -np.inf
    for k in np.unique(size):
        sel = size == k
        w, s = wrong[sel][:, cols], score[sel][:, cols]
        x = np.zeros_like(w) if also is None else also[sel][:, cols]
        allowed = int(np.floor(cv.MATCH_FALSE_ACCEPTS * w.size + 1e-9)) - int((w & x).sum())
        if allowed < 0:
            return np.inf
        values = np.sort(s[w & ~x & np.isfinite(s)])[::-1]
        if len(values) > allowed:
            t = max(t, float(np.nextafter(values[allowed], np.inf)))
    return t


def fit_rule(rule: Rule, grid: list[float], b: cv.Banks, right: np.ndarray, cols: np.ndarray,
             also: Callable[[float], np.ndarray] | None = None, also_grid: tuple[float, ...] = (0.0,)
             ) -> tuple[int, tuple[float, float, float], np.ndarray]:
    """The parameter (and second path's) with the most right accepts on ``cols`` within the budget."""
    best: tuple[int, tuple[float, float, float], np.ndarray] | None = None
    wrong = ~right
    for p in grid:
        score = rule(p)
        for a in also_grid:
            extra = also(a) if also is not None else None
            t = lowest_threshold(score, wrong, b.size, cols, extra)
            if not np.isfinite(t):
                continue
            acc = score >= t if extra is None else (score >= t) | extra
            n = int((acc[0] & right[0])[cols].sum())
            if best is None or n > best[0]:
                best = (n, (p, t, a), acc)
    if best is None:
        raise ValueError("no parameter keeps the budget")
    return best


def estimate(rule: Rule, grid: list[float], b: cv.Banks, right: np.ndarray, groups: list[str],
             also: Callable[[float], np.ndarray] | None = None, also_grid: tuple[float, ...] = (0.0,)
             ) -> dict:
    """In-sample fit, and held-out accepts with every group's queries decided by the fit without them."""
    allc = np.arange(right.shape[1])
    n, params, _acc = fit_rule(rule, grid, b, right, allc, also, also_grid)
    held = np.zeros_like(right)
    g = np.array(groups)
    for name in sorted(set(groups)):
        h = g == name
        held[:, h] = fit_rule(rule, grid, b, right, np.nonzero(~h)[0], also, also_grid)[2][:, h]
    wrong = held & ~right
    return {"in_sample_recall": n, "params": [round(float(x), 4) for x in params],
            "held_out_recall": int((held[0] & right[0]).sum()),
            "held_out_false_accepts_suite": int(wrong[0].sum()),
            "held_out_false_accept_pct_by_bank_size": {
                int(k): round(100 * float(wrong[b.size == k].mean()), 2) for k in np.unique(b.size)}}


def misses(queries: list[dict], venues: dict[str, int], truth: np.ndarray, b: cv.Banks,
           params: dict[str, float], w: cv.Weights) -> dict:
    """Part 1: the rejected mated queries of the whole bank, by the rank of their right venue."""
    ranked = cv.venue_table(queries, venues, w)[0]
    evidence, inliers = cv.venue_table(queries, venues, (w[0], w[1], 0.0))
    net = net_table(queries, venues)
    floor, margin = params["chance_evidence"], params["match"]
    acc = cv.accepted(b, floor, margin, int(params["min_match_inliers"]))[0]
    right = cv.right_first(b, truth)[0]
    mated = truth >= 0
    rejected = mated & ~(acc & right)
    rank = np.array([int((ranked[i] > ranked[i, truth[i]]).sum()) if truth[i] >= 0 else -1
                     for i in range(len(queries))])
    cues: dict[str, dict[str, list[float]]] = {"rank-1 rejected": {}, "accepted": {}}
    for qi in np.nonzero(mated)[0]:
        group = "accepted" if not rejected[qi] else "rank-1 rejected" if rank[qi] == 0 else None
        if group is None:
            continue
        t = truth[qi]
        wrong_ev = np.where(np.arange(len(venues)) == t, -np.inf, evidence[qi])
        bw = int(np.argmax(wrong_ev))
        wrong_net = np.where(np.arange(len(venues)) == t, -np.inf, net[qi])
        c = cues[group]
        for key, value in (("right_evidence", evidence[qi, t]), ("best_wrong_evidence", evidence[qi, bw]),
                           ("right_inliers", inliers[qi, t]), ("best_wrong_inliers", inliers[qi, bw]),
                           ("right_net", net[qi, t]),
                           ("best_wrong_net", np.max(wrong_net))):
            c.setdefault(key, []).append(float(value))
    below = rejected & (rank > 0)
    # Would the right venue clear the decision if it were ranked first (its evidence over the rest)?
    clears = 0
    for qi in np.nonzero(below)[0]:
        others = np.delete(evidence[qi], truth[qi])
        clears += int(evidence[qi, truth[qi]] - max(float(others.max()), floor) >= margin)
    return {"mated": int(mated.sum()), "accepted": int((acc & right & mated).sum()),
            "rejected_by_rank_of_right_venue": {str(k): v for k, v in sorted(
                Counter(int(min(r, 5)) for r in rank[rejected]).items())},
            "ranked_below_first_that_would_clear_the_decision_at_rank_1": clears,
            "cues_median_p10_p90": {g: {k: [round(float(np.median(v)), 3),
                                            round(float(np.percentile(v, 10)), 3),
                                            round(float(np.percentile(v, 90)), 3)]
                                        for k, v in c.items()} for g, c in cues.items()}}


LEAD_PATH_SIZES = (2, 3, 5, 10, 20, 40, 50, 60, 66)


def by_size(acc: np.ndarray, b: cv.Banks, right: np.ndarray) -> dict:
    """False accepts (share of all queries) and recall (share of those whose venue is in) per bank size."""
    fa, recall = {}, {}
    for k in np.unique(b.size):
        sel = b.size == k
        fa[int(k)] = round(100 * float((acc & ~right)[sel].mean()), 2)
        recall[int(k)] = round(100 * float((acc & right)[sel].sum() / max(1, b.holds_truth[sel].sum())), 1)
    return {"false_accept_pct_by_bank_size": fa, "recall_pct_by_bank_size": recall}


def lead_path(queries: list[dict], venues: dict[str, int], truth: np.ndarray, params: dict[str, float],
              w: cv.Weights) -> dict:
    """Part 3: shipped rule OR (descriptor lead + g x colour lead >= t), t fitted on the whole bank only."""
    saved = cv.BANK_SIZES
    cv.BANK_SIZES = LEAD_PATH_SIZES
    try:
        banks = cv.draw_banks(len(venues))
    finally:
        cv.BANK_SIZES = saved
    b = cv.simulate(queries, venues, w, banks)
    right = cv.right_first(b, truth)
    wrong = ~right
    d1, d2 = descriptor_pair(b, net_table(queries, venues), banks)
    c1, c2 = descriptor_pair(b, colour_table(queries, venues), banks)
    base = cv.accepted(b, float(params["chance_evidence"]), float(params["match"]),
                       int(params["min_match_inliers"]))
    full = b.size == b.size.max()
    out: dict = {}
    for g in (0.0, 0.25, 0.5, 1.0):
        score = np.where(np.isfinite(d1 - d2) & np.isfinite(c1 - c2), (d1 - d2) + g * (c1 - c2), -np.inf)
        allowed = int(np.floor(cv.MATCH_FALSE_ACCEPTS * wrong.shape[1])) - int((base & wrong)[full].sum())
        values = np.sort(score[full][(wrong & ~base)[full] & np.isfinite(score[full])])[::-1]
        t = float(np.nextafter(values[max(allowed, 0)], np.inf)) if len(values) > max(allowed, 0) else 0.0
        out[f"colour share {g:g}"] = {"threshold": round(t, 4), **by_size(base | (score >= t), b, right)}
    out["shipped rule alone"] = by_size(base, b, right)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("evidence", type=Path)
    parser.add_argument("--json", type=Path, help="Also write the report here.")
    args = parser.parse_args()
    queries = cv.load(args.evidence)
    labels = sorted({c["label"] for q in queries for c in q["candidates"]})
    venues = {label: i for i, label in enumerate(labels)}
    truth = np.array([venues.get(q["label"], -1) if q["label"] else -1 for q in queries])
    params = shipped()
    cv.NET_BASE = float(params.get("net_base", cv.NET_BASE))
    w = (float(params["vlad_weight"]), float(params["colour_weight"]), float(params["net_weight"]))
    banks = cv.draw_banks(len(venues))
    b = cv.simulate(queries, venues, w, banks)
    right = cv.right_first(b, truth)
    report: dict = {"evidence": str(args.evidence), "shipped": {k: params[k] for k in
                    ("vlad_weight", "colour_weight", "net_weight", "chance_evidence", "match")},
                    "top1": int(right[0].sum()), "misses": misses(queries, venues, truth, b, params, w)}
    d1, d2 = descriptor_pair(b, net_table(queries, venues), banks)
    first, second = b.first, b.second
    floors = [float(f) for f in range(20, 41)]
    rules: dict[str, tuple[Rule, list[float]]] = {
        "margin over max(runner-up, floor) (shipped)": (lambda f: first - np.maximum(second, f), floors),
        "ratio to max(runner-up, floor)": (lambda f: first / np.maximum(second, f), floors),
        "margin over the runner-up alone": (lambda _f: first - second, [0.0]),
        "ratio to the runner-up alone": (lambda _f: first / np.maximum(second, 1e-9), [0.0]),
        "absolute evidence of the first venue": (lambda _f: first, [0.0]),
    }
    report["decisions"] = {}
    for hold_out in ("place", "dataset"):
        groups = [cv.group_of(q["label"], hold_out) if q["label"] else f"nonmated-{i}"
                  for i, q in enumerate(queries)]
        out = report["decisions"][f"hold_out_{hold_out}"] = {}
        for name, (rule, grid) in rules.items():
            out[name] = estimate(rule, grid, b, right, groups)
        if np.isfinite(d1[0]).any():
            # Second path: the descriptor's lead, over max(runner-up's cosine, a) by at least 0.02-0.30.
            def path(key: float) -> np.ndarray:
                a, m = divmod(round(key * 1000), 1000)
                return (d1 - np.maximum(d2, a / 100)) >= m / 1000
            keys = tuple(a + m / 1000 for a in range(50, 100, 5) for m in range(20, 320, 20))
            shipped_rule = lambda _f: first - np.maximum(second, float(params["chance_evidence"]))  # noqa: E731
            out["shipped OR descriptor lead over max(runner-up, a)"] = estimate(
                shipped_rule, [0.0], b, right, groups, also=path, also_grid=keys)
    if np.isfinite(d1[0]).any():
        report["lead_path_fitted_on_the_whole_bank"] = lead_path(queries, venues, truth, params, w)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
