"""The parts of a query picture that hold a photo of their own: collage cells and near-miss regions.

A query's 1000 strongest keypoints are spread over the whole picture. When the
photo a bank holds is one cell of a 2x2 or 1x3 collage, or is pasted at a third
of the width onto another picture, it keeps only the share of those keypoints
its area and texture earn (too few, measured: 5 of 40 collage cells and 10 of 40
pastes of the frames suite were missed). Searching that part on its own, with
its features computed again from its own pixels and a keypoint budget of its
own, gives it back the detail (:mod:`matcher.search.copies`). Two ways to know
the parts without knowing the photo:

- :func:`grid_parts`: the cells of a collage, cut along gutters (straight bands of
  one colour that cross the whole picture, or the whole of a band already cut),
  two levels deep (a 2x2 grid, a 1x3 strip, a large cell beside two small ones).
  Only cells that look like photos count (texture over most of the cell), and
  only when there are two or more: a meme or a screenshot has bands of one colour
  too, around one photo and strips of text, and needs no part search.
- :func:`near_miss_parts`: where a verified near miss puts the reference in the
  query (its outline mapped onto the query, or its inliers' box widened): a few
  inliers clustered on a small part of the query are what a small paste leaves.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from matcher.search.verify import Verification

# Standard deviation (grey levels) under which a line of pixels is one colour (a gutter);
# JPEG noise on a white gap stays under 1.5, a line through a photo is over 10.
GUTTER_STD = 3.0
# Gutters narrower than this (grey-frame pixels) are a seam, not a gap between photos.
MIN_GUTTER = 2
# A cell shorter than this share of the picture's side on either axis is a strip of text or
# chrome, not a photo.
MIN_CELL_SIDE = 0.15
# Blocks of BLOCK px with a standard deviation over BLOCK_STD are textured; a photo cell has
# textured blocks over at least PHOTO_TEXTURE of its area (text on a plain bar: under 0.3).
BLOCK = 16
BLOCK_STD = 6.0
PHOTO_TEXTURE = 0.5
# Texture share of a further cell of a grid that two photo cells have established.
MIN_TEXTURE = 0.1
MAX_GRID_PARTS = 9
# Paste rectangles: grey-level steps of at least EDGE between neighbouring pixels make edges;
# a side is a straight run of them at least PASTE_SIDE of the picture's short side long;
# two sides meet within CORNER_PX; the rectangle's sides have edges along at least
# SIDE_COVER of their length (three of them) and FAINT_COVER (the fourth).
EDGE = 12
PASTE_SIDE = 0.1
CORNER_PX = 6
SIDE_COVER = 0.6
FAINT_COVER = 0.25
MAX_PASTE_PARTS = 2
# Near misses whose reference outline covers at most this share of the query are parts.
MAX_PART_SHARE = 0.5
# ... and at least this share (a smaller box is a logo or a line of text).
MIN_PART_SHARE = 0.01
# Inlier box widened by this share of its size on each side when no outline is known.
WIDEN = 0.3


@dataclass(frozen=True)
class Part:
    """A box of the query, (left, top, right, bottom) in its original pixels, and why it is one."""

    box: tuple[int, int, int, int]
    kind: str  # "collage cell" | "pasted photo" | "near miss"


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in a 1-D bool array."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _segments(uniform: np.ndarray) -> list[tuple[int, int]]:
    """The spans between gutters (runs of uniform lines), edge runs trimmed; one span if none."""
    n = len(uniform)
    spans, start = [], 0
    for a, b in _runs(uniform):
        if a == 0:
            start = b
        elif b == n:
            spans.append((start, a))
            start = n
        elif b - a >= MIN_GUTTER:
            spans.append((start, a))
            start = b
    if start < n:
        spans.append((start, n))
    return [(s, e) for s, e in spans if e > s]


def _split(grey: np.ndarray, box: tuple[int, int, int, int], axis: int) -> list[tuple[int, int, int, int]]:
    """``box`` cut along the gutters that cross all of it (axis 0: vertical gutters)."""
    x0, y0, x1, y1 = box
    region = grey[y0:y1, x0:x1].astype(np.float32)
    uniform = region.std(axis=0 if axis == 0 else 1) < GUTTER_STD
    spans = _segments(uniform)
    if axis == 0:
        return [(x0 + s, y0, x0 + e, y1) for s, e in spans]
    return [(x0, y0 + s, x1, y0 + e) for s, e in spans]


def _texture(grey: np.ndarray, box: tuple[int, int, int, int], frame: tuple[int, int]) -> float:
    """Share of ``box`` in textured blocks; 0 for a box too small on either axis to be a cell."""
    x0, y0, x1, y1 = box
    w, h = frame
    if x1 - x0 < MIN_CELL_SIDE * w or y1 - y0 < MIN_CELL_SIDE * h:
        return 0.0
    region = grey[y0:y1, x0:x1].astype(np.float32)
    bh, bw = region.shape[0] // BLOCK, region.shape[1] // BLOCK
    if not bh or not bw:
        return 0.0
    blocks = region[:bh * BLOCK, :bw * BLOCK].reshape(bh, BLOCK, bw, BLOCK).std(axis=(1, 3))
    return float((blocks > BLOCK_STD).mean())


def grid_parts(grey: np.ndarray, scale: float) -> list[Part]:
    """The cells of a collage in ``grey`` (a frame of the query, ``scale`` frame -> original
    pixels), largest first; empty unless two or more cells look like photos.

    Once two cells make it a collage, the other cells of photo size count too if they
    hold some texture (a flat studio portrait has textured blocks on a third of its area).
    """
    h, w = grey.shape[:2]
    best: list[tuple[int, int, int, int]] = []
    for first in (0, 1):
        cells = []
        for strip in _split(grey, (0, 0, w, h), first):
            cells += _split(grey, strip, 1 - first)
        texture = [_texture(grey, c, (w, h)) for c in cells]
        if sum(t >= PHOTO_TEXTURE for t in texture) < 2:
            continue
        kept = [c for c, t in zip(cells, texture, strict=True) if t >= MIN_TEXTURE]
        if len(kept) > len(best):
            best = kept
    best.sort(key=lambda c: -(c[2] - c[0]) * (c[3] - c[1]))
    return [Part(tuple(int(round(v * scale)) for v in c), "collage cell")  # type: ignore[misc]
            for c in best[:MAX_GRID_PARTS]]


def near_miss_part(result: Verification, query_size: tuple[int, int]) -> Part | None:
    """The query box where ``result`` (a verified near miss) puts the reference, if it is small."""
    qw, qh = query_size
    if result.query_quad is not None:
        pts = np.array(result.query_quad, np.float64)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
    elif result.query_region is not None:
        x0, y0, x1, y1 = result.query_region
        lo, hi = np.array([x0, y0], np.float64), np.array([x1, y1], np.float64)
        pad = (hi - lo) * WIDEN
        lo, hi = lo - pad, hi + pad
    else:
        return None
    lo = np.clip(lo, 0, [qw, qh])
    hi = np.clip(hi, 0, [qw, qh])
    area = float(np.prod(np.maximum(hi - lo, 0)))
    if not MIN_PART_SHARE * qw * qh <= area <= MAX_PART_SHARE * qw * qh:
        return None
    return Part((int(lo[0]), int(lo[1]), int(np.ceil(hi[0])), int(np.ceil(hi[1]))), "near miss")


def _edges(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vertical, horizontal) edge maps: steps of :data:`EDGE` between neighbours, uint8 0/1."""
    g = cv2.GaussianBlur(grey, (3, 3), 0).astype(np.int16)
    vertical = np.zeros(g.shape, np.uint8)
    horizontal = np.zeros(g.shape, np.uint8)
    vertical[:, 1:] = np.abs(np.diff(g, axis=1)) >= EDGE
    horizontal[1:, :] = np.abs(np.diff(g, axis=0)) >= EDGE
    return vertical, horizontal


def _lines(edges: np.ndarray, length: int, vertical: bool) -> list[tuple[float, int, int]]:
    """Straight runs of ``edges`` at least ``length`` long: (position across, start, end along)."""
    across = np.ones((3, 1) if vertical else (1, 3), np.uint8)  # bridge one-pixel gaps
    along = np.ones((length, 1) if vertical else (1, length), np.uint8)
    runs = cv2.morphologyEx(cv2.dilate(edges, across), cv2.MORPH_OPEN, along)
    _n, _labels, stats, _c = cv2.connectedComponentsWithStats(runs, connectivity=8)
    out = []
    for x, y, w, h, _area in stats[1:].tolist():
        if vertical and w <= 6:
            out.append((x + w / 2, y, y + h))
        elif not vertical and h <= 6:
            out.append((y + h / 2, x, x + w))
    return out


def _cover(edges: np.ndarray, vertical: bool, pos: float, a: float, b: float) -> float:
    """Share of the side at ``pos`` from ``a`` to ``b`` with an edge within two pixels of it."""
    p, a, b = int(round(pos)), int(a), int(b)
    band = edges[a:b, max(0, p - 2):p + 3] if vertical else edges[max(0, p - 2):p + 3, a:b]
    if not band.size:
        return 0.0
    return float(band.max(axis=1 if vertical else 0).mean())


def paste_parts(grey: np.ndarray, scale: float) -> list[Part]:
    """Rectangles in ``grey`` (a frame of the query, ``scale`` frame -> original pixels) that
    look like a photo pasted onto the picture, best first (at most :data:`MAX_PASTE_PARTS`)."""
    h, w = grey.shape[:2]
    vertical, horizontal = _edges(grey)
    length = max(8, int(PASTE_SIDE * min(h, w)))
    columns = _lines(vertical, length, True)
    rows = _lines(horizontal, length, False)
    proposals = set()
    for hy, hx0, hx1 in rows:  # a corner: two sides that meet
        for vx, vy0, vy1 in columns:
            if (min(abs(hx0 - vx), abs(hx1 - vx)) <= CORNER_PX
                    and min(abs(vy0 - hy), abs(vy1 - hy)) <= CORNER_PX):
                proposals.add((min(hx0, vx), min(vy0, hy), max(hx1, vx), max(vy1, hy)))
    for lines, upright in ((columns, True), (rows, False)):  # two parallel sides of one extent
        for i, (p, a0, a1) in enumerate(lines):
            for q, b0, b1 in lines[i + 1:]:
                overlap = min(a1, b1) - max(a0, b0)
                if overlap < 0.7 * max(a1 - a0, b1 - b0) or abs(p - q) < length:
                    continue
                lo, hi = (a0 + b0) / 2, (a1 + b1) / 2
                box = (min(p, q), lo, max(p, q), hi) if upright else (lo, min(p, q), hi, max(p, q))
                proposals.add(box)
    found: list[tuple[float, tuple[int, int, int, int]]] = []
    for x0, y0, x1, y1 in proposals:
        share = (x1 - x0) * (y1 - y0) / float(w * h)
        if not (MIN_PART_SHARE <= share <= MAX_PART_SHARE
                and x1 - x0 >= MIN_CELL_SIDE * w and y1 - y0 >= MIN_CELL_SIDE * h):
            continue
        # A side along the picture's border is no edge of the picture: it counts as there.
        sides = sorted([_cover(vertical, True, x0, y0, y1) if x0 > 2 else 1.0,
                        _cover(vertical, True, x1, y0, y1) if x1 < w - 3 else 1.0,
                        _cover(horizontal, False, y0, x0, x1) if y0 > 2 else 1.0,
                        _cover(horizontal, False, y1, x0, x1) if y1 < h - 3 else 1.0])
        if sides[0] >= FAINT_COVER and sides[1] >= SIDE_COVER:
            found.append((sum(sides), (int(x0), int(y0), int(x1), int(y1))))
    found.sort(key=lambda t: -t[0])
    kept: list[tuple[int, int, int, int]] = []
    for _score, box in found:
        if all(_iou(box, k) < 0.5 for k in kept):
            kept.append(box)
        if len(kept) == MAX_PASTE_PARTS:
            break
    return [Part(tuple(int(round(v * scale)) for v in b), "pasted photo")  # type: ignore[misc]
            for b in kept]


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0
