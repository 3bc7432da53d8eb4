"""Plug-in room embeddings from any ONNX image model on local disk (DINOv2, CLIP exports).

Why a plug-in: learned global descriptors (DINOv2's CLS token, CLIP's image
embedding) recognise a room across viewpoints far better than aggregated SIFT,
but their weights cannot ship with reunite and nothing may be downloaded at run
time. The operator exports a model once (``torch.onnx.export`` of DINOv2
ViT-S/14 or CLIP ViT-B/32 image towers both fit) and configures its path.

The model sees the whole picture with the people greyed out (the same mask as
the SIFT features, shared through the picture's cache), resized to the
model's square input, normalised with ImageNet statistics by default; its first
output, flattened (a CLS token or a pooled embedding), is the vector. The
signal joins the ``scene`` family, so venue banks index it beside the SIFT
features and :mod:`matcher.search.venues` adds its nearest references to the
shortlist that geometric verification re-ranks.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from indexer.images import Picture
from indexer.scene import features as local
from indexer.signals.base import Signal, SignalVector, Thresholds, VectorKind, register, unregister
from indexer.signals.onnx_runtime import open_session

DEFAULT_SIDE = 224


@dataclass(frozen=True)
class Preprocess:
    """Per-channel RGB normalisation, on pixels scaled to 0..1."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


PRESETS = {
    "imagenet": Preprocess((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # DINOv2
    "clip": Preprocess((0.4815, 0.4578, 0.4082), (0.2686, 0.2613, 0.2758)),
}


class OnnxSceneSignal(Signal):
    """The room embedded by an ONNX model taking one square RGB picture (NCHW or NHWC)."""

    family = "scene"
    kind = VectorKind.FLOAT

    def __init__(self, model_path: Path | str, *, name: str = "scene_onnx",
                 preprocess: Preprocess | str = "imagenet", side: int | None = None,
                 thresholds: Thresholds | None = None) -> None:
        self.model_path = Path(model_path)
        self.name = name
        self.preprocess = PRESETS[preprocess] if isinstance(preprocess, str) else preprocess
        self._session = open_session(self.model_path, "scene")
        self._lock = threading.Lock()
        model_input = self._session.get_inputs()[0]
        self._input = model_input.name
        shape = list(model_input.shape)
        self._nhwc = len(shape) == 4 and shape[-1] == 3
        fixed = [d for d in (shape[1:3] if self._nhwc else shape[2:4]) if isinstance(d, int)]
        self.side = int(side or (fixed[0] if fixed else DEFAULT_SIDE))
        self.decode_side = max(local.FEATURE_SIDE, self.side)
        self.dim = int(self._run(np.zeros((self.side, self.side, 3), np.uint8)).size)
        # Raw cosine-distance thresholds; venue decisions come from verification.
        self.default_thresholds = thresholds or Thresholds(match=0.15, review=0.3)

    def _run(self, square: np.ndarray) -> np.ndarray:
        x = square.astype(np.float32) / 255.0
        x = (x - np.array(self.preprocess.mean, np.float32)) / np.array(self.preprocess.std, np.float32)
        x = x[None] if self._nhwc else x.transpose(2, 0, 1)[None]
        with self._lock:
            out = self._session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32).ravel()

    def embed(self, rgb: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        """L2-normalised embedding of ``rgb``, masked pixels set to the mean grey."""
        img = rgb
        if keep is not None and not keep.all():
            img = rgb.copy()
            grey = np.array([round(255 * m) for m in self.preprocess.mean], np.uint8)
            img[keep == 0] = grey  # the mean pixel: zero after normalisation
        square = cv2.resize(img, (self.side, self.side), interpolation=cv2.INTER_AREA)
        v = self._run(square)
        return (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)

    def extract(self, picture: Picture) -> list[SignalVector]:
        return [masked_room_vector(self.name, picture, self.embed)]


def configure(model_path: Path | str, *, name: str = "scene_onnx",
              preprocess: Preprocess | str = "imagenet", side: int | None = None,
              thresholds: Thresholds | None = None, replace: bool = False) -> OnnxSceneSignal:
    """Load an ONNX image model and register it as a signal of the ``scene`` family."""
    signal = OnnxSceneSignal(model_path, name=name, preprocess=preprocess, side=side,
                             thresholds=thresholds)
    if replace:
        unregister(name)
    return register(signal)  # type: ignore[return-value]


def configure_from_env() -> OnnxSceneSignal | None:
    """Register the model named by ``REUNITE_ONNX_SCENE_MODEL`` (and ``..._NAME``), if set."""
    path = os.environ.get("REUNITE_ONNX_SCENE_MODEL", "").strip()
    if not path:
        return None
    return configure(path, name=os.environ.get("REUNITE_ONNX_SCENE_NAME", "scene_onnx").strip()
                     or "scene_onnx", replace=True)


def masked_room_vector(name: str, picture: Picture,
                       embed: Callable[[np.ndarray, np.ndarray | None], np.ndarray]) -> SignalVector:
    """One room descriptor of ``picture`` with the people masked, as every scene network gives it.

    The mask is the scene family's own (indexer.signals.scene), computed once per
    picture and shared with the keypoints, so every descriptor hides the same people.
    """
    from indexer.signals.scene import scene_features

    _feats, mask = scene_features(picture)
    small = picture.shrunk(local.FEATURE_SIDE)
    return SignalVector(name, embed(small.rgb, mask.keep), extra={"masked": round(mask.masked_share, 4)})
