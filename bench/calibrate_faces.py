"""Calibrate the face searcher on a faces suite and write the ``"faces"`` section of defaults.json.

    OMP_NUM_THREADS=1 python bench/calibrate_faces.py ../shared/bench/faces [--cache /tmp/f.pkl] [--dry-run]

Honest by construction: identities are split in two halves by a hash of their
label (non-mated queries by a hash of their path). The model (logistic weights
on centred similarity and gap) and the decision thresholds are fitted on the
calibration half only; the script then reports the other half and the whole
suite. The bank is the whole gallery in both cases, as in production.

Thresholds: ``match`` is the lowest probability at which false accepts stay
within ``--max-false-accept`` of the calibration queries; ``review`` the
lowest at which non-mated queries carry at most ``--max-review-load``
candidates on average. Both targets sit below the issue's limits (1% and 2)
to leave room for the other half.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import math
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexer import images  # noqa: E402
from indexer.signals.faces import FACE_DLIB, primary_weight  # noqa: E402
from matcher import decide  # noqa: E402
from matcher import defaults as defaults_mod  # noqa: E402
from matcher import face_search as fs  # noqa: E402

SIGNAL = FACE_DLIB.name
TOP_CANDIDATES = 10


@dataclass
class Faces:
    """The faces of one image as the production signal extracts them."""

    vectors: np.ndarray  # n x 128
    boxes: list[tuple[int, int, int, int]]
    low: list[bool]
    size: tuple[int, int]
    seconds: float  # detect + align + embed, decode excluded


def read_suite(suite: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    with (suite / "gallery.csv").open(newline="") as f:
        gallery = list(csv.DictReader(f))
    with (suite / "queries.csv").open(newline="") as f:
        queries = [{**r, "label": (r.get("label") or "").strip()} for r in csv.DictReader(f)]
    return gallery, queries


def extract_all(suite: Path, paths: list[str], cache: Path | None,
                extract: Callable[[images.Picture], Any] = FACE_DLIB.extract) -> dict[str, Faces]:
    """Faces of every path, cached (pickle) so that experiments need one extraction."""
    done: dict[str, Faces] = {}
    if cache is not None and cache.exists():
        done = pickle.loads(cache.read_bytes())
    todo = [p for p in paths if p not in done]
    for n, path in enumerate(todo, start=1):
        picture = images.load((suite / path).read_bytes(), max_side=FACE_DLIB.decode_side)
        start = time.process_time()
        vecs = extract(picture)
        seconds = time.process_time() - start
        done[path] = Faces(np.stack([v.vector for v in vecs]) if vecs else np.zeros((0, FACE_DLIB.dim)),
                           [v.box for v in vecs], [bool(v.extra.get("low_quality")) for v in vecs],
                           picture.original_size, seconds)
        if n % 200 == 0:
            print(f"  extracted {n}/{len(todo)}", file=sys.stderr, flush=True)
            if cache is not None:
                cache.write_bytes(pickle.dumps(done))
    if cache is not None and todo:
        cache.write_bytes(pickle.dumps(done))
    return done


def half(key: str) -> int:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % 2


def query_half(q: dict[str, str]) -> int:
    return half(q["label"] or q["path"])


@dataclass
class Bank:
    """The gallery as the searcher sees it: one primary face per reference photo."""

    vectors: np.ndarray
    labels: np.ndarray
    low: np.ndarray


def build_bank(gallery: list[dict[str, str]], faces: dict[str, Faces]) -> tuple[Bank, int]:
    vecs, labels, low, missing = [], [], [], 0
    for row in gallery:
        f = faces[row["path"]]
        if not len(f.vectors):
            missing += 1
            continue
        i = max(range(len(f.boxes)), key=lambda j: primary_weight(f.boxes[j], *f.size))
        vecs.append(f.vectors[i])
        labels.append(row["label"])
        low.append(f.low[i])
    return Bank(np.stack(vecs), np.array(labels), np.array(low)), missing


def subject_rows(bank: Bank, means: np.ndarray, qvec: np.ndarray, model: fs.FaceModel
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Centred similarity per subject (best over its references) and the subject labels."""
    centred = bank.vectors @ qvec - model.alpha * means
    labels, inverse = np.unique(bank.labels, return_inverse=True)
    best = np.full(len(labels), -np.inf)
    np.maximum.at(best, inverse, centred)
    return best, labels


def candidate_probs(bank: Bank, means: np.ndarray, faces: Faces, model: fs.FaceModel
                    ) -> list[tuple[str, float, bool]]:
    """Per subject the best (probability, low quality) over the query's faces, top first."""
    best: dict[str, tuple[float, bool]] = {}
    for qvec, low in zip(faces.vectors, faces.low, strict=True):
        centred, labels = subject_rows(bank, means, qvec, model)
        probs = fs.probabilities(fs.features(centred, model), model)
        for i in np.argsort(-probs)[:TOP_CANDIDATES]:
            label, p = str(labels[i]), float(probs[i])
            if label not in best or p > best[label][0]:
                best[label] = (p, low)
    return sorted(((lab, p, low) for lab, (p, low) in best.items()), key=lambda c: -c[1])


def decisions(cands: list[tuple[str, float, bool]], model: fs.FaceModel
              ) -> list[tuple[str, float, str]]:
    """(label, score, decision) as the searcher reports them (low quality: never match)."""
    out = []
    for label, p, low in cands:
        score = fs.to_common_scale(p, model)
        if low:
            score = min(score, decide.MATCH_SCORE - 1e-6)
        out.append((label, score, decide.decision_for(score)))
    return sorted(out, key=lambda c: -c[1])[:TOP_CANDIDATES]


def answer(bank: Bank, means: np.ndarray, faces: Faces, model: fs.FaceModel
           ) -> list[tuple[str, float, str]]:
    """What the searcher answers for one query: (label, score, decision), best first."""
    return decisions(candidate_probs(bank, means, faces, model), model)


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


def calibrate(bank: Bank, faces: dict[str, Faces], calib: list[dict[str, str]],
              max_false_accept: float, max_review_load: float) -> fs.FaceModel:
    model = fs.FaceModel()
    ids = np.unique(bank.labels, return_inverse=True)[1]
    raw = fs.reference_cohort_means(bank.vectors, ids, replace(model, prior_weight=0.0))
    model = replace(model, prior_mean=float(np.median(raw)))
    means = fs.reference_cohort_means(bank.vectors, ids, model)
    xs, ys, seconds = [], [], []
    for q in calib:
        for qvec in faces[q["path"]].vectors:
            centred, labels = subject_rows(bank, means, qvec, model)
            order = np.argsort(-centred)
            seconds.append(centred[order[1]])
            feats = fs.features(centred, model)[order[:TOP_CANDIDATES]]
            xs.append(feats)
            ys.append(labels[order[:TOP_CANDIDATES]] == q["label"])
    weights, bias = fit_logistic(np.vstack(xs), np.concatenate(ys).astype(float))
    model = replace(model, weights=tuple(round(float(w), 4) for w in weights), bias=round(bias, 4),
                    prior_other=round(float(np.median(seconds)), 4),
                    prior_mean=round(model.prior_mean, 4), calibrated=True)
    # Thresholds: scan probabilities, lowest that keeps each target on the calibration half.
    grid = np.unique(np.concatenate([np.linspace(0.01, 0.99, 99), 1 - np.logspace(-4, -2, 20)]))

    cands = {q["path"]: candidate_probs(bank, means, faces[q["path"]], model) for q in calib}

    def run(m: fs.FaceModel) -> dict[str, float]:
        return metrics({path: decisions(c, m) for path, c in cands.items()}, calib)

    match = next((t for t in grid if run(replace(model, match=float(t), review=min(float(t), 0.01)))
                  ["false_accept"] <= max_false_accept), 0.999)
    review = next((t for t in grid if t <= match and run(replace(model, match=float(match),
                   review=float(t)))["review_load_nonmated"] <= max_review_load), match)
    return replace(model, match=round(float(match), 4), review=round(float(review), 4))


def write_section(model: fs.FaceModel, note: dict[str, Any], path: Path = defaults_mod.DEFAULTS_PATH) -> None:
    """Read-modify-write of the ``faces`` key only (other stages own the other keys)."""
    raw = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    raw["faces"] = {
        "calibrated_on": note,
        "signals": {SIGNAL: {
            "weights": list(model.weights), "bias": model.bias, "match": model.match,
            "review": model.review, "alpha": model.alpha, "ref_k": model.ref_k,
            "prior_mean": model.prior_mean, "prior_weight": model.prior_weight,
            "prior_other": model.prior_other, "features": list(fs.FEATURES),
        }},
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    defaults_mod.load.cache_clear()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", type=Path)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/reunite-faces-extract.pkl"))
    ap.add_argument("--max-false-accept", type=float, default=0.006)
    ap.add_argument("--max-review-load", type=float, default=1.5)
    ap.add_argument("--dry-run", action="store_true", help="Print, do not write defaults.json.")
    a = ap.parse_args()
    gallery, queries = read_suite(a.suite)
    faces = extract_all(a.suite, [r["path"] for r in gallery] + [q["path"] for q in queries], a.cache)
    bank, missing = build_bank(gallery, faces)
    calib = [q for q in queries if query_half(q) == 0]
    held = [q for q in queries if query_half(q) == 1]
    model = calibrate(bank, faces, calib, a.max_false_accept, a.max_review_load)
    means = fs.reference_cohort_means(bank.vectors, np.unique(bank.labels, return_inverse=True)[1], model)
    report = {}
    for name, subset in (("calibration_half", calib), ("held_out_half", held), ("overall", queries)):
        answers = {q["path"]: answer(bank, means, faces[q["path"]], model) for q in subset}
        report[name] = {k: round(v, 4) for k, v in metrics(answers, subset).items()}
    print(json.dumps({"model": model.__dict__, "gallery_without_face": missing, **report}, indent=1))
    if not a.dry_run:
        write_section(model, {"suite": a.suite.name, "split": "sha256(label or path) % 2 == 0",
                              "date": dt.date.today().isoformat(),
                              "held_out_half": report["held_out_half"]})
        print(f"wrote the faces section of {defaults_mod.DEFAULTS_PATH}", file=sys.stderr)


if __name__ == "__main__":
    main()
