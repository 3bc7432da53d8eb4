"""Local features (SIFT keypoints + RootSIFT descriptors) for crop- and overlay-robust copy detection.

Why local features: a perceptual hash summarises the whole frame, so cropping
half the photo, padding it to a square or pasting it into a screenshot moves
every bit. Keypoints on the photo's own content survive all of that, and a
geometric check on their positions (``matcher.search.verify``) tells a real copy from
look-alikes. SIFT (RootSIFT descriptors) is used because the edits to survive
include 4x downscales, blur and small crops, where SIFT's scale space keeps
finding the same points; on copydet it lets 99.6% of the reposts be linked
(BENCHMARKS.md). ORB (binary, cheaper to index) has not been measured against it.

Storage: one fixed-size vector per image holds up to :data:`MAX_KEYPOINTS`
keypoints (positions in 1/8 pixel, raw SIFT descriptors as uint8, which is
exactly how OpenCV quantises them), so it travels through the catalog like any
other signal vector; the descriptor index (``indexer.store.features``) is a
cache rebuilt from these rows.

:func:`extract_features` is the reusable core: picture (+ optional mask) ->
keypoints and descriptors; the venue matcher may use it with people masked out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from indexer.images import Picture
from indexer.signals.base import Signal, SignalVector, Thresholds, VectorKind, register

# Long side of the grey frame features are computed on. Queries in ads are
# small (400-800 px); references are shrunk to the same scale so that the
# strongest keypoints of both sides come from the same image structures.
FEATURE_SIDE = 640
# Tiny pictures (thumbnails) are enlarged first: SIFT needs a few octaves.
MIN_SIDE = 256
# Stored keypoints per reference image (the strongest by detector response).
MAX_KEYPOINTS = 512
# Query pictures keep more keypoints: the query may be a small part of a
# screenshot or collage, and the reference is fixed.
QUERY_KEYPOINTS = 1000
# Queries keep a larger frame: a screenshot or collage shows the photo at a fraction of its size.
QUERY_SIDE = 800
# SIFT's contrast threshold. OpenCV's 0.04 leaves a 50% crop of a 400-px ad photo with
# 17-35 keypoints and flat photos (sky, skin, walls) with almost none; 0.02 keeps the
# weaker extrema that a geometric check still confirms (with the two settings below:
# crop_50 86% -> 95%, screenshot 89% -> 97% on copydet, 79% -> 88% / 92% on photos it lacks).
CONTRAST_THRESHOLD = 0.02
# A frame with fewer keypoints than this is searched again with half the threshold,
# down to MIN_CONTRAST_THRESHOLD: low-texture photos need every extremum they have.
ADAPT_KEYPOINTS = 256
MIN_CONTRAST_THRESHOLD = 0.005
# Reference keypoints are taken round-robin over a GRID_CELLS x GRID_CELLS grid (strongest
# first in each cell), so a crop of any part of the photo finds stored keypoints, not
# only a crop of its most textured part.
GRID_CELLS = 8
DESCRIPTOR_DIM = 128
_XY_SCALE = 8.0  # positions stored in 1/8 pixel as uint16 (frames up to 8191 px)
_HEADER = struct.Struct("<BBHHH")  # format version, reserved, count, frame width, frame height
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoints of one picture, in the pixel frame they were computed on.

    ``xy`` is float32 (n, 2) in frame pixels, ``descriptors`` uint8 (n, 128)
    raw SIFT; ``frame`` is (width, height) of that frame and ``scale`` the
    factor from frame pixels to the picture's original pixels.
    """

    xy: np.ndarray
    descriptors: np.ndarray
    frame: tuple[int, int]
    scale: float = 1.0

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    def rootsift(self) -> np.ndarray:
        """RootSIFT (Arandjelovic & Zisserman 2012): Hellinger kernel, unit L2 norm."""
        return rootsift(self.descriptors)


def rootsift(descriptors: np.ndarray) -> np.ndarray:
    """uint8 SIFT -> float32 RootSIFT rows with unit L2 norm (zero rows stay zero)."""
    d = descriptors.astype(np.float32)
    d /= np.maximum(d.sum(axis=1, keepdims=True), 1e-7)
    return np.sqrt(d, out=d)


_SIFT_CACHE: dict[tuple[int, float], cv2.SIFT] = {}


def _sift(n_features: int, contrast: float = CONTRAST_THRESHOLD) -> cv2.SIFT:
    key = (n_features, contrast)
    if key not in _SIFT_CACHE:
        _SIFT_CACHE[key] = cv2.SIFT_create(nfeatures=n_features, contrastThreshold=contrast)
    return _SIFT_CACHE[key]


def spread_order(xy: np.ndarray, response: np.ndarray, frame: tuple[int, int], n: int,
                 cells: int = GRID_CELLS) -> np.ndarray:
    """Indices of ``n`` keypoints spread over a grid: each cell's strongest, then second, ...

    A cap by response alone spends the budget on the most textured region;
    round-robin over cells keeps the strongest points of every part of the frame.
    """
    order = np.argsort(-response, kind="stable")
    if len(order) <= n:
        return order
    w, h = frame
    cx = np.minimum((xy[order, 0] * cells / max(w, 1)).astype(np.int64), cells - 1)
    cy = np.minimum((xy[order, 1] * cells / max(h, 1)).astype(np.int64), cells - 1)
    cell = cy * cells + cx
    # Rank of each keypoint within its cell (0 = strongest there), by a stable sort on cell.
    by_cell = np.argsort(cell, kind="stable")
    starts = np.searchsorted(cell[by_cell], np.arange(cells * cells))
    rank = np.empty(len(order), np.int64)
    rank[by_cell] = np.arange(len(order)) - starts[cell[by_cell]]
    # Round-robin: by rank in cell, then by overall strength.
    pick = np.lexsort((np.arange(len(order)), rank))[:n]
    return order[np.sort(pick)]


def feature_frame(picture: Picture, max_side: int = FEATURE_SIDE) -> tuple[np.ndarray, float]:
    """The grey frame features are computed on and its scale to original pixels (cached)."""
    key = ("local_frame", max_side)
    if key not in picture._cache:
        small = picture.shrunk(max_side)
        # A luma decode carries its plane in every channel (Pillow's L of equal channels is that channel).
        grey = small.rgb[:, :, 0] if small.grey else small.gray
        h, w = grey.shape
        if max(h, w) < MIN_SIDE:
            f = MIN_SIDE / max(h, w)
            grey = cv2.resize(grey, (max(1, round(w * f)), max(1, round(h * f))),
                              interpolation=cv2.INTER_CUBIC)
        scale = picture.original_size[0] / grey.shape[1]
        picture._cache[key] = (np.ascontiguousarray(grey), scale)
    return picture._cache[key]


def extract_features(picture: Picture, mask: np.ndarray | None = None, *,
                     max_keypoints: int = MAX_KEYPOINTS, max_side: int = FEATURE_SIDE,
                     flip: bool = False, spread: bool = True) -> LocalFeatures:
    """SIFT keypoints and descriptors of ``picture``.

    ``mask`` (same height/width as ``picture.rgb``, nonzero = use) restricts
    detection, for example to the background of a room with people masked out.
    ``flip`` mirrors the frame left-right first: SIFT is rotation invariant
    but not mirror invariant, so a mirrored repost is searched with both.
    Positions stay in the (mirrored) frame; the caller knows which it asked for.
    ``spread`` keeps keypoints over the whole frame (:func:`spread_order`, for
    references); without it the strongest are kept (queries: the part of the
    query that is the photo is not known in advance, and strength is cheaper).
    """
    grey, scale = feature_frame(picture, max_side)
    frame_mask = None
    if mask is not None:
        frame_mask = cv2.resize((np.asarray(mask) > 0).astype(np.uint8) * 255,
                                (grey.shape[1], grey.shape[0]), interpolation=cv2.INTER_NEAREST)
    if flip:
        grey = np.ascontiguousarray(grey[:, ::-1])
        frame_mask = None if frame_mask is None else np.ascontiguousarray(frame_mask[:, ::-1])
    size = (grey.shape[1], grey.shape[0])
    keypoints, desc = _detect(grey, frame_mask, 0 if spread else max_keypoints)
    if desc is None or not keypoints:
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, DESCRIPTOR_DIM), np.uint8),
                             size, scale)
    all_xy = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    response = np.array([k.response for k in keypoints], dtype=np.float32)
    if spread:
        order = spread_order(all_xy, response, size, max_keypoints)
    else:
        # nfeatures may keep a few extra keypoints on response ties; the cap is hard.
        order = np.argsort(-response, kind="stable")[:max_keypoints]
    xy = all_xy[order]
    descriptors = np.clip(np.rint(desc[order]), 0, 255).astype(np.uint8)
    return LocalFeatures(xy, descriptors, (grey.shape[1], grey.shape[0]), scale)


# SIFT descriptor layout (OpenCV): 4 x 4 spatial cells x 8 orientation bins, relative to the
# keypoint's orientation. Mirroring the picture left-right mirrors every keypoint's
# orientation, so its descriptor becomes the same numbers with the cell rows reversed and
# the orientation bins negated (bin k -> -k mod 8); measured on OpenCV's output, the
# permuted descriptor is within 1% (L1) of the one SIFT computes on the mirrored picture.
_MIRROR = np.array([(3 - i) * 32 + j * 8 + (-k % 8) for i in range(4) for j in range(4)
                    for k in range(8)], dtype=np.int64)


def mirrored(features: LocalFeatures) -> LocalFeatures:
    """The features the left-right mirrored picture has, without running SIFT again.

    Positions are in the mirrored frame (``x -> width - 1 - x``), as
    :func:`extract_features` with ``flip=True`` gives them. Why: a query that
    matched nothing is searched again mirrored; permuting its descriptors costs
    microseconds where a second SIFT pass costs a tenth of a second.
    """
    xy = features.xy.copy()
    xy[:, 0] = features.frame[0] - 1 - xy[:, 0]
    return LocalFeatures(xy, np.ascontiguousarray(features.descriptors[:, _MIRROR]),
                         features.frame, features.scale)


def _detect(grey: np.ndarray, mask: np.ndarray | None, n_features: int
            ) -> tuple[tuple[cv2.KeyPoint, ...], np.ndarray | None]:
    """SIFT at :data:`CONTRAST_THRESHOLD`, lowered while too few keypoints come out."""
    contrast = CONTRAST_THRESHOLD
    keypoints, desc = _sift(n_features, contrast).detectAndCompute(grey, mask)
    while len(keypoints) < ADAPT_KEYPOINTS and contrast / 2 >= MIN_CONTRAST_THRESHOLD:
        contrast /= 2
        keypoints, desc = _sift(n_features, contrast).detectAndCompute(grey, mask)
    return keypoints, desc


def packed_size(max_keypoints: int = MAX_KEYPOINTS) -> int:
    return _HEADER.size + max_keypoints * (4 + DESCRIPTOR_DIM)


def pack(features: LocalFeatures, max_keypoints: int = MAX_KEYPOINTS) -> np.ndarray:
    """Features as one fixed-size uint8 vector (zero padded) for the catalog."""
    n = min(len(features), max_keypoints)
    out = np.zeros(packed_size(max_keypoints), dtype=np.uint8)
    w, h = features.frame
    out[:_HEADER.size] = np.frombuffer(_HEADER.pack(_FORMAT_VERSION, 0, n, w, h), np.uint8)
    xy = np.clip(np.rint(features.xy[:n] * _XY_SCALE), 0, 65535).astype("<u2")
    start = _HEADER.size
    out[start:start + 4 * n] = np.frombuffer(xy.tobytes(), np.uint8)
    start += 4 * max_keypoints
    out[start:start + DESCRIPTOR_DIM * n] = features.descriptors[:n].ravel()
    return out


def unpack(vector: np.ndarray | bytes, original_width: int = 0) -> LocalFeatures:
    """Inverse of :func:`pack`; ``original_width`` restores the scale to original pixels."""
    buf = np.frombuffer(vector, dtype=np.uint8) if isinstance(vector, bytes | bytearray) \
        else np.asarray(vector, dtype=np.uint8)
    version, _reserved, n, w, h = _HEADER.unpack_from(buf.tobytes()[:_HEADER.size])
    if version != _FORMAT_VERSION:
        raise ValueError(f"unknown local-feature format {version}")
    capacity = (len(buf) - _HEADER.size) // (4 + DESCRIPTOR_DIM)
    start = _HEADER.size
    xy = np.frombuffer(buf[start:start + 4 * n].tobytes(), "<u2").astype(np.float32)
    start += 4 * capacity
    desc = buf[start:start + DESCRIPTOR_DIM * n].reshape(n, DESCRIPTOR_DIM).copy()
    scale = original_width / w if original_width and w else 1.0
    return LocalFeatures(xy.reshape(n, 2) / _XY_SCALE, desc, (int(w), int(h)), scale)


def mutual_matches(a: np.ndarray, b: np.ndarray, ratio: float = 0.8) -> np.ndarray:
    """Index pairs (i, j) of RootSIFT rows that are mutual nearest neighbours and pass Lowe's ratio."""
    if len(a) < 2 or len(b) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    sim = a @ b.T
    d2 = np.maximum(2.0 - 2.0 * sim, 0.0)  # squared L2 of unit vectors
    best_b = np.argmin(d2, axis=1)
    best_a = np.argmin(d2, axis=0)
    rows = np.arange(len(a))
    first = d2[rows, best_b]
    d2[rows, best_b] = np.inf
    second = d2.min(axis=1)
    keep = (first < (ratio ** 2) * second) & (best_a[best_b] == rows)
    return np.stack([rows[keep], best_b[keep]], axis=1)


class SiftSignal(Signal):
    """SIFT keypoints of one image, stored as one packed vector (see module docstring)."""

    name = "sift"
    family = "local"
    kind = VectorKind.BINARY  # stored as uint8 bytes; compared by :meth:`distance`, not Hamming
    dim = packed_size() * 8
    decode_side = FEATURE_SIDE
    needs_color = False  # SIFT sees luma: a JPEG's Y plane is decoded alone when no other signal wants colour
    vector_index = False  # searched per descriptor by indexer.store.features
    # distance = 1 - mutual matches / smaller keypoint count; copies share a large
    # fraction, unrelated photos almost none. Copy decisions use verified inliers
    # (matcher.search.verify, the "copy" section of matcher/defaults.json), not this.
    default_thresholds = Thresholds(match=0.8, review=0.95)

    def extract(self, picture: Picture) -> list[SignalVector]:
        features = extract_features(picture)
        return [SignalVector(self.name, pack(features), quality=min(1.0, len(features) / 100.0))]

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        fa, fb = unpack(a), unpack(b)
        n = min(len(fa), len(fb))
        if n == 0:
            return 1.0
        return 1.0 - len(mutual_matches(fa.rootsift(), fb.rootsift())) / n

    def max_distance(self) -> float:
        return 1.0


SIFT = register(SiftSignal())
