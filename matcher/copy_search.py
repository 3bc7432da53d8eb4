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
        index = self.indexes.get(bank.id)
        found: dict[int, tuple[float, verify.Verification, Any, bool]] = {}
        for flip in (False, True):
            if flip and any(score >= decide.MATCH_SCORE for score, *_ in found.values()):
                break
            features, desc = query_features(query, flip)
            if len(features) < verify.MIN_MATCHES:
                continue
            used = FLIP_DESCRIPTORS if flip else SHORTLIST_DESCRIPTORS
            votes = self._votes(index.search(desc[:used], NEIGHBOURS))
            shortlist = [vid for vid, n in votes.most_common(SHORTLIST) if n >= MIN_VOTES]
            owners = self.store.catalog.vector_owners(shortlist)
            for vid in shortlist:
                if vid not in owners:
                    continue  # deleted since the index was built
                vec, item, subject = owners[vid]
                reference = local.unpack(vec.data, item.width)
                result = verify.verify(features, reference, query_desc=desc,
                                       query_width=features.frame[0] if flip else None)
                score = decide.evidence_score(result.evidence(decide.LOCAL_PREFIX), self.defaults,
                                              bank.policy)
                if item.id not in found or score > found[item.id][0]:
                    found[item.id] = (score, result, (item, subject), flip)
        return self._candidates(bank, found, top)

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
