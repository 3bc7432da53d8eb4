"""The ``scene`` signal: the room behind the people, for "which venue was this taken in?".

Extraction masks the people (:mod:`indexer.scene.people`) and computes SIFT
features on what is left (:mod:`indexer.scene.features`). The features are
what venue search works from: the bank's VLAD index (vocabulary trained on the
bank, :mod:`indexer.scene.bank`) for the shortlist and geometric verification
for the decision. They ride along in the vector's ``extra`` and are moved into
their own table when the vector is stored (:mod:`indexer.scene.storage`).

The stored vector itself is the bank-independent part: a colour histogram of
the unmasked background (HSV, 8 hues x 4 saturations x 4 values, Hellinger
normalised). It lets the generic per-(bank, signal) index machinery and the
signal conformance tests treat ``scene`` like any other signal, and it stays
comparable across banks (the VLAD of two banks is not: their vocabularies
differ). A mean RootSIFT was tried first and rejected: it is nearly the same
vector for every photo (cosine distance 0.005 between unrelated photos).
Venue ranking does not use the histogram: colour shifts with white balance
and lighting between a reference shot and an ad.
"""

from __future__ import annotations

import cv2
import numpy as np

from indexer.images import Picture
from indexer.scene import features as local
from indexer.scene import people, storage
from indexer.signals.base import Signal, SignalVector, Thresholds, VectorKind, register

SCENE = "scene"


def scene_features(picture: Picture) -> tuple[local.LocalFeatures, people.PeopleMask]:
    """Masked local features of ``picture`` (cached on the picture: one computation per image)."""
    key = ("scene_features", local.FEATURE_SIDE)
    if key not in picture._cache:
        small = picture.shrunk(local.FEATURE_SIDE)
        mask = people.people_mask(small.rgb)
        gray = cv2.cvtColor(small.rgb, cv2.COLOR_RGB2GRAY)
        picture._cache[key] = (local.extract(gray, mask.keep), mask)
    return picture._cache[key]


HIST_BINS = (8, 4, 4)  # hue, saturation, value


def summary_vector(rgb: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """HSV histogram of the unmasked pixels, square-rooted and L2-normalised."""
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
    mask = keep if keep.any() else None  # everything masked: describe the whole picture
    hist = cv2.calcHist([hsv], [0, 1, 2], mask, list(HIST_BINS), [0, 180, 0, 256, 0, 256]).ravel()
    hist = np.sqrt(hist / max(float(hist.sum()), 1.0))
    return (hist / max(float(np.linalg.norm(hist)), 1e-12)).astype(np.float32)


class SceneSignal(Signal):
    """Room background: masked RootSIFT features, summarised as one bank-independent vector."""

    name = SCENE
    family = SCENE
    kind = VectorKind.FLOAT
    dim = int(np.prod(HIST_BINS))
    decode_side = local.FEATURE_SIDE
    # On the histogram's cosine distance (re-encoding moves it by ~0.01);
    # venue decisions use the calibrated verification thresholds in
    # matcher/defaults.json, section "scene".
    default_thresholds = Thresholds(match=0.03, review=0.08)

    def extract(self, picture: Picture) -> list[SignalVector]:
        feats, mask = scene_features(picture)
        extra = {
            storage.LOCAL_KEY: storage.pack(feats),
            "keypoints": len(feats),
            "masked": round(mask.masked_share, 4),
            "people": len(mask.faces),
            "redactions": len(mask.redactions),
        }
        small = picture.shrunk(local.FEATURE_SIDE)
        return [SignalVector(self.name, summary_vector(small.rgb, mask.keep), extra=extra)]


SCENE_SIGNAL = register(SceneSignal())


def _configure_plugins() -> None:
    """Register the learned room descriptor (when its wheels are installed) and the ONNX plug-in, if any."""
    from indexer.scene import onnx_backend, room_net
    if room_net.available():
        register(room_net.RoomNetSignal())
    onnx_backend.configure_from_env()


_configure_plugins()
