"""Benchmark metrics for open-set identification, as ../shared/bench/score.py defines them.

Kept here (not imported from the benchmark folder) because `reunite eval` must
run on any suite folder and agree with the reference scorer on the same
answers; tests pin that agreement on hand-made cases.

Definitions, over queries that are *mated* (their label is in the gallery) or
*non-mated* (empty label):
- top1 / top5: right label first / among the first five candidates;
- recall_at_default: first candidate is the right label with decision ``match``;
- false_accept (share of *all* queries): a ``match`` first candidate with a wrong
  label, or any ``match`` for a non-mated query;
- review_recall: right label among the first five at ``match`` or ``review``;
- review_load_nonmated: mean number of ``match``/``review`` candidates per
  non-mated query (what reviewers pay for the review tier);
- fnir_at_fpir (NIST FRVT 1:N): T is set on the non-mated queries' top scores so
  that at most FPIR of them score strictly above it; FNIR is the share of mated
  queries whose right label is not the first candidate with a score above T.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

MAX_CANDIDATES = 10


@dataclass(frozen=True)
class QueryTruth:
    path: str
    label: str  # empty: non-mated
    transform: str


def _normalise(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for c in candidates[:MAX_CANDIDATES]:
        try:
            score = float(c.get("score"))
            if math.isnan(score):
                score = -math.inf
        except (TypeError, ValueError):
            score = -math.inf
        decision = c.get("decision")
        if decision is None:
            decision = "match" if c.get("match") else "none"
        out.append({"label": "" if c.get("label") is None else str(c["label"]), "score": score,
                    "match": decision == "match", "review": decision in ("match", "review")})
    return out


def fnir_threshold(nonmated_top: list[float], fpir: float) -> tuple[float | None, float | None]:
    n = len(nonmated_top)
    if n == 0:
        return None, None
    ranked = sorted(nonmated_top, reverse=True)
    k = int(math.floor(fpir * n))
    threshold = ranked[k] if k < n else -math.inf
    return threshold, sum(1 for x in ranked if x > threshold) / n


def _aggregate(records: list[dict[str, Any]], threshold: float | None) -> dict[str, Any]:
    mated = [r for r in records if r["mated"]]
    non = [r for r in records if not r["mated"]]
    m = len(mated)

    def share(key: str, rows: list[dict[str, Any]]) -> float | None:
        return sum(r[key] for r in rows) / len(rows) if rows else None

    out: dict[str, Any] = {
        "n": len(records), "n_mated": m, "n_nonmated": len(non),
        "top1": share("top1", mated), "top5": share("top5", mated),
        "recall_at_default": share("rec", mated), "false_accept": share("fa", records),
        "review_recall": share("rev_hit", mated),
        "review_load_nonmated": (sum(r["rev_load"] for r in non) / len(non)) if non else None,
    }
    if threshold is not None and m:
        out["fnir_at_fpir"] = sum(1 for r in mated
                                  if not (r["top1"] and r["top_score"] > threshold)) / m
    return out


def score(queries: list[QueryTruth], answers: dict[str, list[dict[str, Any]]],
          fpir: float = 0.01) -> dict[str, Any]:
    """Overall and per-transform metrics of ``answers`` (query path -> ranked candidates)."""
    records = []
    missing = 0
    for q in queries:
        if q.path not in answers:
            missing += 1
        cands = _normalise(answers.get(q.path, []))
        first = cands[0] if cands else None
        mated = bool(q.label)
        r: dict[str, Any] = {"transform": q.transform, "mated": mated,
                             "top_score": first["score"] if first else -math.inf}
        r["top1"] = bool(mated and first and first["label"] == q.label)
        r["top5"] = bool(mated and q.label in [c["label"] for c in cands[:5]])
        r["rec"] = bool(mated and first and first["match"] and first["label"] == q.label)
        r["rev_hit"] = bool(mated and any(c["review"] and c["label"] == q.label for c in cands[:5]))
        r["rev_load"] = sum(1 for c in cands if c["review"])
        r["fa"] = (bool(first and first["match"] and first["label"] != q.label) if mated
                   else any(c["match"] for c in cands))
        records.append(r)
    threshold, achieved = fnir_threshold([r["top_score"] for r in records if not r["mated"]], fpir)
    by_transform: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_transform[r["transform"]].append(r)
    return {
        "n_queries": len(queries),
        "n_missing_answers": missing,
        "fpir_target": fpir,
        "fnir_threshold": None if threshold is None else
        (threshold if math.isfinite(threshold) else str(threshold)),
        "fpir_achieved": achieved,
        "overall": _aggregate(records, threshold),
        "per_transform": {t: _aggregate(v, threshold) for t, v in sorted(by_transform.items())},
    }


def format_table(summary: dict[str, Any], with_fnir: bool = False) -> str:
    """A fixed-width table a person can read in a terminal."""
    def f(x: float | None) -> str:
        return "     -" if x is None else f"{x:6.3f}"

    head = f"{'':24s} {'mated':>6s} {'nonm':>5s} {'top1':>6s} {'top5':>6s} {'rec@def':>7s} {'FA':>6s}"
    head += f" {'revrec':>6s} {'load':>6s}" + (f" {'FNIR@1%':>7s}" if with_fnir else "")
    lines = [head]

    def row(name: str, a: dict[str, Any]) -> str:
        text = (f"{name[:24]:24s} {a['n_mated']:6d} {a['n_nonmated']:5d} {f(a['top1'])} {f(a['top5'])} "
                f"{f(a['recall_at_default']):>7s} {f(a['false_accept'])} {f(a['review_recall'])} "
                f"{f(a['review_load_nonmated'])}")
        if with_fnir:
            text += f" {f(a.get('fnir_at_fpir')):>7s}"
        return text

    lines.append(row("OVERALL", summary["overall"]))
    lines += [row(t, a) for t, a in summary["per_transform"].items()]
    return "\n".join(lines)
