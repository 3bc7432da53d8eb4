"""Copy search with local features: finds reposts that were cropped, padded, captioned or pasted.

Three steps per bank, cheapest first:
1. shortlist: the query's strongest RootSIFT descriptors are looked up in the
   bank's descriptor index (``indexer.store.features``); every reference image
   owning a close descriptor gets one vote per query descriptor;
2. verify: the best-voted references are matched descriptor to descriptor and
   checked geometrically (``matcher.verify``);
3. mirror: only when nothing was confirmed as a copy, the same is done with the
   features of the left-right mirrored query (SIFT is not mirror invariant); they
   are the query's own descriptors permuted (``local.mirrored``), not a second
   SIFT pass. Most queries stop after step 2, so mirrored reposts cost time only
   when needed.
4. detail: only when still nothing was confirmed and the query picture is larger
   than the frame its features were computed on (a screenshot or collage, where
   the photo is a small part of a large page), the query's features are computed
   again at up to :data:`DETAIL_SIDE` pixels; they are searched like step 1-2,
   and the near misses of steps 2-3 (``review`` scores) are verified with them
   again. At 800 px a photo shown on a quarter of a 1200-px page is too small for
   SIFT; at full size it is not (a generated screenshot: 21 -> 75 tight inliers).
   Unrelated near misses did not gain (14 measured: all stayed under 8 inliers).
   On copydet only screenshots are that large (81 of 1701 queries).
The verified evidence is scored by :func:`matcher.decide.copy_score`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from indexer.signals import local
from indexer.store import features as feature_store
from indexer.store.catalog import Bank
from indexer.store.features import LocalIndexSet
from indexer.store.store import Store
from matcher import decide, verify
from matcher import defaults as defaults_mod
from matcher.search import Candidate, Query, register_searcher

# Query descriptors used for the shortlist (all of them: measured, 500 missed screenshots
# whose web-page text took the strongest keypoints).
SHORTLIST_DESCRIPTORS = 1000
# The mirrored pass runs only when nothing matched (every unrelated query pays for it) and
# looks for a mirrored copy, which keeps most of the photo: its strongest half is enough.
FLIP_DESCRIPTORS = 500
NEIGHBOURS = 10
# Squared L2 between unit RootSIFT rows below which a neighbour earns a vote.
VOTE_DISTANCE = 0.5
SHORTLIST = 6
MIN_VOTES = 3
# The detail pass (step 4): frame long side and keypoints of the full-size query.
DETAIL_SIDE = 1600
DETAIL_KEYPOINTS = 2000

def local_indexes(store: Store) -> LocalIndexSet:
    """The store's descriptor indexes (built by the indexer after each ingest run)."""
    return feature_store.for_store(store)


def query_features(query: Query, flip: bool) -> tuple[local.LocalFeatures, np.ndarray]:
    """The query's features (mirrored or not) and their RootSIFT rows, computed once per query."""
    key = f"sift_features_{'flip' if flip else 'orig'}"
    if key not in query.cache:
        if flip:
            features = local.mirrored(query_features(query, False)[0])
        else:
            features = local.extract_features(query.picture, max_keypoints=local.QUERY_KEYPOINTS,
                                              max_side=local.QUERY_SIDE, spread=False)
        query.cache[key] = (features, features.rootsift())
    return query.cache[key]


def detail_features(query: Query, flip: bool = False) -> local.LocalFeatures | None:
    """The query's features at up to :data:`DETAIL_SIDE` px, or None when that frame is no larger.

    Computed at most once per query (mirrored: the same keypoints permuted).
    """
    key = "sift_features_detail"
    if key not in query.cache:
        first = query_features(query, False)[0]
        if max(query.picture.original_size) <= max(first.frame) or max(first.frame) < local.QUERY_SIDE:
            query.cache[key] = None
        else:
            query.cache[key] = local.extract_features(query.picture, max_keypoints=DETAIL_KEYPOINTS,
                                                      max_side=DETAIL_SIDE, spread=False)
    features = query.cache[key]
    return local.mirrored(features) if features is not None and flip else features


class CopySearcher:
    """Local-feature copy search with geometric verification (see the module docstring)."""

    name = "copy"

    def __init__(self, store: Store, defaults: defaults_mod.Defaults) -> None:
        self.store = store
        self.defaults = defaults
        self.indexes = local_indexes(store)

    def applies(self, bank: Bank) -> bool:
        # The revision row is one indexed lookup; listing the bank's signals scans its vectors
        # (14 ms a query at 1,000 references). A bank whose sift vectors were all deleted
        # keeps its revision and is searched to no effect.
        return self.store.catalog.revision(bank.id, local.SIFT.name) > 0

    def search(self, query: Query, bank: Bank, top: int) -> list[Candidate]:
        found: dict[int, tuple[float, verify.Verification, Any, bool]] = {}
        references: dict[int, local.LocalFeatures] = {}
        for flip in (False, True):
            if flip and self._matched(found):
                break
            features, desc = query_features(query, flip)
            used = FLIP_DESCRIPTORS if flip else SHORTLIST_DESCRIPTORS
            self._search_pass(bank, features, desc[:used], desc, flip, found, references)
        if not self._matched(found):
            self._detail(query, bank, found, references)
        return self._candidates(bank, found, top)

    @staticmethod
    def _matched(found: dict[int, tuple[float, verify.Verification, Any, bool]]) -> bool:
        return any(score >= decide.MATCH_SCORE for score, *_ in found.values())

    def _search_pass(self, bank: Bank, features: local.LocalFeatures, lookup: np.ndarray,
                     desc: np.ndarray, flip: bool,
                     found: dict[int, tuple[float, verify.Verification, Any, bool]],
                     references: dict[int, local.LocalFeatures]) -> None:
        """Shortlist by descriptor votes of ``lookup`` rows, verify each, keep the best per item."""
        if len(features) < verify.MIN_MATCHES:
            return
        votes = self._votes(self.indexes.get(bank.id).search(lookup, NEIGHBOURS))
        shortlist = [vid for vid, n in votes.most_common(SHORTLIST) if n >= MIN_VOTES]
        owners = self.store.catalog.vector_owners(shortlist)
        for vid in shortlist:
            if vid not in owners:
                continue  # deleted since the index was built
            vec, item, subject = owners[vid]
            reference = references.get(item.id)
            if reference is None:
                reference = references[item.id] = local.unpack(vec.data, item.width)
            self._keep(bank, features, desc, reference, flip, (item, subject), found)

    def _keep(self, bank: Bank, features: local.LocalFeatures, desc: np.ndarray | None,
              reference: local.LocalFeatures, flip: bool, owner: Any,
              found: dict[int, tuple[float, verify.Verification, Any, bool]]) -> None:
        result = verify.verify(features, reference, query_desc=desc,
                               query_width=features.frame[0] if flip else None)
        score = decide.evidence_score(result.evidence(decide.LOCAL_PREFIX), self.defaults,
                                      bank.policy)
        item_id = owner[0].id
        if item_id not in found or score > found[item_id][0]:
            found[item_id] = (score, result, owner, flip)

    def _detail(self, query: Query, bank: Bank,
                found: dict[int, tuple[float, verify.Verification, Any, bool]],
                references: dict[int, local.LocalFeatures]) -> None:
        """Step 4 of the module docstring: the full-size query searched and near misses re-verified."""
        features = detail_features(query, False)
        if features is None:
            return
        near = [(item_id, owner, flip) for item_id, (score, _r, owner, flip) in found.items()
                if score >= decide.REVIEW_SCORE]
        desc = features.rootsift()
        self._search_pass(bank, features, desc, desc, False, found, references)
        mirrored = local.mirrored(features) if any(flip for *_x, flip in near) else None
        for item_id, owner, flip in near:
            query_side = mirrored if flip and mirrored is not None else features
            self._keep(bank, query_side, None if flip else desc, references[item_id], flip, owner,
                       found)

    @staticmethod
    def _votes(hits: Any) -> Counter[int]:
        """One vote per (query descriptor, reference vector) with a close enough neighbour."""
        close = (hits.distances < VOTE_DISTANCE) & (hits.vector_ids >= 0)
        rows, cols = np.nonzero(close)
        if not len(rows):
            return Counter()
        owners = hits.vector_ids[rows, cols]
        # One vote per distinct (query row, owner) pair.
        pairs = np.unique(rows.astype(np.int64) * (int(owners.max()) + 1) + owners)
        ids, counts = np.unique(pairs % (int(owners.max()) + 1), return_counts=True)
        return Counter(dict(zip(ids.tolist(), counts.tolist(), strict=True)))

    def _candidates(self, bank: Bank, found: dict[int, tuple[float, verify.Verification, Any, bool]],
                    top: int) -> list[Candidate]:
        best: dict[Any, Candidate] = {}
        for _item_id, (score, result, (item, subject), flip) in found.items():
            if result.inliers == 0 and score <= 0:
                continue
            evidence = result.evidence(decide.LOCAL_PREFIX)
            if flip:
                evidence["local_transform"] = "flip_y"
            cand = Candidate(bank=bank.name, label=subject.label if subject else str(item.id),
                             subject_id=subject.id if subject else None,
                             pseudonym=subject.pseudonym if subject else None, item=item.id,
                             score=score, decision=decide.decision_for(score), evidence=evidence)
            key = subject.id if subject is not None else ("item", item.id)
            if key not in best or cand.score > best[key].score:
                best[key] = cand
        return sorted(best.values(), key=lambda c: (-c.score, c.label))[:top]


register_searcher(CopySearcher)
