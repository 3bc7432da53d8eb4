"""The frame test: is a verified local-feature match a copy of the photo, or only of its frame?

Ad sites and messengers wrap different photos in one frame: a phone screenshot
of one app, a site's listing card, a studio's watermark border. Two such
pictures agree, keypoint for keypoint and through one homography, on the
status bar, the icons and the fixed labels: a geometric check alone calls them
copies (two screenshots of one app showing a cathedral and a man verified with
162 inliers over 81% of both). What tells them apart is what the homography
says about the *rest* of the picture: where the reference shows content the
query shows too (both have keypoints there), a copy agrees there as well,
while two frames around different photos disagree over the whole photo.

So, for a verified pair (query -> reference homography ``H``):

1. every reference keypoint that ``H`` maps inside the query is *agreeing* when a
   query keypoint lands within :data:`NEAR_PX` of it with a close descriptor
   (squared RootSIFT distance under :data:`AGREE_DISTANCE`; inliers agree by
   definition), *differing* when query keypoints land there but none is close;
2. keypoints are pooled in the reference's :data:`CELLS` x :data:`CELLS` grid: a
   cell differs when at least :data:`MIN_CELL_DIFFER` of its keypoints differ and
   under :data:`CELL_AGREE_SHARE` agree (a textured part of both pictures that
   shows something else in each) or when the query has :data:`TEXTURE_KEYPOINTS`
   there and the reference (almost) none (detail against a flat sky), and agrees when
   some of its keypoints agree otherwise;
3. the shared part is bank-level evidence too: an inlier whose query descriptor
   has close neighbours in :data:`COMMON_OWNERS` or more distinct items of the bank
   lies on something many items share (chrome, a card, a border); the share of
   such inliers is ``shared_inliers``.

A pair is *same template, different photo* when at least :data:`MIN_DIFFER_CELLS`
cells differ (and :data:`DIFFER_RATIO` of as many as agree), or the inliers span
under :data:`SMALL_PATCH` of both pictures, and at least :data:`MIN_SHARED_INLIERS`
of the inliers lie on what the bank shares. Its evidence says so
(``local_template``) and its score stays below ``review``
(:func:`matcher.search.decide.evidence_score`); the query's differing region
(``local_content_region``: where its own photo is) is searched on its own
(:mod:`matcher.search.copies`). The same candidates feed index-time linking
(:mod:`matcher.networks.links`), so one rule decides for queries and for the crawl.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from indexer.signals.local import LocalFeatures
from matcher.search.verify import Verification

TEMPLATE = "same template, different photo"
# A query keypoint this close (reference frame pixels) to where H puts a reference keypoint.
NEAR_PX = 6.0
# Squared L2 between unit RootSIFT rows under which two keypoints show the same thing
# (verified inliers: 99% under 0.15; keypoints of different content: median 0.45-0.65).
AGREE_DISTANCE = 0.12
CELLS = 8
# (2, not 3: at a border frame of another aspect a 760-px query puts a keypoint within NEAR_PX
# of only ~1 in 4 reference keypoints, so a cell holds 2 comparable ones.)
MIN_CELL_DIFFER = 2
# A cell agrees when this share of its reference keypoints with query keypoints near agree.
CELL_AGREE_SHARE = 0.25
# Keypoints in a cell of one picture, where the other has at most one, that make it differ.
TEXTURE_KEYPOINTS = 8
# Agreeing cells count only agreement on descriptors the bank does not share. Networks crawl
# (bench/networks_bench.py --app-screenshots): screenshots of one app around different blurry
# LFW faces 4-7 differing cells against 0-6 such agreeing ones; reposts of one photo that the
# bank holds many times 4-10 differing against 14-16 agreeing (77 of 80 sampled still link).
MIN_DIFFER_CELLS = 4
DIFFER_RATIO = 0.75
# A pair with most inliers on the shared region needs this many cells agreeing on its own
# content to be a copy (a repost in the same frame: 29 in tests/test_frames.py).
MIN_OWN_CELLS = 3
# Inliers on what the bank shares. Frames suite: frame-only pairs 0.75-1.0; copies of the photo
# 0-0.21, a repost in the same frame 0.49 (half its inliers are on the frame). Copydet: a
# rotated ScanNet frame 0.41 (generic indoor descriptors are close to a few other photos').
MIN_SHARED_INLIERS = 0.6
# Inlier hull share (of both pictures) under which inliers on shared descriptors are a patch
# of the frame, not a photo.
SMALL_PATCH = 0.05
# ... of which this share on the shared region is enough (not MIN_SHARED_INLIERS): a line of a
# messenger's caption that two items happen to share verified with 27 tight inliers on 0.2% of
# the query, half of them on descriptors the bank shares (frames suite, app_chat).
SMALL_PATCH_SHARED = 0.4
# The shared region of the query: its keypoints on common descriptors, and every keypoint of a
# QUERY_CELLS x QUERY_CELLS cell of the query where at least REGION_SHARE of the keypoints are
# common. Per descriptor, commonness is noisy on the frame itself (a site card's fixed logo
# bar: 70% of its inliers common, the rest just over COMMON_DISTANCE or crowded out of the
# NEIGHBOURS), and per-post text that only two items share (a caption, a price) is not common
# at all, though it sits among the frame's common keypoints (frames suite: a card around a
# kite in the sky agreed with a card around a stormy sky on 11 cells of such text, 217 tight
# inliers, 75% of them common).
QUERY_CELLS = 16
REGION_SHARE = 0.5
# A query descriptor with neighbours closer than COMMON_DISTANCE (squared RootSIFT) in this many
# distinct bank items is common. Measured on the frames suite: inliers of frame-only pairs
# 87-92% common, inliers of a photo found in a collage or another frame 0%; at the vote
# distance (0.5) every row of every query is "common".
COMMON_OWNERS = 3
COMMON_DISTANCE = 0.1


@dataclass(frozen=True)
class FrameCheck:
    """What the frame test found for one verified pair (see the module docstring)."""

    agree_cells: int  # -1: not tested (too few inliers on what the bank shares)
    differ_cells: int
    shared_inliers: float
    template: bool
    # (left, top, right, bottom) in the query's frame pixels: the part of the query whose
    # content differs from the reference's (its own photo when ``template``).
    content_box: tuple[int, int, int, int] | None = None
    # The same box in the query picture's original pixels (unmirrored), for the evidence.
    content_region: tuple[int, int, int, int] | None = None

    def evidence(self, prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {f"{prefix}_shared_inliers": round(self.shared_inliers, 3)}
        if self.agree_cells >= 0:
            out[f"{prefix}_agree_cells"] = self.agree_cells
            out[f"{prefix}_differ_cells"] = self.differ_cells
        if self.template:
            out[f"{prefix}_template"] = TEMPLATE
            if self.content_region is not None:
                out[f"{prefix}_content_region"] = list(self.content_region)
        return out


def _query_cells(xy: np.ndarray, frame: tuple[int, int]) -> np.ndarray:
    qw, qh = frame
    cx = np.clip((xy[:, 0] * QUERY_CELLS / max(qw, 1)).astype(np.int64), 0, QUERY_CELLS - 1)
    cy = np.clip((xy[:, 1] * QUERY_CELLS / max(qh, 1)).astype(np.int64), 0, QUERY_CELLS - 1)
    return cy * QUERY_CELLS + cx


def shared_cells(query: LocalFeatures, common: np.ndarray) -> np.ndarray:
    """Per cell of the query's QUERY_CELLS x QUERY_CELLS grid: mostly common keypoints."""
    cell = _query_cells(query.xy, query.frame)
    total = np.bincount(cell, minlength=QUERY_CELLS * QUERY_CELLS)
    shared = np.bincount(cell[common], minlength=QUERY_CELLS * QUERY_CELLS)
    return (shared > 0) & (shared >= REGION_SHARE * np.maximum(total, 1))


def in_shared_cells(xy: np.ndarray, frame: tuple[int, int], cells: np.ndarray) -> np.ndarray:
    """Which points (query-frame pixels) lie in the shared cells ``cells`` (:func:`shared_cells`).

    Keypoints computed again on a part of the query (``matcher.search.copies``) were never
    looked up in the bank: where they lie tells whether they are on the shared frame.
    """
    return cells[_query_cells(xy, frame)]


def shared_region(query: LocalFeatures, common: np.ndarray) -> np.ndarray:
    """Query rows in the shared region (see :data:`REGION_SHARE`): common, or in a cell of
    mostly common keypoints."""
    return common | in_shared_cells(query.xy, query.frame, shared_cells(query, common))


def _project(points: np.ndarray, h: np.ndarray) -> np.ndarray:
    if not len(points):
        return points.reshape(0, 2)
    return cv2.perspectiveTransform(points.reshape(-1, 1, 2).astype(np.float64), h).reshape(-1, 2)


def check(query: LocalFeatures, query_desc: np.ndarray, reference: LocalFeatures,
          reference_desc: np.ndarray, result: Verification,
          common: np.ndarray | None = None, query_width: int | None = None) -> FrameCheck | None:
    """The frame test of ``result`` (a verification of ``query`` against ``reference``).

    ``common`` marks the query rows whose descriptor is common in the bank (see
    :func:`common_rows`); None counts none as common. ``query_width`` marks a
    mirrored query (as in :func:`matcher.verify.verify`). None when ``result``
    has no homography to test.
    """
    h = result.homography
    if h is None or result.inlier_rows is None or not len(result.inlier_rows):
        return None
    in_shared = shared_region(query, common) if common is not None else None
    shared = float(in_shared[result.inlier_rows[:, 0]].mean()) if in_shared is not None else 0.0
    small = max(result.coverage, result.query_coverage) < SMALL_PATCH
    if shared < (SMALL_PATCH_SHARED if small else MIN_SHARED_INLIERS):
        # Nothing the bank shares: not a template whatever the cells say, and the cell test
        # (most of this function's cost) is skipped; nearly every copy ends here.
        return FrameCheck(-1, -1, shared, False)
    try:
        h_inv = np.linalg.inv(h)
    except np.linalg.LinAlgError:
        return None
    qw, qh = query.frame
    rw, rh = reference.frame
    ref_in_query = _project(reference.xy, h_inv)
    inside = np.flatnonzero((ref_in_query[:, 0] >= 0) & (ref_in_query[:, 0] < qw)
                            & (ref_in_query[:, 1] >= 0) & (ref_in_query[:, 1] < qh))
    query_in_ref = _project(query.xy, h)
    agree = np.zeros(len(reference), bool)
    # Agreement on a descriptor the bank does not share: evidence of the pair's own content.
    own = np.zeros(len(reference), bool)
    near_any = np.zeros(len(reference), bool)
    if len(inside) and len(query_in_ref):
        r = reference.xy[inside].astype(np.float32)
        q = query_in_ref.astype(np.float32)
        d2 = (r * r).sum(axis=1)[:, None] + (q * q).sum(axis=1)[None, :] - 2.0 * (r @ q.T)
        rows, cols = np.nonzero(d2 < NEAR_PX ** 2)
        if len(rows):
            dist = 2.0 - 2.0 * np.einsum("ij,ij->i", reference_desc[inside[rows]], query_desc[cols])
            near_any[inside[rows]] = True
            close = dist < AGREE_DISTANCE
            agree[inside[rows[close]]] = True
            own[inside[rows[close & ~in_shared[cols]]]] = True
    agree[result.inlier_rows[:, 1]] = True
    near_any[result.inlier_rows[:, 1]] = True
    own[result.inlier_rows[~in_shared[result.inlier_rows[:, 0]], 1]] = True
    cx = np.minimum((reference.xy[:, 0] * CELLS / max(rw, 1)).astype(np.int64), CELLS - 1)
    cy = np.minimum((reference.xy[:, 1] * CELLS / max(rh, 1)).astype(np.int64), CELLS - 1)
    cell = cy * CELLS + cx
    n_agree = np.bincount(cell[agree], minlength=CELLS * CELLS)
    n_differ = np.bincount(cell[near_any & ~agree], minlength=CELLS * CELLS)
    # Shares, not "any": where the query is dense, a chance pair lands close in some cells.
    share = n_agree / np.maximum(n_agree + n_differ, 1)
    differ_cells = (share < CELL_AGREE_SHARE) & (n_differ >= MIN_CELL_DIFFER)
    # Texture in the query only: the reference keeps keypoints in every textured cell (they
    # are spread over this grid), so a cell where many query keypoints land and the reference
    # has (almost) none shows detail in the query and flat content in the reference.
    q_in = (query_in_ref[:, 0] >= 0) & (query_in_ref[:, 0] < rw) & (query_in_ref[:, 1] >= 0) \
        & (query_in_ref[:, 1] < rh)
    qx = np.minimum((query_in_ref[q_in, 0] * CELLS / max(rw, 1)).astype(np.int64), CELLS - 1)
    qy = np.minimum((query_in_ref[q_in, 1] * CELLS / max(rh, 1)).astype(np.int64), CELLS - 1)
    n_query = np.bincount(qy * CELLS + qx, minlength=CELLS * CELLS)
    n_ref = np.bincount(cell[np.isin(np.arange(len(reference)), inside)], minlength=CELLS * CELLS)
    # Only this direction: the query keeps its strongest keypoints, not some in every cell, so
    # a cell without query keypoints may still be textured (measured: a repost in the same
    # frame had 26 such cells).
    differ_cells |= (n_query >= TEXTURE_KEYPOINTS) & (n_ref <= 1)
    # Cells that agree on what the bank shares (the frame's chrome) say nothing about the photo:
    # a cell agrees on the pair's own content when most of its agreeing keypoints are its own.
    n_own = np.bincount(cell[own], minlength=CELLS * CELLS)
    agree_cells = (n_own > 0) & (2 * n_own >= n_agree) & ~differ_cells
    n_a, n_d = int(agree_cells.sum()), int(differ_cells.sum())
    # A small patch (a logo, a line of the frame's text) on shared descriptors is the frame too,
    # however many inliers it packs: 31 tight inliers on 0.3% of a border's lettering measured.
    # Nothing of the pair's own agrees beyond the frame: no evidence of the photo at all (two
    # flat photos, or a flat one and a textured one, in one site's card with the same caption).
    template = (n_d >= MIN_DIFFER_CELLS and n_d >= DIFFER_RATIO * n_a) or small or n_a < MIN_OWN_CELLS
    box = _content_box(np.flatnonzero(differ_cells), (rw, rh), h_inv, (qw, qh)) if n_d else None
    region = None
    if box is not None:
        left, right = (box[0], box[2]) if query_width is None else (query_width - box[2],
                                                                    query_width - box[0])
        region = (int(left * query.scale), int(box[1] * query.scale), int(np.ceil(right * query.scale)),
                  int(np.ceil(box[3] * query.scale)))
    return FrameCheck(n_a, n_d, shared, template, box, region)


def _content_box(cells: np.ndarray, ref_frame: tuple[int, int], h_inv: np.ndarray,
                 query_frame: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The query-frame box around the differing reference cells."""
    rw, rh = ref_frame
    corners = []
    for c in cells.tolist():
        y, x = divmod(c, CELLS)
        x0, x1 = x * rw / CELLS, (x + 1) * rw / CELLS
        y0, y1 = y * rh / CELLS, (y + 1) * rh / CELLS
        corners += [(x0, y0), (x1, y0), (x0, y1), (x1, y1)]
    pts = _project(np.array(corners, np.float64), h_inv)
    qw, qh = query_frame
    lo = np.clip(pts.min(axis=0), 0, [qw, qh])
    hi = np.clip(pts.max(axis=0), 0, [qw, qh])
    if hi[0] - lo[0] < 1 or hi[1] - lo[1] < 1:
        return None
    return (int(lo[0]), int(lo[1]), int(np.ceil(hi[0])), int(np.ceil(hi[1])))


def common_rows(distances: np.ndarray, vector_ids: np.ndarray, n_rows: int,
                close: float = COMMON_DISTANCE) -> np.ndarray:
    """Query rows whose neighbours within ``close`` belong to :data:`COMMON_OWNERS`+ distinct items.

    ``distances`` / ``vector_ids`` are the descriptor index's answer for the
    first rows of the query (one vector per item); rows past them count as not common.
    """
    out = np.zeros(n_rows, bool)
    if not distances.size:
        return out
    ids = np.where((distances < close) & (vector_ids >= 0), vector_ids, -1)
    ids = np.sort(ids, axis=1)
    distinct = ((np.diff(ids, axis=1) != 0) & (ids[:, 1:] >= 0)).sum(axis=1) + (ids[:, 0] >= 0)
    out[:len(distinct)] = distinct >= COMMON_OWNERS
    return out
