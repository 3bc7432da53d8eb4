"""Faces: YuNet detection, dlib 5-point alignment and the 128-d dlib ResNet embedding.

Why dlib: its models ship in ``face_recognition_models`` (no downloads at run
time, no compiling with ``dlib-bin``) and its ResNet is the embedding the
family-consented reference photos are compared with throughout the field.
:mod:`indexer.signals.sface` embeds the same faces with a second model.

Detection is YuNet's (:mod:`indexer.signals.yunet`): 10-40 ms of one core per
picture, where dlib's HOG needed an upsampled picture for the small faces of ad
photos and its CNN fallback seconds for the turned ones HOG missed. YuNet's
five landmarks give the square box dlib's 5-point shape predictor was trained
on (:func:`dlib_rect`), and the predictor's points give dlib's aligned chip.
dlib's HOG and CNN detectors are still here (:func:`detect_dlib`) but run only
where YuNet finds nothing and :data:`DLIB_FALLBACK` asks for them.

Every face becomes one vector with its box in original pixel coordinates and a
quality in [0, 1] from its size, sharpness, pose (from the five landmarks) and
the detector's confidence. Poor faces are kept, never dropped: a blurred face
in a crawled ad is still a lead for a reviewer, but ``extra["low_quality"]``
tells the matcher not to let it decide alone.

One network pass per face: averaging with the mirrored chip's descriptor
(``flip=True``) doubled the cost and did not help once fused with SFace
(BENCHMARKS.md, faces).
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer.images import Picture
from indexer.signals import yunet
from indexer.signals.base import Signal, SignalVector, Thresholds, VectorKind, register

# Long side of the picture the detectors look at. Faces are searched in ad
# photos, where a face smaller than 1/30 of a 1024 px picture is not usable.
DETECT_SIDE = 1024
# Pictures at most this long are upsampled once for HOG (40 px faces).
UPSAMPLE_BELOW = 800
# The CNN fallback works on a picture at most this long, without upsampling:
# its cost is per pixel (about 0.55 s of one core for 250x250, ~2.4 s at 512x512),
# and its 80 px window then finds faces of at least a sixth of the picture's side.
CNN_SIDE = 512
# Whether dlib's HOG and CNN detectors still run where YuNet finds no face.
# Measured on ../shared/bench/faces (BENCHMARKS.md, faces): see there for the
# images they find that YuNet misses, and what that costs.
DLIB_FALLBACK = False
CHIP_SIZE = 150  # the input size of dlib's ResNet
CHIP_PADDING = 0.25  # as dlib and face_recognition align

# Quality: below these a face is "low quality" (kept, but not decisive).
MIN_GOOD_FACE_PX = 60  # inter-ocular-based face width in original pixels
LOW_QUALITY = 0.35


def models_dir() -> Path:
    """Where ``face_recognition_models`` keeps the dlib weights.

    Located through importlib (not by importing the package, which needs the
    deprecated ``pkg_resources``).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face_recognition_models is not installed (pip install face_recognition_models)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class _Models(threading.local):
    """dlib models, loaded lazily once per thread (dlib networks are not thread-safe)."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self._loaded:
            import dlib

            folder = models_dir()
            if name == "hog":
                self._loaded[name] = dlib.get_frontal_face_detector()
            elif name == "cnn":
                self._loaded[name] = dlib.cnn_face_detection_model_v1(
                    str(folder / "mmod_human_face_detector.dat"))
            elif name == "shape5":
                self._loaded[name] = dlib.shape_predictor(
                    str(folder / "shape_predictor_5_face_landmarks.dat"))
            elif name == "resnet":
                self._loaded[name] = dlib.face_recognition_model_v1(
                    str(folder / "dlib_face_recognition_resnet_model_v1.dat"))
            else:  # pragma: no cover - programming error
                raise KeyError(name)
        return self._loaded[name]


MODELS = _Models()


@dataclass(frozen=True)
class Detection:
    """One detected face, its box in the coordinates of the decoded picture."""

    left: float
    top: float
    right: float
    bottom: float
    confidence: float  # YuNet: score in 0..1; HOG: SVM margin; CNN: MMOD score (~0 at the boundary)
    detector: str
    # YuNet's five landmarks (eyes, nose tip, mouth corners) in the same pixels; None for dlib's.
    points: np.ndarray | None = field(default=None, compare=False)

    @property
    def width(self) -> float:
        return self.right - self.left


@dataclass(frozen=True)
class Face:
    """A detected, aligned face: what both embedding backends start from."""

    detection: Detection
    landmarks: np.ndarray  # 5 x 2 (x, y) in decoded-picture pixels, dlib's 5-point order
    box: tuple[int, int, int, int]  # original pixel coordinates
    quality: float
    reasons: tuple[str, ...]
    # The five points a reviewer sees drawn (original pixels): YuNet's (eyes, nose tip, mouth
    # corners) where YuNet found the face, else dlib's (eye corners, under the nose).
    points_original: tuple[tuple[int, int], ...] = field(default=(), compare=False)

    @property
    def align_points(self) -> np.ndarray | None:
        """YuNet's five landmarks (decoded-picture pixels), which SFace's alignment expects."""
        return self.detection.points


def _scaled(picture: Picture, side: int) -> tuple[np.ndarray, float]:
    """RGB pixels with a long side of at most ``side`` and the factor back to ``picture``."""
    small = picture.shrunk(side)
    return small.rgb, picture.size[0] / small.size[0]


def detect(picture: Picture, *, fallback: bool | None = None) -> list[Detection]:
    """Faces in ``picture``: YuNet, then dlib's HOG and CNN only where YuNet finds none.

    ``fallback`` None means :data:`DLIB_FALLBACK` (see there why it is off).
    """
    fallback = DLIB_FALLBACK if fallback is None else fallback
    key = ("faces.detect", fallback)
    if key in picture._cache:
        return picture._cache[key]
    found = [Detection(*f.box, f.score, "yunet", f.landmarks) for f in yunet.detect(picture)]
    if not found and fallback:
        found = detect_dlib(picture)
    picture._cache[key] = found
    return found


def detect_dlib(picture: Picture, *, cnn: bool = True) -> list[Detection]:
    """dlib's detectors as before YuNet: HOG (upsampled when small), the CNN where HOG finds none."""
    rgb, scale = _scaled(picture, DETECT_SIDE)
    upsample = 1 if max(rgb.shape[:2]) <= UPSAMPLE_BELOW else 0
    rects, scores, _ = MODELS.get("hog").run(rgb, upsample, 0.0)
    found = [Detection(r.left() * scale, r.top() * scale, r.right() * scale, r.bottom() * scale,
                       float(s), "hog") for r, s in zip(rects, scores, strict=True)]
    if not found and cnn:
        found = _detect_cnn(picture)
    return found


def _detect_cnn(picture: Picture) -> list[Detection]:
    rgb, scale = _scaled(picture, CNN_SIDE)
    out = []
    for d in MODELS.get("cnn")(rgb, 0):
        r = d.rect
        out.append(Detection(r.left() * scale, r.top() * scale, r.right() * scale,
                             r.bottom() * scale, float(d.confidence), "cnn"))
    return out


def dlib_rect(det: Detection) -> tuple[int, int, int, int]:
    """The box dlib's 5-point shape predictor expects for a detection.

    The predictor was trained on HOG/CNN boxes: a square about 1.9 inter-ocular
    distances wide, centred between the eyes and the mouth. YuNet's box is taller
    (forehead to chin), so for YuNet the square is rebuilt from its landmarks.
    """
    if det.points is None:
        return (int(round(det.left)), int(round(det.top)), int(round(det.right)), int(round(det.bottom)))
    p = det.points
    eyes, mouth = p[0:2].mean(axis=0), p[3:5].mean(axis=0)
    side = max(1.9 * float(np.linalg.norm(p[0] - p[1])), 2.2 * float(np.linalg.norm(mouth - eyes)))
    cx, cy = (eyes + mouth) / 2.0
    cy -= 0.02 * side
    half = side / 2.0
    return (int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half)))


def _dlib_shape(rgb: np.ndarray, det: Detection) -> Any:
    import dlib

    return MODELS.get("shape5")(rgb, dlib.rectangle(*dlib_rect(det)))


def faces(picture: Picture, *, fallback: bool | None = None) -> list[tuple[Face, Any]]:
    """Detected faces with landmarks and quality, plus dlib's shape for alignment (cached)."""
    fallback = DLIB_FALLBACK if fallback is None else fallback
    key = ("faces.faces", fallback)
    if key in picture._cache:
        return picture._cache[key]
    rgb = picture.rgb
    to_original = picture.original_size[0] / picture.size[0]
    out = []
    for det in detect(picture, fallback=fallback):
        shape = _dlib_shape(rgb, det)
        points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float32)
        chip = aligned_chip(rgb, shape, size=CHIP_SIZE)
        quality, reasons = face_quality(det, points, chip, to_original)
        box = (max(0, int(round(det.left * to_original))), max(0, int(round(det.top * to_original))),
               min(picture.original_size[0], int(round(det.right * to_original))),
               min(picture.original_size[1], int(round(det.bottom * to_original))))
        drawn = det.points if det.points is not None else points
        points_original = tuple((int(round(float(x) * to_original)), int(round(float(y) * to_original)))
                                for x, y in np.asarray(drawn, dtype=np.float64))
        out.append((Face(det, points, box, quality, reasons, points_original), shape))
    picture._cache[key] = out
    return out


def aligned_chip(rgb: np.ndarray, shape: Any, size: int = CHIP_SIZE,
                 padding: float = CHIP_PADDING) -> np.ndarray:
    """The face rotated upright and scaled as dlib's ResNet was trained (``get_face_chip``)."""
    import dlib

    return np.asarray(dlib.get_face_chip(rgb, shape, size=size, padding=padding))


def face_quality(det: Detection, points: np.ndarray, chip: np.ndarray, to_original: float
                 ) -> tuple[float, tuple[str, ...]]:
    """Quality in [0, 1] and the reasons it is low: size, blur, pose, detector confidence.

    Each factor is 1 for a clearly usable face and falls to a floor for a poor
    one, so that the product ranks faces and the reasons say why.
    """
    reasons = []
    # dlib 5-point order: right eye outer/inner (0, 1), left eye outer/inner (2, 3), nose (4).
    eye_a = points[0:2].mean(axis=0)
    eye_b = points[2:4].mean(axis=0)
    eye_dist = float(np.linalg.norm(eye_a - eye_b)) * to_original
    face_px = eye_dist * 2.5  # a face is about 2.5 inter-ocular distances wide
    size_f = float(np.clip(face_px / MIN_GOOD_FACE_PX, 0.2, 1.0))
    if face_px < MIN_GOOD_FACE_PX:
        reasons.append("small")
    grey = chip.astype(np.float32).mean(axis=2)
    centre = grey[CHIP_SIZE // 4: 3 * CHIP_SIZE // 4, CHIP_SIZE // 4: 3 * CHIP_SIZE // 4]
    lap = (centre[1:-1, 2:] + centre[1:-1, :-2] + centre[2:, 1:-1] + centre[:-2, 1:-1]
           - 4 * centre[1:-1, 1:-1])
    sharp = float(lap.var())
    blur_f = float(np.clip(sharp / 60.0, 0.2, 1.0))
    if sharp < 30.0:
        reasons.append("blurred")
    # Yaw: the nose tip moves off the eyes' midpoint as the head turns.
    mid = (eye_a + eye_b) / 2.0
    axis = eye_b - eye_a
    norm = float(np.linalg.norm(axis)) or 1.0
    offset = abs(float(np.dot(points[4] - mid, axis / norm))) / norm
    pose_f = float(np.clip(1.0 - (offset - 0.15) / 0.35, 0.2, 1.0))
    if offset > 0.3:
        reasons.append("profile")
    if det.detector == "hog":
        conf_f = float(np.clip(0.6 + det.confidence, 0.3, 1.0))
    elif det.detector == "yunet":  # scores start at its 0.6 threshold; 0.9+ for a clear face
        conf_f = float(np.clip(0.3 + (det.confidence - 0.6) / 0.3 * 0.7, 0.3, 1.0))
    else:
        conf_f = float(np.clip(det.confidence, 0.3, 1.0))
    if conf_f < 0.5:
        reasons.append("uncertain")
    quality = round(size_f * blur_f * pose_f * conf_f, 4)
    return quality, tuple(reasons)


def dlib_embedding(rgb: np.ndarray, shape: Any, *, flip: bool = True) -> np.ndarray:
    """The L2-normalised 128-d descriptor (mean with the mirrored chip when ``flip``)."""
    net = MODELS.get("resnet")
    chip = aligned_chip(rgb, shape)
    chips = [chip, np.ascontiguousarray(chip[:, ::-1])] if flip else [chip]
    vecs = np.asarray(net.compute_face_descriptor(chips), dtype=np.float32)
    v = vecs.mean(axis=0)
    return (v / (np.linalg.norm(v) or 1.0)).astype(np.float32)


def face_extra(face: Face, detector_info: bool = True) -> dict[str, Any]:
    """What a stored face vector records besides its box and quality."""
    extra: dict[str, Any] = {"low_quality": face.quality < LOW_QUALITY,
                             "detector": face.detection.detector}
    if face.reasons:
        extra["reasons"] = list(face.reasons)
    if face.points_original:  # drawn on the candidate page beside the box (api/web/evidence.py)
        extra["landmarks"] = [list(p) for p in face.points_original]
        extra["landmarks_from"] = "yunet" if face.detection.points is not None else "dlib"
    return extra


def primary_weight(box: tuple[int, int, int, int], width: int, height: int) -> float:
    """How much a face looks like the subject of its photo: large and near the centre.

    Used for references (a family's photo shows the missing person, perhaps
    with others beside them); queries search every face. Width times one minus
    the distance of the box centre from the picture centre (in picture sides):
    on the dev suite's gallery, picking the largest face alone chose a
    bystander in 2% of the photos with two faces of similar size.
    """
    cx = (box[0] + box[2]) / 2 / max(width, 1) - 0.5
    cy = (box[1] + box[3]) / 2 / max(height, 1) - 0.5
    return (box[2] - box[0]) * (1.0 - float(np.hypot(cx, cy)))


class DlibFaceSignal(Signal):
    """Every face of a picture as a 128-d dlib ResNet vector (cosine distance)."""

    name = "face_dlib"
    family = "faces"
    kind = VectorKind.FLOAT
    dim = 128
    decode_side = 1600
    # Cosine distances on normalised dlib vectors (about half the squared
    # Euclidean distance face_recognition uses: 0.6 Euclidean ~ 0.18 cosine).
    # Raw-distance defaults; the face searcher applies calibrated scores.
    default_thresholds = Thresholds(match=0.12, review=0.2)

    def __init__(self, *, flip: bool = False, fallback: bool | None = None) -> None:
        self.flip = flip
        self.fallback = fallback

    def extract(self, picture: Picture) -> list[SignalVector]:
        out = []
        for face, shape in faces(picture, fallback=self.fallback):
            vec = dlib_embedding(picture.rgb, shape, flip=self.flip)
            out.append(SignalVector(self.name, vec, quality=face.quality, box=face.box,
                                    extra=face_extra(face)))
        return out


FACE_DLIB = register(DlibFaceSignal())


def _register_configured_plugins() -> None:
    """An ONNX face model configured in the environment joins the family on import."""
    import os

    if os.environ.get("REUNITE_ONNX_FACE_MODEL", "").strip():
        from indexer.signals import onnx_faces

        onnx_faces.register_from_env()


_register_configured_plugins()
