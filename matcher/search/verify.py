"""Geometric verification: do the shared keypoints of two images agree on one mapping?

Two unrelated photos share a handful of similar-looking keypoints by chance
(foliage, text, windows), scattered at random. A copy, however cropped,
padded, rotated or pasted into a screenshot, maps its keypoints onto the
original through one plane-to-plane transform. So candidates are confirmed by
fitting a homography with OpenCV's USAC (MAGSAC++ scoring, fixed random seed
so that answers are reproducible) and counting the correspondences that agree:
the inliers. The inlier count, the matched region on both images and the
share of the reference it covers go into the candidate's evidence, and so do
the drawings a reviewer checks them by: up to :data:`MAX_PAIRS` inlier
correspondences (query point, reference point, in original pixels) and each
picture's outline carried through the fitted homography onto the other one
(a quadrilateral: a rotated copy shows as a rotated box, not an axis-aligned
one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from indexer.signals.local import LocalFeatures, mutual_matches

# Reprojection tolerance in pixels of the reference's feature frame (640 px long side).
REPROJ_PX = 6.0
RATIO = 0.85
MIN_MATCHES = 6
# An exact copy maps its keypoints within a pixel or two; a look-alike (another photo of the
# same face, the same product) only fits loosely. Inliers this close are counted apart.
TIGHT_PX = 2.0
# A copy may shrink (screenshot, collage) or enlarge (crop) the picture, stretch it
# (aspect changes) and mirror is handled by flipped queries, so the fitted map must
# keep orientation and stay within these bounds; anything else is a chance fit.
SCALE_RANGE = (1 / 25, 25.0)
MAX_ANISOTROPY = 4.0
# Inlier correspondences kept in the evidence for drawing (the most similar descriptors first):
# enough to see the pattern of agreement, few enough that a stored candidate stays small.
MAX_PAIRS = 50


@dataclass(frozen=True)
class Verification:
    """What the geometric check found between a query and one reference."""

    matches: int
    inliers: int
    # (left, top, right, bottom) in each image's original pixels; None without inliers.
    region: tuple[int, int, int, int] | None = None
    query_region: tuple[int, int, int, int] | None = None
    # Share of the reference frame, and of the query frame, covered by the inliers'
    # convex hull. A copy fills most of one of them: a crop most of the query, a
    # screenshot or collage most of the reference. Two photos of one face fill neither.
    coverage: float = 0.0
    query_coverage: float = 0.0
    tight_inliers: int = 0
    homography: np.ndarray | None = field(default=None, repr=False)
    # Up to MAX_PAIRS inlier correspondences [qx, qy, rx, ry] in original pixels.
    pairs: tuple[tuple[int, int, int, int], ...] = ()
    # The query's outline mapped onto the reference, and the reference's onto the query:
    # four (x, y) corners in that image's original pixels; None when the map sends a corner
    # to infinity (strong perspective) or absurdly far away.
    quad: tuple[tuple[int, int], ...] | None = None
    query_quad: tuple[tuple[int, int], ...] | None = None
    # (query row, reference row) of every inlier, for the frame test (matcher.search.frames).
    inlier_rows: np.ndarray | None = field(default=None, repr=False)

    def evidence(self, prefix: str = "local") -> dict[str, Any]:
        out: dict[str, Any] = {f"{prefix}_matches": self.matches, f"{prefix}_inliers": self.inliers,
                               f"{prefix}_tight_inliers": self.tight_inliers,
                               f"{prefix}_coverage": round(self.coverage, 3),
                               f"{prefix}_query_coverage": round(self.query_coverage, 3)}
        if self.region is not None:
            out[f"{prefix}_region"] = list(self.region)
            out[f"{prefix}_query_region"] = list(self.query_region or ())
        if self.pairs:
            out[f"{prefix}_pairs"] = [list(p) for p in self.pairs]
        if self.quad is not None:
            out[f"{prefix}_quad"] = [list(c) for c in self.quad]
        if self.query_quad is not None:
            out[f"{prefix}_query_quad"] = [list(c) for c in self.query_quad]
        return out


NO_MATCH = Verification(0, 0)


def plausible(h: np.ndarray | None) -> bool:
    """True when ``h`` could be a copy's transform (orientation kept, bounded scale and shear)."""
    if h is None or not np.all(np.isfinite(h)) or abs(h[2, 2]) < 1e-12:
        return False
    h = h / h[2, 2]
    a = h[:2, :2]
    det = float(np.linalg.det(a))
    if det <= 0:
        return False
    s = np.linalg.svd(a, compute_uv=False)
    scale = float(np.sqrt(det))
    return SCALE_RANGE[0] <= scale <= SCALE_RANGE[1] and float(s[0] / max(s[1], 1e-12)) <= MAX_ANISOTROPY


def _usac_params() -> cv2.UsacParams:
    params = cv2.UsacParams()
    params.threshold = REPROJ_PX
    params.confidence = 0.999
    params.maxIterations = 2000
    params.randomGeneratorState = 12345  # reproducible answers for the same inputs
    params.sampler = cv2.SAMPLING_UNIFORM
    params.score = cv2.SCORE_METHOD_MAGSAC
    params.loMethod = cv2.LOCAL_OPTIM_SIGMA
    params.loIterations = 10
    params.loSampleSize = 14
    params.final_polisher = cv2.MAGSAC
    params.final_polisher_iterations = 10
    params.isParallel = False
    return params


def _box(points: np.ndarray, scale: float) -> tuple[int, int, int, int]:
    lo = np.floor(points.min(axis=0) * scale)
    hi = np.ceil(points.max(axis=0) * scale)
    return (int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))


def verify(query: LocalFeatures, reference: LocalFeatures, *,
           query_desc: np.ndarray | None = None, reference_desc: np.ndarray | None = None,
           query_width: int | None = None) -> Verification:
    """Match ``query`` to ``reference`` and count the correspondences one homography explains.

    ``query_desc`` / ``reference_desc`` are their RootSIFT rows when the caller
    already has them. ``query_width`` (frame pixels) marks a query extracted
    from the mirrored frame: its region is reported in unmirrored coordinates.
    """
    qd = query.rootsift() if query_desc is None else query_desc
    rd = reference.rootsift() if reference_desc is None else reference_desc
    pairs = mutual_matches(qd, rd, RATIO)
    if len(pairs) < MIN_MATCHES:
        return Verification(len(pairs), 0)
    src = query.xy[pairs[:, 0]].astype(np.float64)
    dst = reference.xy[pairs[:, 1]].astype(np.float64)
    h, mask = cv2.findHomography(src, dst, params=_usac_params())
    if h is None or mask is None or not plausible(h):
        return Verification(len(pairs), 0)
    keep = mask.ravel().astype(bool)
    inliers = int(keep.sum())
    if inliers < 4:
        return Verification(len(pairs), inliers)
    projected = cv2.perspectiveTransform(src[keep].reshape(-1, 1, 2), h).reshape(-1, 2)
    tight = int((np.linalg.norm(projected - dst[keep], axis=1) <= TIGHT_PX).sum())
    ref_pts = dst[keep].astype(np.float32)
    q_pts = src[keep].astype(np.float32)
    if query_width is not None:
        q_pts = q_pts.copy()
        q_pts[:, 0] = query_width - 1 - q_pts[:, 0]
    similarity = (qd[pairs[keep, 0]] * rd[pairs[keep, 1]]).sum(axis=1)
    strongest = np.argsort(-similarity, kind="stable")[:MAX_PAIRS]
    shown = tuple((round(float(q[0] * query.scale)), round(float(q[1] * query.scale)),
                   round(float(r[0] * reference.scale)), round(float(r[1] * reference.scale)))
                  for q, r in zip(q_pts[strongest], ref_pts[strongest], strict=True))
    quad = _outline(h, query.frame, reference.frame, reference.scale, mirror_width=query_width)
    query_quad = _outline(np.linalg.inv(h), reference.frame, query.frame, query.scale,
                          unmirror_width=query_width)
    return Verification(len(pairs), inliers, _box(ref_pts, reference.scale),
                        _box(q_pts, query.scale), _hull_share(ref_pts, reference.frame),
                        _hull_share(q_pts, query.frame), tight, h, shown, quad, query_quad, pairs[keep])


def _outline(h: np.ndarray, source: tuple[int, int], target: tuple[int, int], scale: float, *,
             mirror_width: int | None = None, unmirror_width: int | None = None
             ) -> tuple[tuple[int, int], ...] | None:
    """The ``source`` frame's corners carried by ``h`` into the ``target`` frame, in original pixels.

    ``mirror_width`` / ``unmirror_width`` undo the mirrored query frame of a
    flipped search on the source or the target side, so the outline is drawn
    on the picture as stored. None when a corner leaves every sensible range.
    """
    w, ht = float(source[0]), float(source[1])
    corners = np.array([[0, 0], [w, 0], [w, ht], [0, ht]], np.float64)
    if mirror_width is not None:  # the corners of the unmirrored frame, in mirrored coordinates
        corners[:, 0] = mirror_width - 1 - corners[:, 0]
    ones = np.ones((4, 1))
    mapped = np.hstack([corners, ones]) @ h.T
    if not np.all(np.isfinite(mapped)) or np.any(mapped[:, 2] <= 1e-9):
        return None
    xy = mapped[:, :2] / mapped[:, 2:3]
    if unmirror_width is not None:
        xy[:, 0] = unmirror_width - 1 - xy[:, 0]
    limit = 4.0 * max(target)
    if np.any(np.abs(xy) > limit):
        return None
    return tuple((round(float(x * scale)), round(float(y * scale))) for x, y in xy)


def _hull_share(points: np.ndarray, frame: tuple[int, int]) -> float:
    hull = cv2.convexHull(points)
    area = float(cv2.contourArea(hull)) if len(hull) >= 3 else 0.0
    return min(area / float(max(frame[0] * frame[1], 1)), 1.0)
