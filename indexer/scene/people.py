"""Where the people are, so that a room descriptor describes the room and not them.

An ad photo of a room usually has a person in it, and a reference photo of the
same room usually does not (or shows someone else). Keypoints on a person are
worse than useless for place recognition: they match other photos of the same
person, or of people in general, instead of the bedspread and the carpet.

Two cheap detectors, both available from what pip gives us:

- faces with dlib's HOG frontal face detector, each extended to the body a
  face implies (shoulders about three face widths wide, the torso down to the
  bottom of the picture): ad photos are mostly portrait shots of one person;
- redaction boxes: large solid-colour rectangles. Analysts and datasets mask
  people this way (the Hotel-ID 2022 test set uses red boxes; TraffickCam
  queries are masked before upload), and the edges of such a box produce
  corner keypoints that would match every other redacted photo.

OpenCV's HOG people detector is not in OpenCV 5's main module any more
(``cv2.HOGDescriptor`` is gone from opencv-python-headless 5), so bodies
without a visible face are not found; a masked region costs only the
keypoints under it, so over-masking is cheap and under-masking is what the
geometric verification has to absorb. A torso-shaped body (down to three face
heights below the chin instead of the bottom of the picture) was measured on
the venues suite and changed nothing (BENCHMARKS.md, venues), so the simpler
body-to-the-bottom region stays.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

# Body extent relative to the face box (width w, height h), measured from
# typical portrait framing: shoulders reach ~1.5 face widths either side of the
# face centre; hair and a raised arm reach half a face above it.
BODY_HALF_WIDTH = 1.6
BODY_ABOVE = 0.6
# The face detector runs on a copy whose long side is at most this; dlib's HOG
# window is 80 px, with one upsampling faces down to ~40 px in that copy are found.
FACE_SIDE = 640
FACE_UPSAMPLE = 1
# A redaction box covers at least this share of the picture...
MIN_BOX_AREA = 0.01
# ...fills at least this share of its bounding rectangle...
MIN_BOX_FILL = 0.85
# ...and is flat: neighbouring pixels differ by at most this (JPEG noise included).
FLAT_TOLERANCE = 6
# Keypoints whose descriptor window touches a masked edge are unreliable too.
MASK_MARGIN = 0.02


@dataclass(frozen=True)
class PeopleMask:
    """What was masked and why: boxes (left, top, right, bottom) in picture pixels."""

    keep: np.ndarray  # uint8, 255 where keypoints may be taken
    faces: list[tuple[int, int, int, int]]
    bodies: list[tuple[int, int, int, int]]
    redactions: list[tuple[int, int, int, int]]

    @property
    def masked_share(self) -> float:
        return float((self.keep == 0).mean()) if self.keep.size else 0.0


_face_detector = None
_face_lock = threading.Lock()


def _detector():  # noqa: ANN202 - dlib's type has no stub
    global _face_detector
    with _face_lock:
        if _face_detector is None:
            import dlib
            _face_detector = dlib.get_frontal_face_detector()
        return _face_detector


def detect_faces(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Face boxes in ``rgb`` pixel coordinates (dlib HOG, one upsampling)."""
    h, w = rgb.shape[:2]
    scale = min(1.0, FACE_SIDE / max(h, w))
    small = rgb if scale >= 1.0 else cv2.resize(
        rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    rects = _detector()(np.ascontiguousarray(small), FACE_UPSAMPLE)
    boxes = []
    for r in rects:
        box = (int(r.left() / scale), int(r.top() / scale), int(r.right() / scale),
               int(r.bottom() / scale))
        boxes.append(_clip(box, w, h))
    return boxes


def body_of(face: tuple[int, int, int, int], width: int, height: int) -> tuple[int, int, int, int]:
    """The region a person whose face is ``face`` occupies: from above the head to the bottom."""
    left, top, right, bottom = face
    fw, fh = right - left, bottom - top
    cx = (left + right) / 2
    return _clip((int(cx - BODY_HALF_WIDTH * fw), int(top - BODY_ABOVE * fh),
                  int(cx + BODY_HALF_WIDTH * fw), height), width, height)


def detect_redactions(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Large solid-colour rectangles (redaction boxes) in ``rgb``."""
    h, w = rgb.shape[:2]
    img = rgb.astype(np.int16)
    # A pixel is flat when it equals its right and lower neighbours in every channel.
    dx = np.abs(np.diff(img, axis=1)).max(axis=2) <= FLAT_TOLERANCE
    dy = np.abs(np.diff(img, axis=0)).max(axis=2) <= FLAT_TOLERANCE
    flat = np.zeros((h, w), np.uint8)
    flat[:-1, :-1] = (dx[:-1, :] & dy[:, :-1]).astype(np.uint8)
    # Opening removes thin flat seams (lines, gradients quantised by JPEG).
    flat = cv2.morphologyEx(flat, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(flat, connectivity=4)
    boxes = []
    for i in range(1, count):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        if area < MIN_BOX_AREA * h * w or area < MIN_BOX_FILL * bw * bh:
            continue
        # A flat sky or wall is flat but not uniform over its whole extent.
        colours = rgb[labels == i]
        if float(colours.std(axis=0).max()) > FLAT_TOLERANCE:
            continue
        boxes.append((x, y, x + bw, y + bh))
    return boxes


def people_mask(rgb: np.ndarray, *, faces: bool = True, redactions: bool = True) -> PeopleMask:
    """Mask of ``rgb`` with people and redaction boxes removed (255 = usable)."""
    h, w = rgb.shape[:2]
    keep = np.full((h, w), 255, np.uint8)
    face_boxes = detect_faces(rgb) if faces else []
    bodies = [body_of(f, w, h) for f in face_boxes]
    boxes = detect_redactions(rgb) if redactions else []
    margin = int(round(MASK_MARGIN * max(h, w)))
    for left, top, right, bottom in bodies + boxes:
        keep[max(0, top - margin):min(h, bottom + margin),
             max(0, left - margin):min(w, right + margin)] = 0
    return PeopleMask(keep, face_boxes, bodies, boxes)


def _clip(box: tuple[int, int, int, int], w: int, h: int) -> tuple[int, int, int, int]:
    left, top, right, bottom = box
    return (max(0, left), max(0, top), min(w, right), min(h, bottom))
