"""Plug-in face embeddings from any ONNX model on local disk (SFace, ArcFace exports).

Why a plug-in: dlib's ResNet is the default that needs no download, but
stronger open models exist (OpenCV's SFace, InsightFace's ArcFace) and an
organisation may have vetted one of its own. They all take an aligned 112x112
face and return one vector, so one backend serves them all: detection and
landmarks are dlib's (shared with :mod:`indexer.signals.faces` through the
picture's cache, so a picture is searched for faces once however many
backends run), the crop is aligned to the ArcFace five-point template with a
similarity transform, and the model's first output is the embedding.

Nothing is downloaded: the model is a file path the operator configures, either
by calling :func:`configure` or through ``REUNITE_ONNX_FACE_MODEL`` (plus
optional ``REUNITE_ONNX_FACE_NAME`` and ``REUNITE_ONNX_FACE_PREPROCESS``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from indexer.images import Picture
from indexer.signals import faces as dlib_faces
from indexer.signals.base import Signal, SignalVector, Thresholds, VectorKind, register, unregister
from indexer.signals.onnx_runtime import open_session

CROP = 112
# ArcFace's reference positions (112x112) of the eye centres and the base of the
# nose. dlib's fifth landmark sits under the nose, a few pixels below the tip
# that ArcFace's template uses, hence y = 76 rather than 71.7.
TEMPLATE = np.array([[38.29, 51.70], [73.53, 51.50], [56.03, 76.0]], dtype=np.float64)


@dataclass(frozen=True)
class Preprocess:
    """How a model wants its pixels: ``(x - mean) / std`` per channel, in RGB or BGR order."""

    mean: float
    std: float
    bgr: bool


PRESETS = {
    # InsightFace ArcFace exports: RGB, (x - 127.5) / 127.5.
    "arcface": Preprocess(127.5, 127.5, bgr=False),
    # OpenCV's SFace (face_recognition_sface_2021dec.onnx): RGB in 0..255.
    "sface": Preprocess(0.0, 1.0, bgr=False),
}


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the least-squares similarity (rotation, scale, shift) mapping src to dst.

    Umeyama's method; a similarity (not a full affine map) keeps the face's
    proportions, which the embedding models were trained on.
    """
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - src_mean, dst - dst_mean
    cov = b.T @ a / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1
    rot = u @ d @ vt
    var = (a ** 2).sum() / len(src)
    scale = float(np.trace(np.diag(s) @ d) / var) if var > 0 else 1.0
    shift = dst_mean - scale * rot @ src_mean
    return np.hstack([scale * rot, shift[:, None]])


def aligned_crop(rgb: np.ndarray, landmarks: np.ndarray, size: int = CROP) -> np.ndarray:
    """The face warped onto the ArcFace template (``size`` x ``size`` RGB uint8)."""
    eyes = sorted([landmarks[0:2].mean(axis=0), landmarks[2:4].mean(axis=0)], key=lambda p: p[0])
    src = np.array([eyes[0], eyes[1], landmarks[4]], dtype=np.float64)
    matrix = similarity_transform(src, TEMPLATE * (size / CROP))
    # PIL's affine transform maps output to input coordinates: invert the 2x3 matrix.
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)[:2].ravel()
    img = Image.fromarray(rgb).transform((size, size), Image.Transform.AFFINE, tuple(inv),
                                         resample=Image.Resampling.BILINEAR)
    return np.asarray(img)


class OnnxFaceSignal(Signal):
    """Faces embedded by an ONNX model taking one aligned 112x112 crop."""

    family = "faces"
    kind = VectorKind.FLOAT
    decode_side = dlib_faces.DlibFaceSignal.decode_side

    def __init__(self, model_path: Path | str, *, name: str = "face_onnx",
                 preprocess: Preprocess | str = "arcface",
                 thresholds: Thresholds | None = None) -> None:
        self.model_path = Path(model_path)
        self.name = name
        self.preprocess = PRESETS[preprocess] if isinstance(preprocess, str) else preprocess
        self._session = open_session(self.model_path, "face")
        self._lock = threading.Lock()
        model_input = self._session.get_inputs()[0]
        self._input = model_input.name
        shape = list(model_input.shape)
        self._nhwc = len(shape) == 4 and shape[-1] == 3
        self.dim = int(self._run(np.zeros((1, CROP, CROP, 3), dtype=np.uint8)).shape[1])
        # Uncalibrated raw cosine-distance thresholds until bench/ calibrates this model.
        self.default_thresholds = thresholds or Thresholds(match=0.6, review=0.7)

    def _run(self, crops: np.ndarray) -> np.ndarray:
        x = crops.astype(np.float32)
        if self.preprocess.bgr:
            x = x[..., ::-1]
        x = (x - self.preprocess.mean) / self.preprocess.std
        if not self._nhwc:
            x = x.transpose(0, 3, 1, 2)
        with self._lock:  # an InferenceSession may be shared, its run is the critical part
            out = self._session.run(None, {self._input: np.ascontiguousarray(x)})[0]
        return np.asarray(out, dtype=np.float32).reshape(len(crops), -1)

    def embed(self, crop: np.ndarray) -> np.ndarray:
        """The L2-normalised embedding of one aligned crop."""
        v = self._run(crop[None])[0]
        return (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)

    def extract(self, picture: Picture) -> list[SignalVector]:
        out = []
        for face, _shape in dlib_faces.faces(picture):
            crop = aligned_crop(picture.rgb, face.landmarks)
            out.append(SignalVector(self.name, self.embed(crop), quality=face.quality, box=face.box,
                                    extra=dlib_faces.face_extra(face)))
        return out


def configure(model_path: Path | str, *, name: str = "face_onnx",
              preprocess: Preprocess | str = "arcface",
              thresholds: Thresholds | None = None, replace: bool = False) -> OnnxFaceSignal:
    """Load an ONNX face model and register it as a signal of the ``faces`` family."""
    signal = OnnxFaceSignal(model_path, name=name, preprocess=preprocess, thresholds=thresholds)
    if replace:
        unregister(name)
    return register(signal)  # type: ignore[return-value]


def register_from_env(environ: Any = None) -> OnnxFaceSignal | None:
    """Register the model named by ``REUNITE_ONNX_FACE_MODEL``, if set."""
    env = os.environ if environ is None else environ
    path = (env.get("REUNITE_ONNX_FACE_MODEL") or "").strip()
    if not path:
        return None
    preprocess = (env.get("REUNITE_ONNX_FACE_PREPROCESS") or "arcface").strip()
    if preprocess not in PRESETS:
        raise ValueError(f"REUNITE_ONNX_FACE_PREPROCESS must be one of {', '.join(PRESETS)}")
    return configure(path, name=(env.get("REUNITE_ONNX_FACE_NAME") or "face_onnx").strip(),
                     preprocess=preprocess, replace=True)
