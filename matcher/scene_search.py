"""Venue search: which known room is this photo's background?

Two stages, as in large-scale landmark retrieval:

1. shortlist: the query's masked RootSIFT features are aggregated with the
   bank's vocabulary (VLAD) and the most similar references are taken from the
   bank's FAISS index (plus, where the bank also holds a plug-in embedding
   such as a DINOv2/CLIP ONNX export, that embedding's nearest references);
2. re-ranking: each shortlisted reference is verified geometrically (mutual
   RootSIFT matches, fundamental matrix by MAGSAC++); people were masked
   before the features were computed, so no keypoint on a person votes.

The evidence of a reference is ``inliers + vlad_weight * similarity``: inliers
are the strong evidence, and the global similarity breaks the many ties
between references with a handful of chance inliers (low-texture rooms).
Candidates are per venue (subject): its best reference decides. The fused
evidence is mapped to reunite's common score so that the calibrated ``match``
and ``review`` thresholds (``matcher/defaults.json``, section ``scene``, from
``bench/calibrate_venues.py``) land at the common decision scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.scene import storage
from indexer.scene.bank import SceneBankIndex
from indexer.scene.geometry import verify
from indexer.signals import base as signals
from indexer.signals.scene import SCENE, scene_features
from indexer.store.catalog import Bank
from indexer.store.store import Store
from matcher import decide
from matcher import defaults as defaults_mod
from matcher.search import Candidate, Query, register_searcher


@dataclass(frozen=True)
class SceneParams:
    """The searcher's calibrated parameters (defaults.json section ``scene``)."""

    shortlist: int = 20
    vlad_weight: float = 50.0
    match: float = 60.0
    review: float = 30.0

    @classmethod
    def from_section(cls, section: dict[str, Any], policy: dict[str, Any] | None = None) -> SceneParams:
        merged = {**section, **((policy or {}).get("scene") or {})}
        base = cls()
        return cls(shortlist=int(merged.get("shortlist", base.shortlist)),
                   vlad_weight=float(merged.get("vlad_weight", base.vlad_weight)),
                   match=float(merged.get("match", base.match)),
                   review=float(merged.get("review", base.review)))


def evidence_score(evidence: float, params: SceneParams) -> float:
    """Fused evidence -> common score: review -> 0.5, match -> 0.8, twice match -> 1."""
    e = max(0.0, float(evidence))
    if e >= params.match:
        return min(1.0, decide.MATCH_SCORE + (1 - decide.MATCH_SCORE) * (e - params.match) / params.match)
    if e >= params.review:
        span = max(params.match - params.review, 1e-9)
        return decide.REVIEW_SCORE + (decide.MATCH_SCORE - decide.REVIEW_SCORE) * (e - params.review) / span
    return decide.REVIEW_SCORE * e / max(params.review, 1e-9)


class SceneSearcher:
    """Room-background search in banks that hold ``scene`` vectors."""

    name = "scene"

    def __init__(self, store: Store, defaults: defaults_mod.Defaults) -> None:
        self.store = store
        self.defaults = defaults
        self._banks: dict[int, SceneBankIndex] = {}

    def applies(self, bank: Bank) -> bool:
        return SCENE in self.store.index_signals(bank)

    def bank_index(self, bank: Bank) -> SceneBankIndex:
        """The bank's VLAD index, brought up to date with the catalog."""
        index = self._banks.get(bank.id)
        if index is None:
            folder = self.store.indexes.root / f"bank-{bank.id}"
            index = self._banks[bank.id] = SceneBankIndex(self.store.catalog, folder, bank.id, SCENE)
        return index.current()

    def search(self, query: Query, bank: Bank, top: int) -> list[Candidate]:
        params = SceneParams.from_section(self.defaults.section("scene"), bank.policy)
        feats, mask = scene_features(query.picture)
        index = self.bank_index(bank)
        k = max(params.shortlist, top)
        similarity = {h.vector_id: 1.0 - h.distance for h in index.search(feats, k)}
        embedded = self._embedding_shortlist(query, bank, k)  # scene vector id -> cosine
        shortlist = set(similarity) | set(embedded)
        owners = self.store.catalog.vector_owners(shortlist)
        refs = storage.load_features(self.store.catalog, shortlist)
        query_desc = feats.rootsift
        query_code = index.encode(feats)
        best: dict[Any, Candidate] = {}
        for vid in sorted(shortlist):
            if vid not in owners or vid not in refs:
                continue
            _vec, item, subject = owners[vid]
            ref = refs[vid]
            # A reference found only through an embedding still gets its VLAD similarity.
            sim = similarity.get(vid)
            if sim is None:
                sim = float(query_code @ index.encode(ref))
            check = verify(feats, ref, query_desc=query_desc)
            fused = check.inliers + params.vlad_weight * max(sim, 0.0)
            score = evidence_score(fused, params)
            evidence: dict[str, Any] = {
                "scene_inliers": check.inliers, "scene_matches": check.matches,
                "scene_similarity": round(sim, 4), "scene_evidence": round(fused, 2),
                "scene_keypoints": len(feats), "scene_masked": round(mask.masked_share, 3),
            }
            if vid in embedded:
                evidence["scene_embedding_similarity"] = round(embedded[vid], 4)
            # Enrollment keeps name/address/room on the venue, `reunite index` on the photo.
            described = {**(item.attributes or {}), **((subject.attributes or {}) if subject else {})}
            venue = {key: described[key] for key in ("name", "address", "room") if described.get(key)}
            if venue:
                evidence["venue"] = venue
            cand = Candidate(bank=bank.name, label=subject.label if subject is not None else str(item.id),
                             subject_id=subject.id if subject is not None else None,
                             pseudonym=subject.pseudonym if subject is not None else None,
                             item=item.id, score=score, decision=decide.decision_for(score),
                             evidence=evidence)
            key = subject.id if subject is not None else ("item", item.id)
            if key not in best or cand.score > best[key].score:
                best[key] = cand
        return sorted(best.values(), key=lambda c: (-c.score, c.label))[:top]

    def _embedding_shortlist(self, query: Query, bank: Bank, k: int) -> dict[int, float]:
        """References nearest by any plug-in scene embedding of the bank: scene vector id -> cosine."""
        out: dict[int, float] = {}
        for name in self.store.index_signals(bank):
            signal = signals.get(name)
            if signal.family != SCENE or name == SCENE:
                continue
            vectors = query.cache.get(("scene_embedding", name))
            if vectors is None:
                vectors = query.cache[("scene_embedding", name)] = signal.extract(query.picture)
            if not vectors:
                continue
            hits = self.store.indexes.get(bank.id, name).search(
                np.stack([v.vector for v in vectors]), k)
            owners = self.store.catalog.vector_owners({h.vector_id for row in hits for h in row})
            scene_ids = self._scene_vectors_of({owner[1].id for owner in owners.values()})
            for row in hits:
                for hit in row:
                    owner = owners.get(hit.vector_id)
                    vid = scene_ids.get(owner[1].id) if owner is not None else None
                    if vid is not None:
                        out[vid] = max(out.get(vid, -1.0), 1.0 - hit.distance)
        return out

    def _scene_vectors_of(self, item_ids: set[int]) -> dict[int, int]:
        """item id -> its ``scene`` vector id (for references found by an embedding)."""
        from sqlalchemy import select

        from indexer.store.catalog import Vector
        if not item_ids:
            return {}
        with self.store.catalog.session() as s:
            rows = s.execute(select(Vector.item_id, Vector.id).where(
                Vector.item_id.in_(list(item_ids)), Vector.signal == SCENE)).all()
        return {int(item): int(vid) for item, vid in rows}


register_searcher(SceneSearcher)
