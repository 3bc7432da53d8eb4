"""Local features of a room: SIFT keypoints off the people, stored compactly, compared as RootSIFT.

Why SIFT: it ships with opencv-python-headless (no weights to download), it is
still among the most repeatable detectors across viewpoint change, and
RootSIFT (Arandjelovic & Zisserman 2012: L1-normalise, square root) makes the
Euclidean distance behave like the Hellinger kernel, which improves both
matching and aggregation for free.

Storage: OpenCV computes SIFT descriptors as integers 0..255, so they are kept
as uint8 (lossless, 4x smaller than float32) and turned into RootSIFT when
used. Keypoint positions are kept as float32 pixels of the picture the
features were computed on, with that picture's size, so that geometry is
comparable whatever size the stored original had.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass

import cv2
import numpy as np

# Long side of the picture features are computed on. Ad photos and reference
# shots are mostly 0.5-2 megapixels; 1024 px keeps the fine texture (bedspread
# patterns) without paying for sensor noise.
FEATURE_SIDE = 1024
# Features kept per image, strongest first. 2000 is the usual budget for
# retrieval re-ranking; more mostly adds weak, unrepeatable keypoints.
MAX_FEATURES = 2000
# OpenCV divides this by the number of octave layers (3): 0.02 equals COLMAP's
# default peak threshold (0.0067). OpenCV's own 0.04 finds too few keypoints
# on blurry, low-contrast indoor frames (white walls, dim hotel rooms).
CONTRAST_THRESHOLD = 0.02

_HEADER = struct.Struct("<4sIHH")  # magic, count, width, height
_MAGIC = b"RSF1"


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoints (x, y) and their SIFT descriptors (uint8) on a ``size`` (w, h) picture."""

    xy: np.ndarray  # (n, 2) float32
    sift: np.ndarray  # (n, 128) uint8
    size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    @property
    def rootsift(self) -> np.ndarray:
        """RootSIFT descriptors, float32, each of unit L2 norm."""
        return rootsift(self.sift)

    def to_bytes(self) -> bytes:
        n = len(self)
        return (_HEADER.pack(_MAGIC, n, self.size[0], self.size[1])
                + np.ascontiguousarray(self.xy, dtype="<f4").tobytes()
                + np.ascontiguousarray(self.sift, dtype=np.uint8).tobytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> LocalFeatures:
        if len(data) < _HEADER.size:
            raise ValueError("local features: truncated header")
        magic, n, w, h = _HEADER.unpack_from(data)
        if magic != _MAGIC or len(data) != _HEADER.size + n * (8 + 128):
            raise ValueError("local features: not a reunite local-feature blob")
        off = _HEADER.size
        xy = np.frombuffer(data, dtype="<f4", count=2 * n, offset=off).reshape(n, 2).astype(np.float32)
        sift = np.frombuffer(data, dtype=np.uint8, count=128 * n, offset=off + 8 * n).reshape(n, 128)
        return cls(xy, sift.copy(), (int(w), int(h)))

    def subset(self, keep: np.ndarray) -> LocalFeatures:
        return LocalFeatures(self.xy[keep], self.sift[keep], self.size)


def rootsift(sift: np.ndarray) -> np.ndarray:
    """Hellinger-normalised SIFT: L1-normalise, then square root (unit L2 norm)."""
    d = np.asarray(sift, dtype=np.float32)
    d = d / np.maximum(d.sum(axis=1, keepdims=True), 1e-7)
    return np.sqrt(d)


_local = threading.local()


def _sift() -> cv2.SIFT:
    # One detector per thread: OpenCV feature objects are not thread safe.
    det = getattr(_local, "sift", None)
    if det is None:
        det = cv2.SIFT_create(nfeatures=MAX_FEATURES, contrastThreshold=CONTRAST_THRESHOLD)
        _local.sift = det
    return det


def extract(gray: np.ndarray, keep: np.ndarray | None = None) -> LocalFeatures:
    """SIFT features of ``gray`` (uint8), only where ``keep`` is non-zero."""
    h, w = gray.shape[:2]
    mask = None if keep is None else np.ascontiguousarray(keep, dtype=np.uint8)
    kps, desc = _sift().detectAndCompute(np.ascontiguousarray(gray), mask)
    if desc is None or not kps:
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8), (w, h))
    xy = np.array([k.pt for k in kps], dtype=np.float32).reshape(-1, 2)
    sift = np.clip(np.rint(desc), 0, 255).astype(np.uint8)
    # SIFT may return a few more than asked (ties, multiple orientations).
    if len(xy) > MAX_FEATURES:
        order = np.argsort([-k.response for k in kps], kind="stable")[:MAX_FEATURES]
        xy, sift = xy[order], sift[order]
    return LocalFeatures(xy, sift, (w, h))
