"""Calibrate the face searcher on a faces suite and write the ``"faces"`` section of defaults.json.

    OMP_NUM_THREADS=1 python bench/calibrate_faces.py ../shared/bench/faces [--cache /tmp/f.pkl] [--dry-run]

Fits each face signal alone (``face_dlib``, ``face_sface``) and then their
score-level fusion (one logistic model over both signals' centred similarity
and gap), and reports all three on both halves. Faces come from
``bench/face_extract.py`` (YuNet detection, both descriptors, cached).

Honest by construction: identities are split in two halves by a hash of their
label (non-mated queries by a hash of their path). The model (logistic weights
on centred similarity and gap) and the decision thresholds are fitted on the
calibration half only; the script then reports the other half and the whole
suite. The bank is the whole gallery in both cases, as in production.

Thresholds: ``match`` is the lowest probability at which false accepts stay
within ``--max-false-accept`` of the calibration queries; ``review`` the
lowest at which non-mated queries carry at most ``--max-review-load``
candidates on average. Both targets sit below the issue's limits (0.5% and
1.5) to leave room for the other half.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from face_extract import Faces, extract_all  # noqa: E402

from indexer.signals.faces import FACE_DLIB, primary_weight  # noqa: E402
from indexer.signals.sface import FACE_SFACE  # noqa: E402
from matcher import defaults as defaults_mod  # noqa: E402
from matcher.search import decide  # noqa: E402
from matcher.search import faces as fs  # noqa: E402

SIGNALS = (FACE_DLIB.name, FACE_SFACE.name)
TOP_CANDIDATES = 10
FUSED = "fused"


# Whether each signal averages its descriptor with the mirrored crop's, as production
# does; ``--flip NAME=0|1`` replays the other choice from the same cache (experiments).
FLIP = {FACE_DLIB.name: FACE_DLIB.flip, FACE_SFACE.name: FACE_SFACE.flip}


def vector_key(signal: str) -> str:
    """The cached vectors that equal what the production signal stores (with or without its flip)."""
    return signal + "+flip" if FLIP[signal] else signal


def read_suite(suite: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    with (suite / "gallery.csv").open(newline="") as f:
        gallery = list(csv.DictReader(f))
    with (suite / "queries.csv").open(newline="") as f:
        queries = [{**r, "label": (r.get("label") or "").strip()} for r in csv.DictReader(f)]
    return gallery, queries


def half(key: str) -> int:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % 2


def query_half(q: dict[str, str]) -> int:
    return half(q["label"] or q["path"])


@dataclass
class Bank:
    """The gallery as the searcher sees it: one primary face per reference photo, every signal."""

    vectors: dict[str, np.ndarray]
    labels: np.ndarray
    low: np.ndarray

    @property
    def subject_ids(self) -> np.ndarray:
        return np.unique(self.labels, return_inverse=True)[1]


def build_bank(gallery: list[dict[str, str]], faces: dict[str, Faces]) -> tuple[Bank, int]:
    vecs: dict[str, list[np.ndarray]] = {s: [] for s in SIGNALS}
    labels, low, missing = [], [], 0
    for row in gallery:
        f = faces[row["path"]]
        if not f.boxes:
            missing += 1
            continue
        i = max(range(len(f.boxes)), key=lambda j: primary_weight(f.boxes[j], *f.size))
        for s in SIGNALS:
            vecs[s].append(f.vectors[vector_key(s)][i])
        labels.append(row["label"])
        low.append(f.low[i])
    return Bank({s: np.stack(v) for s, v in vecs.items()}, np.array(labels), np.array(low)), missing


@dataclass
class Scoring:
    """Everything needed to replay the searcher: per-signal models and cohort means, the fusion."""

    models: dict[str, fs.FaceModel]
    means: dict[str, np.ndarray]
    fusion: fs.FusionModel | None = None

    @classmethod
    def for_bank(cls, bank: Bank, models: dict[str, fs.FaceModel],
                 fusion: fs.FusionModel | None = None) -> Scoring:
        means = {s: fs.reference_cohort_means(bank.vectors[s], bank.subject_ids, m)
                 for s, m in models.items()}
        return cls(models, means, fusion)


def subject_rows(bank: Bank, scoring: Scoring, signal: str, qvec: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Centred similarity per subject (best over its references) and the subject labels."""
    centred = bank.vectors[signal] @ qvec - scoring.models[signal].alpha * scoring.means[signal]
    labels, inverse = np.unique(bank.labels, return_inverse=True)
    best = np.full(len(labels), -np.inf)
    np.maximum.at(best, inverse, centred)
    return best, labels


def face_probs(bank: Bank, scoring: Scoring, faces: Faces, i: int, engine: str
               ) -> tuple[np.ndarray, np.ndarray]:
    """Probability per subject for query face ``i``: one signal alone, or the fusion."""
    if engine != FUSED:
        centred, labels = subject_rows(bank, scoring, engine, faces.vectors[vector_key(engine)][i])
        return fs.probabilities(fs.features(centred, scoring.models[engine]), scoring.models[engine]), labels
    assert scoring.fusion is not None
    centred = {}
    for s in scoring.fusion.signals:
        centred[s], labels = subject_rows(bank, scoring, s, faces.vectors[vector_key(s)][i])
    return fs.fused_probabilities(centred, scoring.models, scoring.fusion), labels


def candidate_probs(bank: Bank, scoring: Scoring, faces: Faces, engine: str
                    ) -> list[tuple[str, float, bool]]:
    """Per subject the best (probability, low quality) over the query's faces, top first."""
    best: dict[str, tuple[float, bool]] = {}
    for i, low in enumerate(faces.low):
        probs, labels = face_probs(bank, scoring, faces, i, engine)
        for j in np.argsort(-probs)[:TOP_CANDIDATES]:
            label, p = str(labels[j]), float(probs[j])
            if label not in best or p > best[label][0]:
                best[label] = (p, low)
    return sorted(((lab, p, low) for lab, (p, low) in best.items()), key=lambda c: -c[1])


def decisions(cands: list[tuple[str, float, bool]], model: fs.FaceModel | fs.FusionModel
              ) -> list[tuple[str, float, str]]:
    """(label, score, decision) as the searcher reports them (low quality: never match)."""
    out = []
    for label, p, low in cands:
        score = fs.to_common_scale(p, model)
        if low:
            score = min(score, decide.MATCH_SCORE - 1e-6)
        out.append((label, score, decide.decision_for(score)))
    return sorted(out, key=lambda c: -c[1])[:TOP_CANDIDATES]


def threshold_model(scoring: Scoring, engine: str) -> fs.FaceModel | fs.FusionModel:
    if engine == FUSED:
        assert scoring.fusion is not None
        return scoring.fusion
    return scoring.models[engine]


def answer(bank: Bank, scoring: Scoring, faces: Faces, engine: str) -> list[tuple[str, float, str]]:
    """What the searcher answers for one query: (label, score, decision), best first."""
    return decisions(candidate_probs(bank, scoring, faces, engine), threshold_model(scoring, engine))


def metrics(answers: dict[str, list[tuple[str, float, str]]], queries: list[dict[str, str]],
            fpir: float = 0.01) -> dict[str, float]:
    """The faces metrics of ../shared/bench/score.py (same definitions)."""
    mated = [q for q in queries if q["label"]]
    non = [q for q in queries if not q["label"]]

    def top(q: dict[str, str]) -> list[tuple[str, float, str]]:
        return answers.get(q["path"], [])

    ns = sorted((top(q)[0][1] if top(q) else -math.inf for q in non), reverse=True)
    k = int(math.floor(fpir * len(ns)))
    threshold = ns[k] if k < len(ns) else -math.inf

    def first_is(q: dict[str, str]) -> bool:
        return bool(top(q)) and top(q)[0][0] == q["label"]

    fa = [first_is(q) is False and bool(top(q)) and top(q)[0][2] == "match" for q in mated]
    fa += [any(c[2] == "match" for c in top(q)) for q in non]
    return {
        "n_mated": len(mated), "n_nonmated": len(non),
        "top1": float(np.mean([first_is(q) for q in mated])),
        "top5": float(np.mean([q["label"] in [c[0] for c in top(q)[:5]] for q in mated])),
        "fnir_at_fpir": float(np.mean([not (first_is(q) and top(q)[0][1] > threshold) for q in mated])),
        "recall_at_default": float(np.mean([first_is(q) and top(q)[0][2] == "match" for q in mated])),
        "false_accept": float(np.mean(fa)),
        "review_recall": float(np.mean([any(c[0] == q["label"] and c[2] in ("match", "review")
                                            for c in top(q)[:5]) for q in mated])),
        "review_load_nonmated": float(np.mean([sum(c[2] in ("match", "review") for c in top(q))
                                               for q in non])),
    }


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, steps: int = 50
                 ) -> tuple[np.ndarray, float]:
    """Plain Newton-Raphson logistic regression (no scikit-learn in the runtime)."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    xs = np.hstack([(x - mean) / std, np.ones((len(x), 1))])
    w = np.zeros(xs.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(xs @ w, -40, 40)))
        grad = xs.T @ (p - y) + l2 * w
        hess = (xs * (p * (1 - p))[:, None]).T @ xs + l2 * np.eye(len(w))
        w -= np.linalg.solve(hess, grad)
    weights = w[:-1] / std
    return weights, float(w[-1] - (w[:-1] * mean / std).sum())


def fit_thresholds(cands: dict[str, list[tuple[str, float, bool]]], model: Any, calib: list[dict[str, str]],
                   max_false_accept: float, max_review_load: float) -> Any:
    """The lowest match probability within the false-accept target, then the lowest review
    probability within the review-load target, both on the calibration half."""
    grid = np.unique(np.concatenate([np.linspace(0.01, 0.99, 99), 1 - np.logspace(-4, -2, 20)]))

    def run(m: Any) -> dict[str, float]:
        return metrics({path: decisions(c, m) for path, c in cands.items()}, calib)

    match = next((t for t in grid if run(replace(model, match=float(t), review=min(float(t), 0.01)))
                  ["false_accept"] <= max_false_accept), 0.999)
    review = next((t for t in grid if t <= match and run(replace(model, match=float(match),
                   review=float(t)))["review_load_nonmated"] <= max_review_load), match)
    return replace(model, match=round(float(match), 4), review=round(float(review), 4))


def calibrate_signal(bank: Bank, faces: dict[str, Faces], calib: list[dict[str, str]], signal: str,
                     max_false_accept: float, max_review_load: float) -> fs.FaceModel:
    """One signal alone: cohort prior, logistic weights on (centred, gap), thresholds."""
    model = fs.FaceModel()
    vectors = bank.vectors[signal]
    raw = fs.reference_cohort_means(vectors, bank.subject_ids, replace(model, prior_weight=0.0))
    model = replace(model, prior_mean=float(np.median(raw)))
    scoring = Scoring.for_bank(bank, {signal: model})
    xs, ys, seconds = [], [], []
    for q in calib:
        for qvec in faces[q["path"]].vectors[vector_key(signal)]:
            centred, labels = subject_rows(bank, scoring, signal, qvec)
            order = np.argsort(-centred)
            seconds.append(centred[order[1]])
            xs.append(fs.features(centred, model)[order[:TOP_CANDIDATES]])
            ys.append(labels[order[:TOP_CANDIDATES]] == q["label"])
    weights, bias = fit_logistic(np.vstack(xs), np.concatenate(ys).astype(float))
    model = replace(model, weights=tuple(round(float(w), 4) for w in weights), bias=round(bias, 4),
                    prior_other=round(float(np.median(seconds)), 4),
                    prior_mean=round(model.prior_mean, 4), calibrated=True)
    scoring = Scoring.for_bank(bank, {signal: model})
    cands = {q["path"]: candidate_probs(bank, scoring, faces[q["path"]], signal) for q in calib}
    return fit_thresholds(cands, model, calib, max_false_accept, max_review_load)


def calibrate_fusion(bank: Bank, faces: dict[str, Faces], calib: list[dict[str, str]],
                     models: dict[str, fs.FaceModel], max_false_accept: float,
                     max_review_load: float) -> fs.FusionModel:
    """Score-level fusion: one logistic model over every signal's (centred, gap), same targets.

    Training rows are the subjects in any signal's top ten for a calibration
    query face, so that the fusion learns from the impostors either model
    brings up.
    """
    scoring = Scoring.for_bank(bank, models)
    signals = tuple(models)
    probe = fs.FusionModel(signals, (0.0,) * (2 * len(signals)), 0.0, 0.9, 0.3, (0.0,) * len(signals))
    xs, ys, lows = [], [], {s: [] for s in signals}
    for q in calib:
        f = faces[q["path"]]
        for i in range(len(f.boxes)):
            centred = {}
            for s in signals:
                centred[s], labels = subject_rows(bank, scoring, s, f.vectors[vector_key(s)][i])
                lows[s].append(np.percentile(centred[s], 0.5))
            keep = np.unique(np.concatenate([np.argsort(-centred[s])[:TOP_CANDIDATES] for s in signals]))
            xs.append(fs.fused_features(centred, models, probe)[keep])
            ys.append(labels[keep] == q["label"])
    weights, bias = fit_logistic(np.vstack(xs), np.concatenate(ys).astype(float))
    fusion = fs.FusionModel(signals, tuple(round(float(w), 4) for w in weights), round(bias, 4), 0.9, 0.3,
                            tuple(round(float(np.min(lows[s])), 4) for s in signals))
    scoring.fusion = fusion
    cands = {q["path"]: candidate_probs(bank, scoring, faces[q["path"]], FUSED) for q in calib}
    return fit_thresholds(cands, fusion, calib, max_false_accept, max_review_load)


def write_section(models: dict[str, fs.FaceModel], fusion: fs.FusionModel | None, note: dict[str, Any],
                  path: Path = defaults_mod.DEFAULTS_PATH) -> None:
    """Read-modify-write of the ``faces`` key only (other stages own the other keys)."""
    raw = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    section: dict[str, Any] = {"calibrated_on": note, "signals": {
        name: {"weights": list(m.weights), "bias": m.bias, "match": m.match, "review": m.review,
               "alpha": m.alpha, "ref_k": m.ref_k, "prior_mean": m.prior_mean,
               "prior_weight": m.prior_weight, "prior_other": m.prior_other, "features": list(fs.FEATURES)}
        for name, m in models.items()}}
    if fusion is not None:
        section["fusion"] = {"signals": list(fusion.signals), "weights": list(fusion.weights),
                             "bias": fusion.bias, "match": fusion.match, "review": fusion.review,
                             "floor": list(fusion.floor),
                             "features": [f"{s}:{f}" for s in fusion.signals for f in fs.FEATURES]}
    raw["faces"] = section
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    defaults_mod.load.cache_clear()


def report(bank: Bank, scoring: Scoring, faces: dict[str, Faces], queries: list[dict[str, str]],
           engines: tuple[str, ...]) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics per engine (each signal alone, fused) on both halves and overall."""
    calib = [q for q in queries if query_half(q) == 0]
    held = [q for q in queries if query_half(q) == 1]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for engine in engines:
        out[engine] = {}
        for name, subset in (("calibration_half", calib), ("held_out_half", held), ("overall", queries)):
            answers = {q["path"]: answer(bank, scoring, faces[q["path"]], engine) for q in subset}
            out[engine][name] = {k: round(v, 4) for k, v in metrics(answers, subset).items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", type=Path)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/reunite-faces-yunet.pkl"))
    ap.add_argument("--max-false-accept", type=float, default=0.004)
    ap.add_argument("--max-review-load", type=float, default=1.3)
    ap.add_argument("--dry-run", action="store_true", help="Print, do not write defaults.json.")
    ap.add_argument("--flip", action="append", default=[], metavar="SIGNAL=0|1",
                    help="Replay a signal with/without its mirrored pass (implies --dry-run).")
    ap.add_argument("--cached-only", action="store_true",
                    help="Use only the queries already in --cache (recorded in calibrated_on).")
    a = ap.parse_args()
    for item in a.flip:
        name, _, value = item.partition("=")
        FLIP[name] = value == "1"
        a.dry_run = True
    gallery, queries = read_suite(a.suite)
    n_queries = len(queries)
    if a.cached_only:
        cached = extract_all(a.suite, [], a.cache)
        queries = [q for q in queries if q["path"] in cached]
    faces = extract_all(a.suite, [r["path"] for r in gallery] + [q["path"] for q in queries], a.cache)
    bank, missing = build_bank(gallery, faces)
    calib = [q for q in queries if query_half(q) == 0]
    models = {s: calibrate_signal(bank, faces, calib, s, a.max_false_accept, a.max_review_load)
              for s in SIGNALS}
    fusion = calibrate_fusion(bank, faces, calib, models, a.max_false_accept, a.max_review_load)
    scoring = Scoring.for_bank(bank, models, fusion)
    result = report(bank, scoring, faces, queries, (*SIGNALS, FUSED))
    print(json.dumps({"models": {s: m.__dict__ for s, m in models.items()}, "fusion": fusion.__dict__,
                      "gallery_without_face": missing, **result}, indent=1))
    if not a.dry_run:
        write_section(models, fusion, {
            "suite": a.suite.name, "split": "sha256(label or path) % 2 == 0 (fitted on 0)",
            "date": dt.date.today().isoformat(), "detector": "yunet",
            "vectors": {s: vector_key(s) for s in SIGNALS},
            "targets": {"max_false_accept": a.max_false_accept, "max_review_load": a.max_review_load},
            "queries_used": f"{len(queries)} of {n_queries}",
            "held_out_half": result[FUSED]["held_out_half"]})
        print(f"wrote the faces section of {defaults_mod.DEFAULTS_PATH}", file=sys.stderr)


if __name__ == "__main__":
    main()
