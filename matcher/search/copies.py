"""Copy search with local features: finds reposts that were cropped, padded, captioned or pasted.

Steps per bank, cheapest first:
1. shortlist: the query's strongest RootSIFT descriptors are looked up in the
   bank's descriptor index (``indexer.store.features``); every reference image
   owning a close descriptor gets one vote per query descriptor;
2. verify: the best-voted references are matched descriptor to descriptor and
   checked geometrically (``matcher.search.verify``);
3. parts: only when nothing was confirmed, the query's parts that can hold a photo
   of their own (``matcher.search.parts``: collage cells cut along gutters, the region
   where a verified near miss puts its reference, as a small paste leaves) are
   verified one by one with features computed again from their own pixels and a
   keypoint budget of their own, against the few references that the query's own
   keypoints inside the part voted for closely in step 1 (no second index search:
   that was most of a non-mated collage's cost); a candidate found so names its
   part (``local_part``, ``local_part_kind``). Frames suite: a photo as one cell of a
   collage or pasted at a third of the width keeps too few of the query's 1000
   strongest keypoints (83% found without this step).
4. mirror: only when still nothing was confirmed, the same is done with the
   features of the left-right mirrored query (SIFT is not mirror invariant); they
   are the query's own descriptors permuted (``local.mirrored``), not a second
   SIFT pass. When the query shares a frame with the bank (a template with a
   content box), the frame is the right way round and only its photo can be
   mirrored: only the mirrored rows inside that box are searched.
5. detail: only when still nothing was confirmed, the query picture is larger
   than the frame its features were computed on (a screenshot or collage, where
   the photo is a small part of a large page), and there is evidence it can pay: a
   near miss (``review`` score) to re-verify, or no part of the query whose photo
   was already searched on its own (no template content box, no part of step 3).
   The query's features are computed again at up to :data:`DETAIL_SIDE` pixels;
   they are searched like step 1-2, and the near misses are verified with them
   again. At 800 px a photo shown on a quarter of a 1200-px page is too small for
   SIFT; at full size it is not (a generated screenshot: 21 -> 75 tight inliers).
   Unrelated near misses did not gain (14 measured: all stayed under 8 inliers).
   On copydet only screenshots are that large (81 of 1701 queries). Its cost
   (2000 more rows in the descriptor index, the search's main cost) went to every
   non-mated screenshot of the frames suite before the evidence condition.
The verified evidence is scored by :func:`matcher.search.decide.copy_score`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import cv2
import numpy as np
from sqlalchemy import select

from indexer.images import Picture
from indexer.signals import local
from indexer.store import features as feature_store
from indexer.store.catalog import Bank, Vector
from indexer.store.features import LocalIndexSet
from indexer.store.store import Store
from matcher import defaults as defaults_mod
from matcher.search import decide, frames, parts, verify
from matcher.search.query import Candidate, Query, register_searcher

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
# References added to the shortlist by the votes of the query's rare descriptors alone (those
# without close neighbours in ``frames.COMMON_OWNERS`` items): in a bank where many items are
# screenshots of one app, the app's chrome votes for all of them and fills the shortlist.
RARE_SHORTLIST = 3
# ... when at least this share of the query's descriptors is common (a photo alone: a few %).
RARE_SHORTLIST_FROM = 0.1
# The detail pass (step 4): frame long side and keypoints of the full-size query.
DETAIL_SIDE = 1600
DETAIL_KEYPOINTS = 2000
# The part pass (``matcher.search.parts``): keypoints of one part computed again on its own pixels,
# a small part enlarged to this long side first (a paste at a quarter of an 800-px picture
# is 200 px: SIFT finds few keypoints at that size).
PART_KEYPOINTS = 600
PART_MIN_SIDE = 512
# A verified near miss with this many tight inliers on a small part of the query makes that
# part a part to search (at most MAX_NEAR_PARTS of them, the best first).
NEAR_MISS_INLIERS = 5
MAX_NEAR_PARTS = 2
# References a part is verified against: those its own keypoints voted for at this distance
# (squared RootSIFT; a copy's keypoints: most under 0.15) in step 1, at most PART_SHORTLIST,
# with PART_MIN_VOTES or more. Frames suite, collage cells and pastes: the photo's cell gave
# its photo 32-286 such votes, cells of photos the bank does not hold 2-30 to their best.
PART_VOTE_DISTANCE = 0.2
PART_SHORTLIST = 3
PART_MIN_VOTES = 3

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


def part_features(query: Query, part: parts.Part) -> local.LocalFeatures:
    """Features of ``part`` of the query computed on its own pixels, in the query's frame.

    Positions are mapped back to the frame of :func:`query_features` (fractional pixels),
    so that regions, outlines and coverage in the evidence are the query's, as for any
    other pass; only the keypoints are new (the part's own strongest, not the picture's).
    """
    key = ("sift_part", part.box)
    if key in query.cache:
        return query.cache[key]
    picture = query.picture
    first = query_features(query, False)[0]
    rx = picture.size[0] / picture.original_size[0]
    ry = picture.size[1] / picture.original_size[1]
    x0, y0 = int(part.box[0] * rx), int(part.box[1] * ry)
    x1, y1 = max(x0 + 1, int(np.ceil(part.box[2] * rx))), max(y0 + 1, int(np.ceil(part.box[3] * ry)))
    crop = picture.rgb[y0:y1, x0:x1]
    up = max(1.0, PART_MIN_SIDE / max(crop.shape[:2]))
    if up > 1.0:
        crop = cv2.resize(crop, (round(crop.shape[1] * up), round(crop.shape[0] * up)),
                          interpolation=cv2.INTER_CUBIC)
    own = local.extract_features(Picture(np.ascontiguousarray(crop), picture.format,
                                         (crop.shape[1], crop.shape[0])),
                                 max_keypoints=PART_KEYPOINTS, max_side=local.QUERY_SIDE, spread=False)
    xy = np.empty_like(own.xy)
    xy[:, 0] = (own.xy[:, 0] * own.scale / up + x0) / rx / first.scale
    xy[:, 1] = (own.xy[:, 1] * own.scale / up + y0) / ry / first.scale
    query.cache[key] = local.LocalFeatures(xy, own.descriptors, first.frame, first.scale)
    return query.cache[key]


# item id -> (score, verification, (item, subject), mirrored, frame test, the query part searched)
Found = dict[int, tuple[float, verify.Verification, Any, bool, "frames.FrameCheck | None",
                        "parts.Part | None"]]


def subset(features: local.LocalFeatures, rows: np.ndarray) -> local.LocalFeatures:
    """The keypoints ``rows`` of ``features`` (same frame and scale)."""
    return local.LocalFeatures(features.xy[rows], features.descriptors[rows], features.frame,
                               features.scale)


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
        found: Found = {}
        references: dict[int, local.LocalFeatures] = {}
        index = self.indexes.get(bank.id)
        features, desc = query_features(query, False)
        hits = index.search(desc[:SHORTLIST_DESCRIPTORS], NEIGHBOURS)
        query.cache[("sift_common", bank.id)] = self._search_pass(bank, features, hits, desc, False,
                                                                  found, references)
        if not self._matched(found):
            self._content_pass(bank, features, desc, hits, False, found, references)
        searched_parts = False
        if not self._matched(found):
            searched_parts = self._parts_pass(query, bank, found, references, hits,
                                              query.cache[("sift_common", bank.id)])
        if not self._matched(found):
            flipped, fdesc = query_features(query, True)
            rows = self._flip_rows(found, flipped)
            fhits = index.search(fdesc[rows], NEIGHBOURS)
            self._search_pass(bank, subset(flipped, rows), fhits, fdesc[rows], True, found, references)
            if not self._matched(found):
                self._content_pass(bank, subset(flipped, rows), fdesc[rows], fhits, True, found,
                                   references)
        if not self._matched(found) and self._detail_can_pay(found, searched_parts):
            self._detail(query, bank, found, references)
        return self._candidates(bank, found, top)

    def search_stored(self, features: local.LocalFeatures, bank: Bank, top: int) -> list[Candidate]:
        """Steps 1-3 for an image of the bank, from the features indexing stored for it.

        The ad linker searches every new image of a crawl: decoding it again and
        running SIFT with the query's settings cost about as much as indexing it
        (issue 21). The stored features (:data:`local.MAX_KEYPOINTS` spread over the
        frame) are searched instead, mirrored by permutation as a query's are; the
        detail pass (step 4, a full-size SIFT pass for screenshots) needs the picture
        and is left to queries.
        """
        both: dict[bool, tuple[local.LocalFeatures, np.ndarray]] = {}

        def side(flip: bool) -> tuple[local.LocalFeatures, np.ndarray]:
            if flip not in both:
                chosen = local.mirrored(features) if flip else features
                both[flip] = (chosen, chosen.rootsift())
            return both[flip]

        found, _references = self._search(bank, side, {})
        return self._candidates(bank, found, top)

    def _search(self, bank: Bank, side: Any, cache: dict[Any, Any]
                ) -> tuple[Found, dict[int, local.LocalFeatures]]:
        """Steps 1-3: ``side(flip)`` gives the query's (mirrored) features and RootSIFT rows."""
        found: Found = {}
        references: dict[int, local.LocalFeatures] = {}
        for flip in (False, True):
            if flip and self._matched(found):
                break
            features, desc = side(flip)
            used = FLIP_DESCRIPTORS if flip else SHORTLIST_DESCRIPTORS
            hits = self.indexes.get(bank.id).search(desc[:used], NEIGHBOURS)
            common = self._search_pass(bank, features, hits, desc, flip, found, references)
            if not flip:
                cache[("sift_common", bank.id)] = common
            if not self._matched(found):
                self._content_pass(bank, features, desc, hits, flip, found, references)
        return found, references

    @staticmethod
    def _flip_rows(found: Found, flipped: local.LocalFeatures) -> np.ndarray:
        """Rows of the mirrored query that the mirrored pass searches.

        Its strongest :data:`FLIP_DESCRIPTORS`; when the unmirrored query shares a frame with
        the bank (a template with a content box), the frame is the right way round and only
        the photo inside it can be mirrored: only the rows inside the content box (mirrored).
        """
        rows = np.arange(min(FLIP_DESCRIPTORS, len(flipped)))
        boxes = [c.content_box for _s, _r, _o, f, c, _p in found.values()
                 if not f and c is not None and c.template and c.content_box is not None]
        if not boxes:
            return rows
        x0, y0, x1, y1 = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        width = flipped.frame[0]
        x0, x1 = width - 1 - x1, width - 1 - x0
        xy = flipped.xy[rows]
        inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
        return rows[inside]

    @staticmethod
    def _detail_can_pay(found: Found, searched_parts: bool) -> bool:
        """Whether the full-size detail pass (step 4) has evidence that it can pay.

        It re-verifies near misses (``review`` scores) at full size, and searches a large
        query whose photo's place is unknown. When the query's photo was already searched
        on its own (a template's content region, collage cells, a near miss's part) and
        nothing came near, the full-size pass only repeats that search at four times its
        cost (the non-mated screenshots of the frames suite paid it on every query).
        """
        if any(score >= decide.REVIEW_SCORE for score, *_ in found.values()):
            return True
        templated = any(c is not None and c.template and c.content_box is not None
                        for *_x, c, _p in found.values())
        return not (templated or searched_parts)

    @staticmethod
    def _matched(found: Found) -> bool:
        return any(score >= decide.MATCH_SCORE for score, *_ in found.values())

    def _search_pass(self, bank: Bank, features: local.LocalFeatures, hits: Any,
                     desc: np.ndarray, flip: bool, found: Found,
                     references: dict[int, local.LocalFeatures],
                     part: parts.Part | None = None) -> np.ndarray | None:
        """Shortlist by descriptor votes (``hits``: the index's answer for the first rows of
        ``features``), verify each, keep the best per item.

        Returns which rows of ``features`` are common in the bank (``frames.common_rows``).
        """
        if len(features) < verify.MIN_MATCHES:
            return None
        common = frames.common_rows(hits.distances, hits.vector_ids, len(features))
        votes = self._votes(hits)
        shortlist = [vid for vid, n in votes.most_common(SHORTLIST) if n >= MIN_VOTES]
        searched = len(hits.distances)
        if searched and common[:searched].mean() >= RARE_SHORTLIST_FROM:
            rare = self._votes(hits, ~common[:searched])
            shortlist += [vid for vid, n in rare.most_common(SHORTLIST + RARE_SHORTLIST)
                          if n >= MIN_VOTES and vid not in shortlist][:RARE_SHORTLIST]
        owners = self.store.catalog.vector_owners(shortlist)
        for vid in shortlist:
            if vid not in owners:
                continue  # deleted since the index was built
            vec, item, subject = owners[vid]
            reference = references.get(item.id)
            if reference is None:
                reference = references[item.id] = local.unpack(vec.data, item.width)
            self._keep(bank, features, desc, reference, flip, (item, subject), found, common, part)
        return common

    def _keep(self, bank: Bank, features: local.LocalFeatures, desc: np.ndarray | None,
              reference: local.LocalFeatures, flip: bool, owner: Any, found: Found,
              common: np.ndarray | None = None, part: parts.Part | None = None) -> None:
        result = verify.verify(features, reference, query_desc=desc,
                               query_width=features.frame[0] if flip else None)
        evidence = result.evidence(decide.LOCAL_PREFIX)
        check = None
        # Only evidence worth a look can be a template worth saying so (and a content region).
        if (result.inliers and result.homography is not None
                and decide.evidence_score(evidence, self.defaults, bank.policy) >= decide.REVIEW_SCORE):
            check = frames.check(features, features.rootsift() if desc is None else desc, reference,
                                 reference.rootsift(), result, common,
                                 query_width=features.frame[0] if flip else None)
            if check is not None:
                evidence.update(check.evidence(decide.LOCAL_PREFIX))
        score = decide.evidence_score(evidence, self.defaults, bank.policy)
        item_id = owner[0].id
        if item_id not in found or score > found[item_id][0]:
            found[item_id] = (score, result, owner, flip, check, part)

    def confirm(self, query: Query, bank: Bank, item_ids: list[int]) -> list[Candidate]:
        """Candidates for ``item_ids`` verified directly (no shortlist), frame test included.

        Called by the Matcher for hash matches without local evidence (see
        ``Matcher._confirm_hash_matches``); items without local features give nothing.
        """
        with self.store.catalog.session() as s:
            vids = list(s.scalars(select(Vector.id).where(Vector.item_id.in_(item_ids),
                                                          Vector.signal == local.SIFT.name)))
        owners = self.store.catalog.vector_owners(vids)
        features, desc = query_features(query, False)
        if len(features) < verify.MIN_MATCHES:
            return []
        common = query.cache.get(("sift_common", bank.id))
        found: Found = {}
        for vec, item, subject in owners.values():
            reference = local.unpack(vec.data, item.width)
            self._keep(bank, features, desc, reference, False, (item, subject), found, common)
        return self._candidates(bank, found, len(item_ids))

    def _parts_pass(self, query: Query, bank: Bank, found: Found,
                    references: dict[int, local.LocalFeatures], hits: Any,
                    common: np.ndarray | None) -> bool:
        """Collage cells, pasted rectangles and near-miss regions verified on their own
        (``matcher.search.parts``).

        Each part's features are computed again from its pixels with a budget of their own
        (:func:`part_features`) and verified against the few references that the query's own
        keypoints inside the part already voted for closely in step 1 (:meth:`_part_shortlist`),
        and against the near miss a part came from. The part is not looked up in the
        descriptor index again: that search (600 more rows per part) was most of the cost of
        every non-mated collage and paste, and a photo as a part of the query leaves close
        votes among the query's own keypoints (frames suite: a collage cell's photo led the
        close votes of its cell 32-286 to 9-29). Returns whether the query had parts.
        """
        first = query_features(query, False)[0]
        grey, _scale = local.feature_frame(query.picture, local.QUERY_SIDE)
        todo: list[tuple[parts.Part, int | None]] = [(p, None) for p in parts.grid_parts(grey, first.scale)]
        templated = any(c is not None and c.template for *_x, c, _p in found.values())
        if not todo and not templated:
            # A frame the bank shares holds its photo where the content pass looked already.
            todo = [(p, None) for p in parts.paste_parts(grey, first.scale)]
        near = sorted(((r.tight_inliers, item_id) for item_id, (_s, r, _o, flip, check, part)
                       in found.items() if part is None and not flip
                       and r.tight_inliers >= NEAR_MISS_INLIERS
                       and not (check is not None and check.template)), reverse=True)
        for _n, item_id in near[:MAX_NEAR_PARTS]:
            part = parts.near_miss_part(found[item_id][1], query.picture.original_size)
            if part is not None and all(part.box != p.box for p, _i in todo):
                todo.append((part, item_id))
        # Keypoints of a part were never looked up: the shared frame is where they lie.
        cells = frames.shared_cells(first, common) if common is not None else None
        for part, item_id in todo:
            if self._matched(found):
                break
            shortlist = self._part_shortlist(first, hits, common, part)
            if item_id is None and not shortlist:
                continue
            features = part_features(query, part)
            if len(features) < verify.MIN_MATCHES:
                continue
            desc = features.rootsift()
            part_common = (frames.in_shared_cells(features.xy, features.frame, cells)
                           if cells is not None else None)
            owners = self.store.catalog.vector_owners(shortlist)
            for vid in shortlist:
                if vid not in owners:
                    continue
                vec, item, subject = owners[vid]
                reference = references.get(item.id)
                if reference is None:
                    reference = references[item.id] = local.unpack(vec.data, item.width)
                self._keep(bank, features, desc, reference, False, (item, subject), found,
                           part_common, part)
            if item_id is not None:
                self._keep(bank, features, desc, references[item_id], False, found[item_id][2],
                           found, part_common, part)
        return bool(todo)

    @staticmethod
    def _part_shortlist(first: local.LocalFeatures, hits: Any, common: np.ndarray | None,
                        part: parts.Part) -> list[int]:
        """Vector ids that the query's keypoints inside ``part`` voted for closely in step 1.

        Votes at :data:`PART_VOTE_DISTANCE` (not the shortlist's loose VOTE_DISTANCE, at which
        every reference gets votes), from rows the bank does not share, one per row and
        reference; the best :data:`PART_SHORTLIST` with :data:`PART_MIN_VOTES` or more.
        """
        searched = len(hits.distances)
        x0, y0, x1, y1 = (v / first.scale for v in part.box)
        xy = first.xy[:searched]
        rows = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
        if common is not None:
            rows &= ~common[:searched]
        close = (hits.distances < PART_VOTE_DISTANCE) & (hits.vector_ids >= 0) & rows[:, None]
        r, c = np.nonzero(close)
        if not len(r):
            return []
        owners = hits.vector_ids[r, c].astype(np.int64)
        pairs = np.unique(r.astype(np.int64) * (int(owners.max()) + 1) + owners)
        ids, counts = np.unique(pairs % (int(owners.max()) + 1), return_counts=True)
        order = np.argsort(-counts, kind="stable")[:PART_SHORTLIST]
        return [int(ids[i]) for i in order if counts[i] >= PART_MIN_VOTES]

    def _content_pass(self, bank: Bank, features: local.LocalFeatures, desc: np.ndarray, hits: Any,
                      flip: bool, found: Found, references: dict[int, local.LocalFeatures]) -> None:
        """The query's own content, searched apart from a frame it shares with references.

        When verified references share only a template with the query (``frames``),
        the query's keypoints inside the region where they differ (its photo) are
        searched and verified on their own: the shared chrome no longer outvotes
        the photo in the shortlist, nor takes the homography.
        """
        boxes = [c.content_box for _s, _r, _o, f, c, _p in found.values()
                 if f == flip and c is not None and c.template and c.content_box is not None]
        if not boxes:
            return
        x0, y0, x1, y1 = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        searched = len(hits.distances)
        rows = np.flatnonzero((features.xy[:searched, 0] >= x0) & (features.xy[:searched, 0] <= x1)
                              & (features.xy[:searched, 1] >= y0) & (features.xy[:searched, 1] <= y1))
        if len(rows) < 2 * verify.MIN_MATCHES or len(rows) == len(features):
            return
        # The part's rows were searched with the whole query: their neighbours are reused.
        part_hits = feature_store.DescriptorHits(hits.distances[rows], hits.vector_ids[rows])
        self._search_pass(bank, subset(features, rows), part_hits, desc[rows], flip, found,
                          references)

    def _detail(self, query: Query, bank: Bank, found: Found,
                references: dict[int, local.LocalFeatures]) -> None:
        """Step 4 of the module docstring: the full-size query searched and near misses re-verified."""
        features = detail_features(query, False)
        if features is None:
            return
        near = [(item_id, owner, flip) for item_id, (score, _r, owner, flip, _c, _p) in found.items()
                if score >= decide.REVIEW_SCORE]
        desc = features.rootsift()
        common = self._search_pass(bank, features, self.indexes.get(bank.id).search(desc, NEIGHBOURS),
                                   desc, False, found, references)
        mirrored = local.mirrored(features) if any(flip for *_x, flip in near) else None
        for item_id, owner, flip in near:
            query_side = mirrored if flip and mirrored is not None else features
            self._keep(bank, query_side, None if flip else desc, references[item_id], flip, owner,
                       found, common)

    @staticmethod
    def _votes(hits: Any, rows: np.ndarray | None = None) -> Counter[int]:
        """One vote per (query descriptor, reference vector) with a close enough neighbour.

        ``rows`` (bool per query descriptor) limits the vote to those descriptors.
        """
        close = (hits.distances < VOTE_DISTANCE) & (hits.vector_ids >= 0)
        if rows is not None:
            close &= rows[:, None]
        rows, cols = np.nonzero(close)
        if not len(rows):
            return Counter()
        owners = hits.vector_ids[rows, cols]
        # One vote per distinct (query row, owner) pair.
        pairs = np.unique(rows.astype(np.int64) * (int(owners.max()) + 1) + owners)
        ids, counts = np.unique(pairs % (int(owners.max()) + 1), return_counts=True)
        return Counter(dict(zip(ids.tolist(), counts.tolist(), strict=True)))

    def _candidates(self, bank: Bank, found: Found, top: int) -> list[Candidate]:
        best: dict[Any, Candidate] = {}
        for _item_id, (score, result, (item, subject), flip, check, part) in found.items():
            if result.inliers == 0 and score <= 0:
                continue
            evidence = result.evidence(decide.LOCAL_PREFIX)
            if check is not None:
                evidence.update(check.evidence(decide.LOCAL_PREFIX))
            if flip:
                evidence["local_transform"] = "flip_y"
            if part is not None:
                evidence["local_part"] = list(part.box)
                evidence["local_part_kind"] = part.kind
            cand = Candidate(bank=bank.name, label=subject.label if subject else str(item.id),
                             subject_id=subject.id if subject else None,
                             pseudonym=subject.pseudonym if subject else None, item=item.id,
                             score=score, decision=decide.decision_for(score), evidence=evidence)
            key = subject.id if subject is not None else ("item", item.id)
            if key not in best or cand.score > best[key].score:
                best[key] = cand
        return sorted(best.values(), key=lambda c: (-c.score, c.label))[:top]


register_searcher(CopySearcher)
