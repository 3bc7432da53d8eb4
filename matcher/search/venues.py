"""Venue search: which known room is this photo's background?

Two stages, as in large-scale landmark retrieval:

1. shortlist: the query's masked RootSIFT features are aggregated with the
   bank's vocabulary (VLAD) and the most similar references are taken from the
   bank's FAISS index (plus, where the bank also holds a plug-in embedding
   such as a DINOv2/CLIP ONNX export, that embedding's nearest references);
2. re-ranking: each shortlisted reference is verified geometrically (mutual
   RootSIFT matches, fundamental matrix by MAGSAC++); people were masked
   before the features were computed, so no keypoint on a person votes.

The evidence of a reference is ``inliers + vlad_weight * similarity +
colour_weight * colour``: inliers are the strong evidence, and the global
similarities break the many ties between references with a handful of chance
inliers (low-texture rooms, wide baselines). ``colour`` is the cosine of the
stored ``scene`` vectors (HSV histogram of the unmasked background): colour
shifts with white balance between a reference shot and an ad, so its weight is
small and fitted, but on rooms that share no verifiable keypoints it is often
the only evidence left (measured: bench/calibrate_venues.py picks its weight
leave-one-place-out, and BENCHMARKS.md reports the ranking with and without).
Where the bank also holds the learned room descriptor (``scene_net``,
:mod:`indexer.scene.room_net`), the venues are *ranked* by that evidence plus
``net_weight * max(cosine - net_base, 0)``, but *decided* on the evidence
without it: the first-ranked venue is a match when its verified evidence leads
every other venue's, and no venue ranked below it scores higher. Measured on
the venues suite (bench/calibrate_venues.py, banks of 2 to 73 venues), the
descriptor in the decision too raised top-1 but cost recall at the same
false-accept budget (66% -> 60%): ImageNet features of two different bedrooms
are alike often enough that small banks need a higher chance floor; in the
ranking alone it lifts top-1 from 83.7% to 86.1% at the same recall.
Candidates are per venue (subject): its best reference is its evidence (a sum
over a venue's references was measured and is worse: a venue with several
references then collects several helpings of chance inliers).

The decision is on the *margin*: the venue's evidence minus the larger of the
best other venue's evidence and the *chance evidence* (``chance_evidence``, the
fused evidence a wrong venue typically gets). A fixed threshold on the evidence
itself is unsafe because chance evidence varies from query to query (on the
venues suite the best *wrong* venue of a query gets 8 to 12 inliers and a VLAD
similarity of 0.1 to 0.3, while a third of the right venues get no more); a
clear lead over every other venue of the bank is what one room and only one
room explains. The floor is what keeps that true in a bank of a few venues:
there the best other venue is a poor estimate of chance. Measured end to end
on banks drawn from the venues suite (bench/venue_bench.py ``--bank-sizes``),
the margin over the runner-up with a 10-inlier gate matched 12.8% of all
queries wrongly in banks of 3 venues and 6.7% in banks of 10 (most queries
then show rooms the bank does not hold, as most ad photos will);
bench/calibrate_venues.py fits the floor on simulated banks of 2 to 73 venues,
each within the 0.5% budget. A ``match`` may also require
``min_match_inliers`` verified inliers (0 as calibrated: the floor does that
job at less cost in recall).
The margin is mapped to reunite's common score so that the calibrated
``match`` and ``review`` thresholds (``matcher/defaults.json``, section
``scene``, from ``bench/calibrate_venues.py``) land at the common decision
scores; the mapping is monotone, so ranking by score is ranking by evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import zip_longest
from typing import Any

import numpy as np

from indexer.scene import storage
from indexer.scene.bank import SceneBankIndex
from indexer.scene.features import FEATURE_SIDE
from indexer.scene.geometry import inlier_drawing, verify
from indexer.signals import base as signals
from indexer.signals.scene import SCENE, SCENE_SIGNAL, scene_features, summary_vector
from indexer.store.catalog import Bank
from indexer.store.store import Store
from matcher import defaults as defaults_mod
from matcher.search import decide
from matcher.search.query import Candidate, Query, register_searcher
from matcher.search.verify import MAX_PAIRS


@dataclass(frozen=True)
class SceneParams:
    """The searcher's calibrated parameters (defaults.json section ``scene``)."""

    shortlist: int = 50
    vlad_weight: float = 25.0
    colour_weight: float = 10.0
    # Weight of the learned room descriptor's cosine (scene_net, or any scene-family
    # embedding the bank holds), counted above ``net_base``: unrelated rooms sit near it.
    net_weight: float = 0.0
    net_base: float = 0.5
    match: float = 20.0
    review: float = 5.0
    # The runner-up evidence assumed whatever the bank holds (see the module docstring), in a
    # bank of ``chance_venues`` venues; ``chance_slope`` more per doubling of the bank's venues
    # (the best wrong venue's evidence depends on how many compete: a bank-size-dependent null).
    chance_evidence: float = 30.0
    chance_slope: float = 0.0
    chance_venues: float = 20.0
    min_match_inliers: int = 0

    @classmethod
    def from_section(cls, section: dict[str, Any], policy: dict[str, Any] | None = None) -> SceneParams:
        merged = {**section, **((policy or {}).get("scene") or {})}
        base = cls()
        return cls(shortlist=int(merged.get("shortlist", base.shortlist)),
                   vlad_weight=float(merged.get("vlad_weight", base.vlad_weight)),
                   colour_weight=float(merged.get("colour_weight", base.colour_weight)),
                   net_weight=float(merged.get("net_weight", base.net_weight)),
                   net_base=float(merged.get("net_base", base.net_base)),
                   match=float(merged.get("match", base.match)),
                   review=float(merged.get("review", base.review)),
                   chance_evidence=float(merged.get("chance_evidence", base.chance_evidence)),
                   chance_slope=float(merged.get("chance_slope", base.chance_slope)),
                   chance_venues=float(merged.get("chance_venues", base.chance_venues)),
                   min_match_inliers=int(merged.get("min_match_inliers", base.min_match_inliers)))


    def chance_floor(self, venues: int | None) -> float:
        """The chance evidence in a bank of ``venues`` venues (``None``: unknown, the reference size)."""
        if not self.chance_slope or not venues or venues < 1:
            return self.chance_evidence
        return self.chance_evidence + self.chance_slope * float(np.log2(venues / self.chance_venues))


# Below the review threshold the score fades out over this many evidence units.
FADE = 10.0


def evidence_score(margin: float, params: SceneParams) -> float:
    """Margin over the best other venue -> common score: review -> 0.5, match -> 0.8.

    Monotone over the whole line (negative margins included: every venue but
    the first has one), so that sorting by score keeps the evidence order.
    """
    m = float(margin)
    if m >= params.match:
        return min(1.0, decide.MATCH_SCORE
                   + (1 - decide.MATCH_SCORE) * (m - params.match) / max(params.match, 1e-9))
    if m >= params.review:
        span = max(params.match - params.review, 1e-9)
        return decide.REVIEW_SCORE + (decide.MATCH_SCORE - decide.REVIEW_SCORE) * (m - params.review) / span
    return decide.REVIEW_SCORE * 2.0 / (1.0 + float(np.exp((params.review - m) / FADE)))


class SceneSearcher:
    """Room-background search in banks that hold ``scene`` vectors."""

    name = "scene"

    def __init__(self, store: Store, defaults: defaults_mod.Defaults) -> None:
        self.store = store
        self.defaults = defaults
        self._banks: dict[int, SceneBankIndex] = {}
        self._venues: dict[int, tuple[int, int]] = {}  # bank id -> (scene revision, venues)

    def applies(self, bank: Bank) -> bool:
        return SCENE in self.store.index_signals(bank)

    def params(self, bank: Bank, embedded: bool) -> SceneParams:
        """The calibrated decision for a bank with (``scene``) or without (``scene_sift``) an embedding."""
        section = self.defaults.section("scene")
        if not embedded:
            section = self.defaults.section("scene_sift") or {**section, "net_weight": 0.0}
        return SceneParams.from_section(section, bank.policy)

    def bank_index(self, bank: Bank) -> SceneBankIndex:
        """The bank's VLAD index, brought up to date with the catalog."""
        index = self._banks.get(bank.id)
        if index is None:
            folder = self.store.indexes.root / f"bank-{bank.id}"
            index = self._banks[bank.id] = SceneBankIndex(self.store.catalog, folder, bank.id, SCENE)
        return index.current()

    def search(self, query: Query, bank: Bank, top: int) -> list[Candidate]:
        # The fused evidence has a term for the learned descriptor only where the
        # bank holds one; without it (wheels missing, a bank indexed before) the
        # decision calibrated without that term applies.
        embedded_bank = bool(self._embeddings(query, bank))
        params = self.params(bank, embedded_bank)
        feats, mask = scene_features(query.picture)
        index = self.bank_index(bank)
        k = max(params.shortlist, top)
        hits = index.search(feats, k)
        similarity = {h.vector_id: 1.0 - h.distance for h in hits}
        embedded = self._embedding_shortlist(query, bank, k)  # scene vector id -> cosine
        # ``k`` references in all, taken in turn from the two rankings: verification is the
        # cost of a query, and the union of both top-k lists verified a third more (p95 1.3x).
        shortlist = set(interleave([h.vector_id for h in hits],
                                   sorted(embedded, key=lambda v: (-embedded[v], v)), k))
        similarity = {v: s for v, s in similarity.items() if v in shortlist}
        embedded = {v: s for v, s in embedded.items() if v in shortlist}
        owners = self.store.catalog.vector_owners(shortlist)
        net = self._embedding_similarities(query, bank, owners, embedded)
        refs = storage.load_features(self.store.catalog, shortlist)
        query_desc = feats.rootsift
        query_code = index.encode(feats)
        query_colour = summary_vector(query.picture.shrunk(FEATURE_SIDE).rgb, mask.keep)
        best: dict[Any, tuple[float, Candidate]] = {}
        for vid in sorted(shortlist):
            if vid not in owners or vid not in refs:
                continue
            vec, item, subject = owners[vid]
            ref = refs[vid]
            # A reference found only through an embedding still gets its VLAD similarity.
            sim = similarity.get(vid)
            if sim is None:
                sim = float(query_code @ index.encode(ref))
            check = verify(feats, ref, query_desc=query_desc)
            colour = float(query_colour @ SCENE_SIGNAL.from_bytes(vec.data))
            fused = (check.inliers + params.vlad_weight * max(sim, 0.0)
                     + params.colour_weight * max(colour, 0.0))
            # The learned descriptor ranks; the decision stays on the verified evidence.
            rank = fused + params.net_weight * max(net[vid] - params.net_base, 0.0) if vid in net else fused
            evidence: dict[str, Any] = {
                "scene_inliers": check.inliers, "scene_matches": check.matches,
                "scene_similarity": round(sim, 4), "scene_colour": round(colour, 4),
                "scene_evidence": round(fused, 2),
                "scene_keypoints": len(feats), "scene_masked": round(mask.masked_share, 3),
            }
            if vid in embedded:
                evidence["scene_embedding_similarity"] = round(embedded[vid], 4)
            # What the reviewer sees drawn: the agreeing keypoints and the verified region.
            evidence.update(inlier_drawing(check, feats.size, query.picture.original_size, ref.size,
                                           (item.width, item.height), MAX_PAIRS))
            if vid in net:
                evidence["scene_net_similarity"] = round(net[vid], 4)
                evidence["scene_rank_evidence"] = round(rank, 2)
            # Enrollment keeps name/address/room on the venue, `reunite index` on the photo.
            described = {**(item.attributes or {}), **((subject.attributes or {}) if subject else {})}
            venue = {key: described[key] for key in ("name", "address", "room") if described.get(key)}
            if venue:
                evidence["venue"] = venue
            cand = Candidate(bank=bank.name, label=subject.label if subject is not None else str(item.id),
                             subject_id=subject.id if subject is not None else None,
                             pseudonym=subject.pseudonym if subject is not None else None,
                             item=item.id, score=0.0, decision=decide.NONE, evidence=evidence)
            key = subject.id if subject is not None else ("item", item.id)
            if key not in best or rank > best[key][0]:
                best[key] = (rank, fused, cand)
        venues = list(best.values())
        return rank_venues([(fused, cand) for _r, fused, cand in venues], params,
                           ranking=[r for r, _f, _c in venues],
                           bank_venues=self.venue_count(bank) if params.chance_slope else None)[:top]

    def venue_count(self, bank: Bank) -> int:
        """How many venues (subjects, or photos without one) the bank's ``scene`` vectors belong to.

        The decision's chance floor depends on it; it is counted once per catalog
        revision of the bank's scene vectors (one SQL query), not per query.
        """
        from sqlalchemy import distinct, func, select

        from indexer.store.catalog import Item, Vector
        revision = self.store.catalog.revision(bank.id, SCENE)
        cached = self._venues.get(bank.id)
        if cached is not None and cached[0] == revision:
            return cached[1]
        owner = func.coalesce(Item.subject_id, -Item.id)
        with self.store.catalog.session() as s:
            count = int(s.scalar(select(func.count(distinct(owner))).select_from(Vector)
                                 .join(Item, Item.id == Vector.item_id)
                                 .where(Vector.bank_id == bank.id, Vector.signal == SCENE)) or 0)
        self._venues[bank.id] = (revision, count)
        return count

    def _embeddings(self, query: Query, bank: Bank) -> list[tuple[str, list[signals.SignalVector]]]:
        """The query's vectors of every plug-in scene embedding the bank holds (cached on the query)."""
        out = []
        for name in self.store.index_signals(bank):
            signal = signals.get(name)
            if signal.family != SCENE or name == SCENE:
                continue
            vectors = query.cache.get(("scene_embedding", name))
            if vectors is None:
                vectors = query.cache[("scene_embedding", name)] = signal.extract(query.picture)
            if vectors:
                out.append((name, vectors))
        return out

    def _embedding_similarities(self, query: Query, bank: Bank, owners: dict[int, Any],
                                known: dict[int, float]) -> dict[int, float]:
        """Scene vector id -> the best embedding cosine of its photo, for every shortlisted reference.

        The embedding shortlist already knows the cosines of its own hits
        (``known``); the references only VLAD found get theirs from the stored
        embedding vectors of the same photos, so that every candidate's
        evidence has the term (a missing one would read as dissimilar).
        """
        embeddings = self._embeddings(query, bank)
        if not embeddings:
            return {}
        out = dict(known)
        item_of = {vid: owner[1].id for vid, owner in owners.items()}
        wanted = {item for vid, item in item_of.items() if vid not in out}
        if not wanted:
            return out
        from sqlalchemy import select

        from indexer.store.catalog import Vector
        best_by_item: dict[int, float] = {}
        with self.store.catalog.session() as s:
            for name, vectors in embeddings:
                signal = signals.get(name)
                q = np.stack([v.vector for v in vectors]).astype(np.float32)
                rows = s.execute(select(Vector.item_id, Vector.data).where(
                    Vector.item_id.in_(list(wanted)), Vector.signal == name)).all()
                for item, data in rows:
                    cos = float((q @ signal.from_bytes(data)).max())
                    best_by_item[int(item)] = max(best_by_item.get(int(item), -1.0), cos)
        for vid, item in item_of.items():
            if vid not in out and item in best_by_item:
                out[vid] = best_by_item[item]
        return out

    def _embedding_shortlist(self, query: Query, bank: Bank, k: int) -> dict[int, float]:
        """References nearest by any plug-in scene embedding of the bank: scene vector id -> cosine."""
        out: dict[int, float] = {}
        for name, vectors in self._embeddings(query, bank):
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


def interleave(first: list[int], second: list[int], k: int) -> list[int]:
    """The first ``k`` distinct ids taken alternately from two rankings, best first.

    Neither ranking is trusted over the other (VLAD finds the same walls, the
    learned descriptor the same room from elsewhere), and no weight is fitted.
    """
    out: list[int] = []
    seen: set[int] = set()
    for pair in zip_longest(first, second):
        for vid in pair:
            if vid is not None and vid not in seen and len(out) < k:
                seen.add(vid)
                out.append(vid)
    return out


def rank_venues(venues: list[tuple[float, Candidate]], params: SceneParams,
                ranking: list[float] | None = None, bank_venues: int | None = None) -> list[Candidate]:
    """(evidence, candidate) per venue -> candidates scored by their margin, best first.

    ``ranking`` (one key per venue; the evidence itself by default) orders the
    venues: the learned descriptor's fused evidence. The margin is always on
    the decision evidence, over the best *other* venue's; a venue's score never
    exceeds the score of a venue ranked above it, so only the first-ranked
    venue can be a match, and only when its verified evidence leads too.
    ``bank_venues`` (how many venues the bank holds) sets the chance floor
    (:meth:`SceneParams.chance_floor`).
    """
    floor = params.chance_floor(bank_venues)
    keys = ranking if ranking is not None else [e for e, _c in venues]
    order = sorted(range(len(venues)), key=lambda i: (-keys[i], venues[i][1].label))
    evidence = [venues[i][0] for i in order]
    leader = max(range(len(evidence)), key=lambda j: evidence[j]) if evidence else -1
    second = max((e for j, e in enumerate(evidence) if j != leader), default=-np.inf)
    out: list[Candidate] = []
    for j, i in enumerate(order):
        fused, cand = venues[i]
        other = second if j == leader else evidence[leader]
        margin = fused - max(other, floor)
        score = evidence_score(margin, params)
        if cand.evidence.get("scene_inliers", 0) < params.min_match_inliers:
            score = min(score, np.nextafter(decide.MATCH_SCORE, 0.0))
        if out and score >= out[-1].score:
            # Strictly below the venue ranked above: the matcher sorts merged candidates by
            # score (ties by label), which must not undo the ranking.
            score = float(np.nextafter(out[-1].score, 0.0))
        cand.evidence["scene_margin"] = round(margin, 2)
        out.append(replace(cand, score=score, decision=decide.decision_for(score)))
    return out


register_searcher(SceneSearcher)
