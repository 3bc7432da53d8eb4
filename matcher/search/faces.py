"""Face search: every face of a query against a bank's consented references.

Why not a fixed distance threshold: in open-set search (is this person one of
the N missing, or nobody?) the best impostor among N references gets close by
chance, and how close depends on the reference more than on the query: some
faces look like many (hubs). face_recognition's fixed 0.6 accepts a wrong
person for a third of the dev suite's queries. So each candidate is scored by
a small calibrated model on two facts about it:

- its similarity to the query face *centred by the reference's cohort*: minus
  ``alpha`` times the mean similarity of that reference photo to its
  ``ref_k`` nearest references of other subjects in the bank (a hub reference
  must be closer to count as much). On the dev suite this alone cut the miss
  rate at 1% false positives from 38% to 25% and raised rank-1 by half a point;
- the gap to the best *other* subject: a true match stands out, while a query
  of someone not enrolled tends to have several similar impostors.

Small banks have few cohort neighbours, so a reference's cohort mean is shrunk
towards the population value found at calibration. Weights, cohort size and
the two decision thresholds live in the ``"faces"`` section of
``matcher/defaults.json``, written by ``bench/calibrate_faces.py``. The
resulting probability is mapped onto the common score scale of
:mod:`matcher.search.decide` (``match`` at 0.8, ``review`` at 0.5) so that face
candidates rank and merge with those of other searchers.

Two models, one score: every face signal of the bank (dlib's ResNet and
SFace, embedding the same YuNet faces) is scored as above on its own, and where
the ``"fusion"`` entry names them all, the candidate's score is one logistic
model over all their features (score-level fusion, fitted on the same
calibration half with the same open-set targets). A look-alike that fools one
model rarely fools the other. Each model's distance and own score stay in the
candidate's evidence (``face_dlib_distance``, ``face_sface_score``, ...), so a
reviewer sees whether the models agree.

Candidates are per subject (best evidence over query faces and reference
photos); subjects whose consent has expired are never returned; a candidate
resting on a low-quality face may reach ``review`` but never ``match`` alone.

Which banks are searched by face (bank policy ``face_search``, default by kind,
:func:`face_search_on`): missing-person banks, and ads banks, which index faces
by default (indexer/kinds.py) so that a missing person's photo finds every ad
showing her face, not only the ads an investigator already has. In an ads bank
(or any bank but a missing-person one) a face alone reaches at most ``review``:
the scores are calibrated on a gallery of consented references
(bench/calibrate_faces.py), not on a crawl where every face meets 10^5
strangers, and "the same person in another photo" is a lead for a reviewer,
not a copy of the photo (copy detection's ``match``). Hashes and local features
still decide copies there; the stronger searcher wins the merge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select

from indexer.enroll import consent_active, utcnow
from indexer.signals import base as signals
from indexer.signals.base import SignalVector
from indexer.store.catalog import Bank, Item, Subject, Vector
from indexer.store.store import Store
from matcher import defaults as defaults_mod
from matcher.search import decide
from matcher.search.query import Candidate, Query, register_searcher

FACE_FAMILY = "faces"


def faces_key(signal_name: str) -> str:
    """Where a query's faces of one signal are kept in :attr:`Query.cache`."""
    return f"faces:{signal_name}"


def seed_faces(query: Query, signal_name: str, faces: list[SignalVector]) -> None:
    """Give the query the faces of ``signal_name`` computed elsewhere (indexing): no second detection.

    ``faces`` must be what the signal's ``extract`` gave for this image, an empty
    list when it found none: the searcher then takes them as its own.
    """
    query.cache[faces_key(signal_name)] = list(faces)
FEATURES = ("centred_similarity", "gap")
FACE_SEARCH_KEY = "face_search"
# Banks searched by face unless their policy's ``face_search`` says otherwise.
FACE_SEARCH_KINDS = frozenset({"missing_person", "ads"})
# Banks in which a face alone may ``match``: the kind the face models are calibrated on.
FACE_MATCH_KINDS = frozenset({"missing_person"})
REVIEW_CEILING = decide.MATCH_SCORE - 1e-6


def face_search_on(bank: Bank) -> bool:
    """Whether ``bank`` is searched by face: its policy ``face_search`` (true/false), else by kind."""
    configured = (bank.policy or {}).get(FACE_SEARCH_KEY)
    if configured is not None:
        return bool(configured)
    return bank.kind in FACE_SEARCH_KINDS


@dataclass(frozen=True)
class FaceModel:
    """Calibrated scoring of one face signal (see the module docstring).

    The uncalibrated defaults only serve signals nobody has calibrated yet
    (a freshly configured ONNX model): they rank by similarity and gap.
    """

    weights: tuple[float, ...] = (40.0, 40.0)
    bias: float = -20.0
    match: float = 0.9  # probability at or above which a candidate is a match
    review: float = 0.3
    alpha: float = 0.5
    ref_k: int = 10
    prior_mean: float = 0.0  # a reference's typical cohort mean
    prior_weight: float = 3.0
    prior_other: float = 0.0  # typical best impostor, for banks of one subject
    calibrated: bool = False

    @classmethod
    def from_section(cls, section: dict[str, Any], signal: str) -> FaceModel:
        raw = (section.get("signals") or {}).get(signal)
        if not raw:
            return cls()
        return cls(weights=tuple(float(w) for w in raw["weights"]), bias=float(raw["bias"]),
                   match=float(raw["match"]), review=float(raw["review"]),
                   alpha=float(raw["alpha"]), ref_k=int(raw["ref_k"]),
                   prior_mean=float(raw["prior_mean"]), prior_weight=float(raw["prior_weight"]),
                   prior_other=float(raw["prior_other"]), calibrated=True)


@dataclass(frozen=True)
class FusionModel:
    """Score-level fusion of several face signals (the ``"fusion"`` entry of the faces section).

    One logistic model over every fused signal's two features (its centred
    similarity and its gap, each computed with that signal's own
    :class:`FaceModel`), fitted by ``bench/calibrate_faces.py`` on the same
    calibration half and with the same open-set thresholds as a single signal.
    A subject one signal's index did not return (beyond its ``search_k``
    neighbours) gets that signal's ``floor``: a centred similarity below
    almost every impostor's at calibration.
    """

    signals: tuple[str, ...]
    weights: tuple[float, ...]  # (centred, gap) per signal, in ``signals`` order
    bias: float
    match: float
    review: float
    floor: tuple[float, ...]

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> FusionModel | None:
        raw = section.get("fusion")
        if not raw:
            return None
        return cls(signals=tuple(raw["signals"]), weights=tuple(float(w) for w in raw["weights"]),
                   bias=float(raw["bias"]), match=float(raw["match"]), review=float(raw["review"]),
                   floor=tuple(float(f) for f in raw["floor"]))


def fused_features(centred: dict[str, np.ndarray], models: dict[str, FaceModel],
                   fusion: FusionModel) -> np.ndarray:
    """Feature rows for the fusion: each signal's (centred, gap) side by side, one row per subject.

    ``centred[signal]`` holds one value per subject in the same subject order,
    NaN where that signal did not return the subject.
    """
    cols = []
    for signal, floor in zip(fusion.signals, fusion.floor, strict=True):
        values = np.where(np.isnan(centred[signal]), floor, centred[signal])
        cols.append(features(values, models[signal]))
    return np.hstack(cols) if cols else np.zeros((0, 0))


def fused_probabilities(centred: dict[str, np.ndarray], models: dict[str, FaceModel],
                        fusion: FusionModel) -> np.ndarray:
    feats = fused_features(centred, models, fusion)
    if len(feats) == 0:
        return np.zeros(0)
    logits = feats @ np.asarray(fusion.weights, dtype=np.float64) + fusion.bias
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -40, 40)))


def reference_cohort_means(vectors: np.ndarray, subject_ids: np.ndarray, model: FaceModel,
                           chunk: int = 2048) -> np.ndarray:
    """Per reference: mean similarity to its ``ref_k`` nearest references of other subjects.

    Shrunk towards ``prior_mean`` with weight ``prior_weight`` so that a bank of
    a handful of subjects does not normalise by noise.
    """
    n = len(vectors)
    out = np.empty(n, dtype=np.float64)
    x = vectors.astype(np.float32)
    for lo in range(0, n, chunk):
        sims = x[lo:lo + chunk] @ x.T
        sims[subject_ids[lo:lo + chunk, None] == subject_ids[None, :]] = -np.inf
        k = min(model.ref_k, n)
        top = -np.partition(-sims, k - 1, axis=1)[:, :k] if k > 0 else np.zeros((len(sims), 0))
        finite = np.isfinite(top)
        total = np.where(finite, top, 0.0).sum(axis=1)
        count = finite.sum(axis=1)
        out[lo:lo + chunk] = ((total + model.prior_weight * model.prior_mean)
                              / (count + model.prior_weight))
    return out


def features(centred: np.ndarray, model: FaceModel) -> np.ndarray:
    """Feature rows (centred similarity, gap to the best other subject), one per subject."""
    centred = np.asarray(centred, dtype=np.float64)
    if len(centred) == 0:
        return np.zeros((0, len(FEATURES)))
    order = np.sort(centred)[::-1]
    top = order[0]
    second = order[1] if len(order) > 1 else model.prior_other
    other = np.where(centred >= top, second, top)
    return np.stack([centred, centred - other], axis=1)


def probabilities(feats: np.ndarray, model: FaceModel) -> np.ndarray:
    logits = feats @ np.asarray(model.weights, dtype=np.float64) + model.bias
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -40, 40)))


def to_common_scale(p: float, model: FaceModel | FusionModel) -> float:
    """Probability -> decide's scale: review threshold -> 0.5, match threshold -> 0.8, 1 -> 1."""
    if p >= model.match:
        span = 1.0 - model.match
        return decide.MATCH_SCORE + (1.0 - decide.MATCH_SCORE) * ((p - model.match) / span if span else 1)
    if p >= model.review:
        return decide.REVIEW_SCORE + (decide.MATCH_SCORE - decide.REVIEW_SCORE) * (
            (p - model.review) / (model.match - model.review))
    return decide.REVIEW_SCORE * p / model.review if model.review > 0 else 0.0


@dataclass
class _Best:
    """The best evidence for one subject so far."""

    score: float
    similarity: float
    item: int
    query_box: list[int] | None
    query_quality: float | None
    low_quality: bool
    extra: dict[str, Any] = field(default_factory=dict)


class FaceSearcher:
    """Each query face against the bank's face index; candidates per subject."""

    name = "faces"
    # Vectors fetched per query face: every subject of a reference bank of a
    # few hundred photos, and far more than the ten candidates a query returns.
    search_k = 256

    def __init__(self, store: Store, defaults: defaults_mod.Defaults) -> None:
        self.store = store
        self.section = defaults.section("faces")
        self._cohorts: dict[tuple[int, str], tuple[int, dict[int, float]]] = {}

    def face_signals(self, bank: Bank) -> list[str]:
        return [n for n in self.store.index_signals(bank) if signals.get(n).family == FACE_FAMILY]

    def applies(self, bank: Bank) -> bool:
        """Banks with face vectors whose policy (or kind) asks for face search (:func:`face_search_on`)."""
        return face_search_on(bank) and bool(self.face_signals(bank))

    def query_faces(self, query: Query, signal_name: str) -> list[SignalVector]:
        key = faces_key(signal_name)
        if key not in query.cache:
            query.cache[key] = signals.get(signal_name).extract(query.picture)
        return query.cache[key]

    def cohort_means(self, bank: Bank, signal_name: str, model: FaceModel) -> dict[int, float]:
        """Reference cohort means of a (bank, signal), recomputed when its vectors change."""
        key = (bank.id, signal_name)
        revision = self.store.catalog.revision(bank.id, signal_name)
        cached = self._cohorts.get(key)
        if cached is not None and cached[0] == revision:
            return cached[1]
        signal = signals.get(signal_name)
        with self.store.catalog.session() as s:
            rows = s.execute(select(Vector.id, Vector.data, Item.subject_id)
                             .join(Item, Item.id == Vector.item_id)
                             .where(Vector.bank_id == bank.id, Vector.signal == signal_name)).all()
        means: dict[int, float] = {}
        if rows:
            x = np.stack([signal.from_bytes(bytes(r[1])) for r in rows])
            x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
            subject_ids = np.array([r[2] if r[2] is not None else -r[0] for r in rows])
            values = reference_cohort_means(x, subject_ids, model)
            means = {int(r[0]): float(v) for r, v in zip(rows, values, strict=True)}
        self._cohorts[key] = (revision, means)
        return means

    def _hits(self, query: Query, bank: Bank, signal_name: str, model: FaceModel,
              subjects: dict[int, Subject]) -> tuple[list[SignalVector], list[dict[int, _Hit]]]:
        """Per query face of one signal: the best reference of each consented subject it returned."""
        qfaces = self.query_faces(query, signal_name)
        if not qfaces:
            return [], []
        now = utcnow()
        index = self.store.indexes.get(bank.id, signal_name)
        means = self.cohort_means(bank, signal_name, model)
        hits = index.search(np.stack([f.vector for f in qfaces]), self.search_k)
        owners = self.store.catalog.vector_owners({h.vector_id for row in hits for h in row})
        rows: list[dict[int, _Hit]] = []
        for row in hits:
            per_subject: dict[int, _Hit] = {}
            for hit in row:
                owner = owners.get(hit.vector_id)
                if owner is None or owner[2] is None:
                    continue
                vec, item, subject = owner
                if not consent_active(subject, now):
                    continue
                subjects[subject.id] = subject
                sim = 1.0 - hit.distance
                centred = sim - model.alpha * means.get(vec.id, model.prior_mean)
                if subject.id not in per_subject or centred > per_subject[subject.id].centred:
                    per_subject[subject.id] = _Hit(centred, sim, item.id,
                                                   bool((vec.extra or {}).get("low_quality")))
            rows.append(per_subject)
        return qfaces, rows

    def search(self, query: Query, bank: Bank, top: int) -> list[Candidate]:
        subjects: dict[int, Subject] = {}
        models = {n: FaceModel.from_section(self.section, n) for n in self.face_signals(bank)}
        found = {n: self._hits(query, bank, n, m, subjects) for n, m in models.items()}
        found = {n: v for n, v in found.items() if v[0]}
        fusion = FusionModel.from_section(self.section)
        if fusion is not None and not _same_faces([found.get(n, ([], []))[0] for n in fusion.signals]):
            fusion = None  # a signal of the fusion is not in this bank, or saw other faces
        best: dict[int, _Best] = {}
        n_faces = max((len(q) for q, _ in found.values()), default=0)
        for i in range(n_faces):
            per_face = {n: (q[i], rows[i]) for n, (q, rows) in found.items() if i < len(q)}
            ids = sorted({sid for _q, row in per_face.values() for sid in row})
            if not ids:
                continue
            # Each signal alone (kept as evidence; decides when there is no fusion).
            alone: dict[str, dict[int, float]] = {}
            for name, (_q, row) in per_face.items():
                present = [sid for sid in ids if sid in row]
                probs = probabilities(features(np.array([row[sid].centred for sid in present]),
                                               models[name]), models[name])
                alone[name] = {sid: to_common_scale(float(p), models[name])
                               for sid, p in zip(present, probs, strict=True)}
            fused: dict[int, float] = {}
            if fusion is not None:
                centred = {n: np.array([per_face[n][1][sid].centred if sid in per_face[n][1] else np.nan
                                        for sid in ids]) for n in fusion.signals}
                probs = fused_probabilities(centred, models, fusion)
                fused = {sid: to_common_scale(float(p), fusion) for sid, p in zip(ids, probs, strict=True)}
            for sid in ids:
                lead = _lead_signal(sid, per_face, alone, fusion)
                qface, row = per_face[lead]
                hit = row[sid]
                score = fused[sid] if fusion is not None else alone[lead][sid]
                low = bool(qface.extra.get("low_quality")) or any(
                    r[sid].low_quality for _q, r in per_face.values() if sid in r)
                if low:
                    score = decide.cap(score, REVIEW_CEILING)
                if sid in best and score <= best[sid].score:
                    continue
                models_evidence = {}
                for name, (_q, r) in per_face.items():
                    if sid in r:
                        models_evidence[f"{name}_distance"] = round(1.0 - r[sid].similarity, 4)
                        models_evidence[f"{name}_score"] = round(alone[name][sid], 4)
                if fusion is not None:
                    models_evidence["face_fusion"] = "+".join(fusion.signals)
                if qface.extra.get("landmarks"):  # the query face's five points, drawn for the reviewer
                    models_evidence["query_face_landmarks"] = qface.extra["landmarks"]
                best[sid] = _Best(score, hit.similarity, hit.item, list(qface.box) if qface.box else None,
                                  qface.quality, low, {"signal": lead, **models_evidence})
        ranked = sorted(best.items(), key=lambda kv: (-kv[1].score, kv[0]))[:top]
        review_only = bank.kind not in FACE_MATCH_KINDS  # a face in a crawl is a lead (module docstring)
        out = []
        for sid, b in ranked:
            subject = subjects[sid]
            extra = dict(b.extra)
            evidence = {"face_signal": extra.pop("signal"), "face_distance": round(1.0 - b.similarity, 4),
                        "face_score": round(b.score, 4), "query_face_box": b.query_box,
                        "reference_item": b.item, **extra}
            if b.low_quality:
                evidence["face_low_quality"] = True
            score = b.score
            if review_only and score > REVIEW_CEILING:
                score = decide.cap(score, REVIEW_CEILING)
                evidence["face_review_only"] = True  # the fused score above stays as face_score
            out.append(Candidate(bank=bank.name, label=subject.label, subject_id=subject.id,
                                 pseudonym=subject.pseudonym, item=b.item, score=score,
                                 decision=decide.decision_for(score), evidence=evidence))
        return out


@dataclass(frozen=True)
class _Hit:
    """A subject's best reference for one query face and one signal."""

    centred: float
    similarity: float
    item: int
    low_quality: bool


def _same_faces(per_signal: list[list[SignalVector]]) -> bool:
    """Whether every fused signal saw the same query faces, in the same order (one detection)."""
    if not per_signal or not per_signal[0]:
        return False
    boxes = [[v.box for v in faces] for faces in per_signal]
    return all(b == boxes[0] for b in boxes[1:])


def _lead_signal(sid: int, per_face: dict[str, tuple[SignalVector, dict[int, _Hit]]],
                 alone: dict[str, dict[int, float]], fusion: FusionModel | None) -> str:
    """The signal whose reference and distance a candidate reports first.

    With fusion: the first fused signal that returned the subject (dlib's, whose
    distance reviewers know); alone: the signal that scored it highest.
    """
    if fusion is not None:
        return next(n for n in fusion.signals if sid in per_face[n][1])
    return max((n for n in per_face if sid in per_face[n][1]), key=lambda n: alone[n][sid])


register_searcher(FaceSearcher)
