"""The linker's border test (matcher.networks.prints.trim_box) finds the same box as the per-line
NumPy test it replaced (issue 21: cv2.inRange on the 8-bit line instead of five float passes),
on photos framed by borders of every colour, width and noise level, and on unframed ones."""

from __future__ import annotations

import numpy as np
from conftest import tiles

from matcher.networks.prints import trim_box


def _reference(rgb: np.ndarray, tol: int = 24, share: float = 0.97, min_keep: float = 0.25,
               min_cut: float = 0.06) -> tuple[int, int, int, int] | None:
    """The definition, line by line: within ``tol`` of the side's outermost line's mean colour."""
    h, w = rgb.shape[:2]
    a = rgb.astype(np.int16)

    def uniform(line: np.ndarray, ref: np.ndarray) -> bool:
        return np.count_nonzero(np.abs(line - ref).max(axis=-1) <= tol) >= share * len(line)

    top, bottom, left, right = 0, h, 0, w
    ref = a[0].mean(axis=0)
    while top < h * (1 - min_keep) and uniform(a[top], ref):
        top += 1
    ref = a[h - 1].mean(axis=0)
    while bottom > top + h * min_keep and uniform(a[bottom - 1], ref):
        bottom -= 1
    ref = a[:, 0].mean(axis=0)
    while left < w * (1 - min_keep) and uniform(a[top:bottom, left], ref):
        left += 1
    ref = a[:, w - 1].mean(axis=0)
    while right > left + w * min_keep and uniform(a[top:bottom, right - 1], ref):
        right -= 1
    if (bottom - top) * (right - left) > (1 - min_cut) * h * w:
        return None
    if bottom - top < h * min_keep or right - left < w * min_keep:
        return None
    return top, bottom, left, right


def test_trim_box_finds_the_reference_box_on_framed_and_plain_photos() -> None:
    rng = np.random.default_rng(21)
    photos = [np.asarray(t.convert("RGB")) for t in tiles(40, size=120, seed=21)]
    trimmed = 0
    for i in range(400):
        base = photos[i % len(photos)]
        h, w = base.shape[:2]
        top, bottom, left, right = (int(x) for x in rng.integers(0, 70, 4))
        canvas = np.empty((h + top + bottom, w + left + right, 3), np.uint8)
        canvas[:] = rng.integers(0, 256, 3)
        canvas[top:top + h, left:left + w] = base
        noisy = rng.random(canvas.shape[:2]) < rng.random() * 0.1  # JPEG-like specks in the border
        canvas = np.clip(canvas.astype(int) + rng.integers(-40, 41, canvas.shape) * noisy[..., None],
                         0, 255).astype(np.uint8)
        cut = canvas[:int(rng.integers(8, canvas.shape[0] + 1)), :int(rng.integers(8, canvas.shape[1] + 1))]
        for picture in (canvas, np.ascontiguousarray(cut), base):
            expected = _reference(picture)
            assert trim_box(picture) == expected
            trimmed += expected is not None
    assert trimmed > 200  # most framed photos were trimmed: the test compares real boxes
