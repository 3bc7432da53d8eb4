"""Ranked candidates for a query image: every searcher, every bank, merged per subject.

A *searcher* is one way of finding candidates (perceptual hashes, local
features for crops and overlays, faces, room backgrounds). Each gets the same
:class:`Query` (the image decoded once, its hash extraction, a cache the
searchers share) and returns candidates per subject; :class:`Matcher` merges
them so that a subject found by several searchers appears once, with the best
score and all the evidence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from indexer import images, pipeline
from indexer.images import Picture
from indexer.signals import base as signals
from indexer.signals.base import VectorKind
from indexer.store.catalog import Bank, Subject
from indexer.store.store import Store
from indexer.store.vectors import HitArrays, OwnedHits, hits_to_arrays
from matcher import defaults as defaults_mod
from matcher.privacy.consent import drop_expired, subject_consented
from matcher.privacy.minors import apply_minor_policy
from matcher.search import decide

HASH_FAMILY = "hashes"


@dataclass
class Candidate:
    """One ranked answer: a subject of a bank, how close, and why."""

    bank: str
    label: str
    subject_id: int | None
    pseudonym: str | None
    item: int
    score: float
    decision: str
    evidence: dict[str, Any] = field(default_factory=dict)
    minor_policy: bool = False  # a protected child: at most review, two reviewers (matcher.privacy.minors)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "bank": self.bank, "item": self.item,
                "score": round(self.score, 4), "decision": self.decision,
                "evidence": self.evidence, "minor_policy": self.minor_policy}


@dataclass
class Query:
    """One query image, decoded once and shared by every searcher."""

    data: bytes
    picture: Picture
    hashes: pipeline.Extraction
    cache: dict[str, Any] = field(default_factory=dict)


class Searcher(Protocol):
    """A way of finding candidates in a bank."""

    name: str

    def applies(self, bank: Bank) -> bool:
        """Whether this searcher has anything to search in ``bank``."""

    def search(self, query: Query, bank: Bank, top: int) -> list[Candidate]:
        """Candidates of ``bank`` (one per subject), best first."""


# The largest picture any searcher needs; hashes shrink it further themselves.
QUERY_DECODE_SIDE = 2048

_SEARCHER_FACTORIES: list[Any] = []


# Evidence keys that exist to be drawn (keypoint pairs, mapped outlines, verified regions:
# matcher.search.verify, indexer.scene.geometry), not read: one-line summaries leave them out.
DRAWING_SUFFIXES = ("_pairs", "_quad", "_hull")


def register_searcher(factory: Any) -> Any:
    """Register a searcher class (called with the Store and Defaults)."""
    _SEARCHER_FACTORIES.append(factory)
    return factory


@dataclass
class _ItemHits:
    subject_id: int | None = None
    distances: dict[str, float] = field(default_factory=dict)
    transforms: dict[str, str] = field(default_factory=dict)
    qualities: dict[str, float | None] = field(default_factory=dict)
    # (the score cache it was scored under, its (score, evidence)): :meth:`HashSearcher._scored`
    # of a crowded lookup is asked twice for each item (the read's bound, then the ranking).
    # Hits are complete before they are scored and never change after.
    scored: tuple[dict[Any, Any], tuple[float, dict[str, Any]]] | None = None


class Matcher:
    """Answers "what in these banks does this image match?"."""

    def __init__(self, store: Store, defaults: defaults_mod.Defaults | None = None) -> None:
        self.store = store
        self.defaults = defaults or defaults_mod.load()
        _load_builtin_searchers()
        self.searchers: list[Searcher] = [f(store, self.defaults) for f in _SEARCHER_FACTORIES]

    def prepare(self, data: bytes, banks: list[Bank]) -> Query:
        """Decode and hash the query once (raises ImageError for bad input)."""
        picture = images.load(data, max_side=QUERY_DECODE_SIDE)
        hash_names = sorted({n for b in banks for n in self.store.index_signals(b)
                             if signals.get(n).family == HASH_FAMILY}) or ["pdq"]
        extraction = pipeline.extract_picture(data, picture, hash_names, with_variants=True)
        return Query(data=data, picture=picture, hashes=extraction)

    def match(self, data: bytes, banks: list[Bank], top: int = 10) -> list[Candidate]:
        """Ranked candidates for an image given as bytes (raises ImageError)."""
        return self.match_query(self.prepare(data, banks), banks, top)

    def match_query(self, query: Query, banks: list[Bank], top: int = 10) -> list[Candidate]:
        """Candidates of every applicable searcher, merged per subject, best first.

        A hash neighbour beyond every review radius is evidence of nothing (not the
        same photo). In a bank that also has a searcher made for its content (faces,
        rooms, local features) such neighbours only add their distances to that
        searcher's candidates and never stand as candidates of their own: ranked
        by a hash score they pushed the right venue out of the top 5 for 13 of 208
        venue queries. In a hash-only bank the nearest hashes are all there is.
        """
        merged: dict[tuple[str, Any], Candidate] = {}
        for bank in banks:
            found = [(searcher.name, searcher.search(query, bank, top))
                     for searcher in self.searchers if searcher.applies(bank)]
            content_searched = any(name != HashSearcher.name for name, _ in found)
            weak_hashes: list[Candidate] = []
            for name, candidates in found:
                for cand in candidates:
                    if content_searched and name == HashSearcher.name and cand.decision == decide.NONE:
                        weak_hashes.append(cand)
                        continue
                    key = _subject_key(cand)
                    merged[key] = merge(merged.get(key), cand)
            for cand in weak_hashes:  # their distances as evidence; score and decision stay
                if (key := _subject_key(cand)) in merged:
                    kept = merged[key]
                    merged[key] = replace(kept, evidence={**cand.evidence, **kept.evidence})
            self._confirm_hash_matches(query, bank, merged)
        ranked = sorted(merged.values(), key=lambda c: (-c.score, c.bank, c.label))
        return apply_minor_policy(self.store, drop_expired(self.store, ranked)[:top])


    def _confirm_hash_matches(self, query: Query, bank: Bank,
                              merged: dict[tuple[str, Any], Candidate]) -> None:
        """Hash matches that local-feature evidence does not back, verified for the frame test.

        A whole-picture hash of a phone screenshot or a site card sees mostly the
        frame: two screenshots of one app showing different photos hash alike. Where
        the bank has local features, such a match is verified against that one
        reference (no shortlist) so that :mod:`matcher.search.frames` can say whether the
        pair shares only a frame; it is merged like any other candidate.
        """
        confirmers = [x for x in self.searchers if hasattr(x, "confirm") and x.applies(bank)]
        todo = [c for c in merged.values() if c.bank == bank.name and c.decision == decide.MATCH
                and c.evidence.get("sha256") != 0 and not decide.is_template(c.evidence)
                and decide.evidence_score(_local_only(c.evidence), self.defaults, bank.policy)
                < decide.MATCH_SCORE]
        if not confirmers or not todo:
            return
        for searcher in confirmers:
            for cand in searcher.confirm(query, bank, [c.item for c in todo]):
                key = _subject_key(cand)
                if key in merged:
                    merged[key] = merge(merged[key], cand)


def _local_only(evidence: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in evidence.items() if k.startswith(decide.LOCAL_PREFIX + "_")}


def _subject_key(cand: Candidate) -> tuple[str, Any]:
    return (cand.bank, cand.subject_id if cand.subject_id is not None else ("item", cand.item))


def merge(a: Candidate | None, b: Candidate) -> Candidate:
    """One candidate per subject: the best score decides, all evidence is kept."""
    if a is None:
        return b
    best, other = (a, b) if a.score >= b.score else (b, a)
    evidence = {**other.evidence, **best.evidence}
    score, decision = best.score, best.decision
    if a.item == b.item and decide.is_template(evidence):
        # One picture pair: the local test found that what it shares is a common frame
        # (matcher.search.frames), so a whole-picture hash of it is no copy evidence either.
        score = min(score, decide.TEMPLATE_CAP)
        decision = decide.decision_for(score)
    return Candidate(bank=best.bank, label=best.label, subject_id=best.subject_id,
                     pseudonym=best.pseudonym, item=best.item, score=score,
                     decision=decision, evidence=evidence,
                     minor_policy=a.minor_policy or b.minor_policy)


class HashSearcher:
    """Exact and perceptual-hash search, dihedral variants included.

    For every hash signal the query's vector (and, for mirrored or rotated
    reposts, its dihedral variants) is searched exactly: the ``k`` nearest plus
    everything within the review radius. Hits are merged per reference item
    (best distance per signal) and scored by :mod:`matcher.search.decide`.
    """

    name = "hashes"

    def __init__(self, store: Store, defaults: defaults_mod.Defaults, *, read_all_hits: bool = False) -> None:
        self.store = store
        self.defaults = defaults
        # True: read and score every hit, never only the nearest (:meth:`_nearest_items`); the
        # tests compare the two.
        self.read_all_hits = read_all_hits
        # Scores by (bank policy, evidence) and (score, evidence) by (policy, hits), kept across
        # lookups: a score is a pure function of the evidence and the policy (matcher.search.decide),
        # and a crowded lookup's hundreds of items share a few dozen (distance, quality) pairs.
        self._scores: dict[str, dict[Any, Any]] = {}

    def applies(self, bank: Bank) -> bool:
        return True  # sha256 is always there

    def search(self, query: Query, bank: Bank, top: int) -> list[Candidate]:
        return self._match_bank(query.hashes, bank, top)

    def _match_bank(self, query: pipeline.Extraction, bank: Bank, top: int) -> list[Candidate]:
        exact = self.store.catalog.items_by_sha(query.sha256, [bank.id])
        policy = self.defaults.policy_for(bank.kind, bank.policy)
        searched: list[_SignalHits] = []
        for signal_name in self.store.index_signals(bank):
            signal = signals.get(signal_name)
            if signal.family != HASH_FAMILY or signal.kind is not VectorKind.BINARY:
                continue
            t = self.defaults.thresholds(signal_name, policy)
            queries = query.variants.get(signal_name) or [
                ("original", v) for v in query.vectors if v.signal == signal_name]
            if not queries:
                continue
            matrix = np.stack([v.vector for _name, v in queries])
            index = self.store.indexes.get(bank.id, signal_name)
            owned, ordered = None, False
            if index.fast_radius is None:
                knn = [hits_to_arrays(h) for h in index.search(matrix, max(top, 10))]
                near = index.radius_arrays(matrix, t.review)
                found = [(np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]]))
                         for a, b in zip(knn, near, strict=True)]
            else:
                # A bank large enough for multi-index hashing (indexer/store/mih.py) is searched
                # within the radius that index answers exactly without reading every hash (31 for
                # PDQ: its match threshold, HMA's too): the nearest-neighbour list and the review
                # band beyond it are a full scan per query, what that index is there to avoid.
                # Its hits come with their owners when it keeps them (indexer.store.vectors.VectorOwners).
                found, owned = index.radius_owned(matrix, min(t.review, max(index.fast_radius, t.match)))
                ordered = True
            searched.append(_SignalHits(signal_name, queries, found, owned, ordered))
        scores = self._scores_under(policy)
        if len(searched) == 1 and not exact and not self.read_all_hits:
            return self._rank_nearest(searched[0], bank, top, policy, scores)
        per_item = _collect(searched, self._owners_of(searched))
        for item in exact:
            per_item.setdefault(item.id, _ItemHits(subject_id=item.subject_id)).distances["sha256"] = 0.0
        return self._rank(bank, per_item, top, scores)

    def _rank_nearest(self, found: _SignalHits, bank: Bank, top: int, policy: dict[str, Any],
                      scores: dict[Any, Any]) -> list[Candidate]:
        """The ranking of one hash signal's hits, read first for ``top`` items and a few spare.

        Why: ranking keeps :func:`_kept` items (four per candidate asked) in case
        items collapse into fewer subjects, and a crowded HMA lookup (100 matches)
        read and scored 400 owners for it where a partner's hash-only references,
        one item a candidate, need the 100 nearest. The short read is the answer
        when ``top`` of its candidates score above what any unread hit could: an
        unread item can then neither enter the top nor displace one of them. Else
        (subjects collapsed, consent withdrawn) the ranking is made as before, from
        :func:`_kept` items, with the owners already read kept.
        """
        owners: dict[int, tuple[int, float | None, int | None]] = {}
        per_item, bound = self._nearest_items(found, top + _spare(top), policy, scores, owners)
        ranked = self._rank(bank, per_item, top, scores)
        if bound is None or sum(c.score > bound for c in ranked) >= top:
            return ranked
        per_item, _bound = self._nearest_items(found, _kept(top), policy, scores, owners)
        return self._rank(bank, per_item, top, scores)

    def _scores_under(self, policy: dict[str, Any]) -> dict[Any, Any]:
        """The score cache of one policy (its canonical JSON is the key); bounded, so a stream of
        distinct evidence cannot grow it without end."""
        key = json.dumps(policy, sort_keys=True, default=str)
        held = self._scores.get(key)
        if held is None or len(held) > _CACHE_ENTRIES:
            if len(self._scores) > 64:
                self._scores.clear()
            held = self._scores[key] = {}
        return held

    def _scored(self, hits: _ItemHits, policy: dict[str, Any],
                scores: dict[Any, Any]) -> tuple[float, dict[str, Any]]:
        """(score, evidence) of one item's hits; the evidence is shared by every item with the
        same hits (do not modify it). ``scores``: the policy's cache (:meth:`_scores_under`)."""
        if hits.scored is not None and hits.scored[0] is scores:
            return hits.scored[1]
        key = (tuple(hits.distances.items()), tuple(hits.qualities.items()), tuple(hits.transforms.items()))
        held = scores.get(key)
        if held is None:
            evidence = _evidence(hits)
            held = scores[key] = (self._score(evidence, policy, scores), evidence)
        hits.scored = (scores, held)
        return held

    def _nearest_items(self, found: _SignalHits, keep: int, policy: dict[str, Any],
                       scores: dict[Any, Any] | None = None,
                       owners: dict[int, tuple[int, float | None, int | None]] | None = None
                       ) -> tuple[dict[int, _ItemHits], float | None]:
        """The items of one signal's hits, read only as far as ranking can need them.

        Why: at ten million references a query near a widely reposted photo has
        thousands of hashes within the radius, and reading every owner row and
        scoring every item was most of a lookup (BENCHMARKS.md). Ranking keeps only
        the best :func:`_kept` items by score, and a hash's score never rises with
        its distance, so the hits are read in whole groups of equal distance,
        nearest first, until ``keep`` items score above what any unread hit could
        score (its distance's score with no quality cap). The result ranks exactly
        as reading every hit would: the same items, distances, qualities and
        transforms (a tie at an item's best distance is always read whole). The
        hits stay arrays (:meth:`indexer.store.vectors.VectorIndex.radius_arrays`)
        until they are read: only those within the distance read become objects.

        Returns the items and the best score any unread hit could have (None: every
        hit was read). ``owners``: the owner rows read so far in this lookup, filled
        and reused (a second call reads only the vectors the first did not).
        """
        ids, dist = found.ids(), found.distances()
        if not len(ids):
            return {}, None
        # The index's handles of the hits' owners, in the hits' order (None: read from the catalog).
        handles = found.owners.every() if found.owners is not None else None
        if found.ordered and len(found.found) == 1:  # one query's hits: nearest first, once each
            ids_sorted, dist_sorted = ids, dist
        else:  # each vector at its nearest distance (a vector found by several query variants)
            order = np.lexsort((ids, dist))
            ids_sorted, dist_sorted = ids[order], dist[order]
            first = np.ones(len(ids_sorted), dtype=bool)
            if len(ids_sorted) > 1:
                _u, at = np.unique(ids_sorted, return_index=True)
                first[:] = False
                first[at] = True
            ids_sorted, dist_sorted = ids_sorted[first], dist_sorted[first]
            if handles is not None:
                handles = handles[order][first]
        levels, counts = np.unique(dist_sorted, return_counts=True)
        read_upto = np.cumsum(counts)  # vectors at or below each distance
        owners = {} if owners is None else owners
        scores = {} if scores is None else scores
        # A first read of ``keep`` vectors: a hash bank holds one vector a reference, so that is
        # ``keep`` items when they suffice (it was 2 x keep: HMA's 100 matches read 800 owner rows).
        want, done, read = keep, 0, 0
        signal = signals.get(found.signal)
        t = self.defaults.thresholds(found.signal, policy)
        while True:
            # Whole groups of equal distance, until ``want`` vectors are read (at least one group).
            done = max(done + 1, int(np.searchsorted(read_upto, want, side="left")) + 1)
            done = min(done, len(levels))
            upto = int(read_upto[done - 1])
            if handles is not None and found.owners is not None:
                held = found.owners.read(handles[read:upto]).rows()
                owners.update(zip(ids_sorted[read:upto].tolist(), held, strict=True))
            elif unread := {v for v in ids_sorted[read:upto].tolist() if v not in owners}:
                owners.update(self._vector_items(unread))
            read = upto
            per_item = _collect([found], owners, float(levels[done - 1]))
            if done == len(levels):
                return per_item, None
            # The best any unread hit could score: its distance's, uncapped.
            bound = decide.signal_score(float(levels[done]), t, signal.max_distance())
            if len(per_item) >= keep:  # fewer items than ``keep`` cannot have ``keep`` above the bound
                above = 0
                for hits in per_item.values():
                    above += self._scored(hits, policy, scores)[0] > bound
                    if above >= keep:
                        return per_item, bound
            want *= 4

    def _score(self, evidence: dict[str, Any], policy: dict[str, Any],
               seen: dict[tuple[tuple[str, Any], ...], float]) -> float:
        """:func:`matcher.search.decide.evidence_score`, once per distinct evidence of one ranking.

        The score depends on the evidence alone, and hundreds of a crowded lookup's items
        share a few dozen distances and qualities (an HMA lookup ranks up to 400 items).
        """
        key = tuple(sorted(evidence.items()))
        if key not in seen:
            seen[key] = decide.evidence_score(evidence, self.defaults, policy)
        return seen[key]

    def _owners_of(self, searched: list[_SignalHits]) -> dict[int, tuple[int, float | None, int | None]]:
        """vector id -> owner of every hit: from the indexes that keep them, else from the catalog."""
        owners: dict[int, tuple[int, float | None, int | None]] = {}
        unread: set[int] = set()
        for sh in searched:
            if sh.owners is None:
                unread.update(sh.ids().tolist())
            else:
                owners.update(zip(sh.ids().tolist(), sh.owners.read(sh.owners.every()).rows(), strict=True))
        unread.difference_update(owners)
        if unread:
            owners.update(self._vector_items(unread))
        return owners

    def _vector_items(self, vector_ids: set[int]) -> dict[int, tuple[int, float | None, int | None]]:
        """vector id -> (item id, stored quality, subject id): the columns ranking needs, no ORM rows.

        One query for the hits' vectors and items together: the subject rows are read
        afterwards for the few items that rank, and only for items that have a subject
        (a partner's hash-only reference has none).
        """
        return {vid: (item_id, quality, subject_id) for vid, item_id, quality, subject_id
                in self.store.catalog.vector_owner_rows(sorted(vector_ids))}

    def _rank(self, bank: Bank, per_item: dict[int, _ItemHits], top: int,
              scores: dict[Any, Any] | None = None) -> list[Candidate]:
        if not per_item:
            return []
        policy = self.defaults.policy_for(bank.kind, bank.policy)
        scored = []
        scores = {} if scores is None else scores
        for item_id, hits in per_item.items():
            # One scoring function for live answers and offline calibration (bench/).
            score, evidence = self._scored(hits, policy, scores)
            scored.append((score, item_id, evidence))
        # Items of one subject collapse into one candidate, so keep a few spare before loading rows.
        scored.sort(key=lambda t: (-t[0], t[1]))
        scored = scored[:_kept(top)]
        subjects = self._subjects({sid for _s, item_id, _e in scored
                                   if (sid := per_item[item_id].subject_id) is not None})
        best: dict[Any, Candidate] = {}
        for score, item_id, evidence in scored:
            subject_id = per_item[item_id].subject_id
            subject = subjects.get(subject_id) if subject_id is not None else None
            if subject_id is not None and subject is None:
                continue  # deleted since the search (consent withdrawn): never a candidate
            if not subject_consented(subject):  # before the cut to top: others take its place
                continue
            label = subject.label if subject is not None else str(item_id)
            cand = Candidate(bank=bank.name, label=label,
                             subject_id=subject.id if subject else None,
                             pseudonym=subject.pseudonym if subject else None,
                             item=item_id, score=score, decision=decide.decision_for(score),
                             evidence=dict(evidence))  # a candidate's own copy: callers add to it
            key = subject.id if subject is not None else ("item", item_id)
            if key not in best or cand.score > best[key].score:
                best[key] = cand
        ranked = sorted(best.values(), key=lambda c: (-c.score, c.label))
        return ranked[:top]

    def _subjects(self, subject_ids: set[int]) -> dict[int, Subject]:
        """The subject rows of the ranked items (none asked for when no item has a subject)."""
        if not subject_ids:
            return {}
        with self.store.catalog.session() as s:
            return self.store.catalog.subjects(s, subject_ids)


@dataclass
class _SignalHits:
    """One hash signal's search in one bank: the query vectors and, per query, its hits as
    (vector ids, distances) arrays (nearest-neighbour list first, then the radius's) and,
    from an index that keeps them, the hits' owners in the same order. ``ordered``: each
    query's hits are nearest first, ties by id, each vector once (a radius search alone)."""

    signal: str
    queries: list[tuple[str, Any]]
    found: list[HitArrays]
    owners: OwnedHits | None = None
    ordered: bool = False

    def ids(self) -> np.ndarray:
        return np.concatenate([ids for ids, _d in self.found]) if self.found else np.empty(0, np.int64)

    def distances(self) -> np.ndarray:
        return np.concatenate([d for _i, d in self.found]) if self.found else np.empty(0, np.float64)


_CACHE_ENTRIES = 20_000  # scores (or evidences) a searcher keeps per policy before starting afresh


def _kept(top: int) -> int:
    """Items ranked before subjects are read: a few spare, since items of one subject collapse."""
    return max(4 * top, 40)


def _spare(top: int) -> int:
    """Items beyond ``top`` read first by :meth:`HashSearcher._rank_nearest` (a withdrawn
    subject or two, a pair of photos of one subject, without a second read)."""
    return max(4, top // 8)


def _collect(searched: list[_SignalHits], owners: dict[int, tuple[int, float | None, int | None]],
             within: float | None = None) -> dict[int, _ItemHits]:
    """Hits merged per reference item: best distance per signal, its transform and quality.

    Hits whose vector has no owner in ``owners`` (deleted since the search, or not
    read) are left out, and so are hits farther than ``within`` (when given: the
    distance read so far; every owner read has its nearest hit within it, so no
    farther hit could change its best distance).
    """
    per_item: dict[int, _ItemHits] = {}
    farthest = float("inf")
    for found in searched:
        signal_name = found.signal
        for (transform, qvec), (ids, dist) in zip(found.queries, found.found, strict=True):
            if within is not None:
                close = dist <= within
                ids, dist = ids[close], dist[close]
            query_quality = qvec.quality
            # A crowded lookup passes here for hundreds of hits, once per read of its owners: an
            # item's hits are made into objects only when it is first seen or seen nearer.
            for vector_id, distance in zip(ids.tolist(), dist.tolist(), strict=True):
                owner = owners.get(vector_id)
                if owner is None:
                    continue
                item_id, ref_quality, subject_id = owner
                slot = per_item.get(item_id)
                if slot is None:
                    slot = per_item[item_id] = _ItemHits(subject_id=subject_id)
                elif distance >= slot.distances.get(signal_name, farthest):
                    continue
                slot.distances[signal_name] = distance
                slot.transforms[signal_name] = transform
                slot.qualities[signal_name] = (
                    ref_quality if query_quality is None
                    else query_quality if ref_quality is None else min(query_quality, ref_quality))
    return per_item


def _evidence(hits: _ItemHits) -> dict[str, Any]:
    """The evidence of one item's hash hits, as answers and the review queue show it."""
    evidence: dict[str, Any] = {}
    for name, dist in hits.distances.items():
        if name == "sha256":
            evidence["sha256"] = 0
            continue
        evidence[name] = int(dist) if float(dist).is_integer() else round(dist, 4)
        quality = hits.qualities.get(name)
        if quality is not None:
            evidence[f"{name}_quality"] = round(quality, 2)
        if hits.transforms.get(name, "original") != "original":
            evidence[f"{name}_transform"] = hits.transforms[name]
    return evidence


register_searcher(HashSearcher)


def _load_builtin_searchers() -> None:
    """Import the modules whose import registers further searchers."""
    import importlib

    for module in BUILTIN_SEARCHER_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # optional searcher not installed
            if exc.name != module:
                raise


# Searcher modules are added here as they land (each registers itself on import).
BUILTIN_SEARCHER_MODULES: list[str] = [
    "matcher.search.faces",
    "matcher.search.copies",
    "matcher.search.venues",
]
