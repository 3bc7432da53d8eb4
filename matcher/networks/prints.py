"""What the linker keeps of each ad image: PDQ keys, a tiny thumbnail, and the common-template test.

Why a separate print and not the matcher's hash searcher: in a crawl every
new image is compared with every stored one, so the comparison must cost one
pass over a packed array of 32-byte keys (a few milliseconds at 10,000
images), not a search over five hash indexes at their review radius followed
by catalog look-ups for thousands of hits.

A print holds:

- the image's PDQ and its 8 dihedral variants (mirrored and rotated reposts);
- the PDQ of the image with uniform borders trimmed off (``trim_box``): padded
  and letterboxed reposts hash like the photo they frame;
- a 32x32 grey thumbnail of each (1 KiB), for :func:`template_witnesses`.

Why the thumbnail: some near-identical hashes are not the same photo. A
screenshot of a web page, a watermark frame, an app's share card: many ads
paste *different* photos into one common template, and PDQ sees mostly the
template. Hash-sharing services meet the same problem with "common" images
(StopNCII and HMA mark them so that they stop matching). Here the test is per
pair: where two thumbnails are identical they share a part; where they differ
each shows its own content. If several *other* images share that same part
while showing a third content where the pair differs, the shared part is a
template and the pair's hash distance is no evidence that they show the same
photo. An edited copy (emoji or text overlay, re-encoding) does not pass for
a template: the other copies of that photo show the pair's content where the
pair differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from indexer.images import Picture
from indexer.signals.hashes import PDQ_SIDE, grey_square, pdq_bits_dihedral, pdq_coefficients

THUMB_SIDE = 32
KEY_BYTES = 32  # 256-bit PDQ
FULL, TRIM = 0, 1


@dataclass
class Print:
    """The linker's view of one image (see the module docstring)."""

    pdq: bytes
    quality: float | None
    variants: list[bytes] = field(default_factory=list)
    thumb: bytes | None = None
    trim_pdq: bytes | None = None
    trim_quality: float | None = None
    trim_variants: list[bytes] = field(default_factory=list)
    trim_thumb: bytes | None = None

    def keys(self) -> list[tuple[int, bytes]]:
        """Every (kind, key) a new image is searched with: variants of the full and trimmed picture."""
        full = [(FULL, k) for k in (self.variants or [self.pdq])]
        trim = [(TRIM, k) for k in (self.trim_variants or ([self.trim_pdq] if self.trim_pdq else []))]
        return full + trim


def trim_box(rgb: np.ndarray, tol: int = 24, share: float = 0.97, min_keep: float = 0.25,
             min_cut: float = 0.06) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the picture inside uniform borders, or None.

    A border line is one whose pixels (97% of them, for JPEG noise) lie within
    ``tol`` of that side's outermost line's mean colour. Trimming counts only
    when at least ``min_cut`` of the area goes and a quarter of each side stays.
    """
    h, w = rgb.shape[:2]
    a = rgb  # 8-bit RGB (indexer.images.Picture)

    def near(ref: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per channel, the integer values within ``tol`` of ``ref``: x with |x - ref| <= tol.

        A mean of integer lines is an integer or at least 1/len away from one, so the
        float bounds never round the other way than ``abs(x - ref) <= tol`` did."""
        return (tuple(float(v) for v in np.ceil(ref - tol)), tuple(float(v) for v in np.floor(ref + tol)))

    def uniform(line: np.ndarray, bounds: tuple[tuple[float, ...], tuple[float, ...]]) -> bool:
        # cv2.inRange + countNonZero on the uint8 line: two calls instead of five NumPy passes
        # over a float copy (issue 21: the per-call overhead was most of the test)
        return cv2.countNonZero(cv2.inRange(line, *bounds)) >= share * line.shape[0] * line.shape[1]

    top, bottom, left, right = 0, h, 0, w
    bounds = near(a[0].mean(axis=0))
    while top < h * (1 - min_keep) and uniform(a[top:top + 1], bounds):
        top += 1
    bounds = near(a[h - 1].mean(axis=0))
    while bottom > top + h * min_keep and uniform(a[bottom - 1:bottom], bounds):
        bottom -= 1
    bounds = near(a[:, 0].mean(axis=0))
    while left < w * (1 - min_keep) and uniform(np.ascontiguousarray(a[top:bottom, left:left + 1]), bounds):
        left += 1
    bounds = near(a[:, w - 1].mean(axis=0))
    while right > left + w * min_keep and uniform(np.ascontiguousarray(a[top:bottom, right - 1:right]),
                                                  bounds):
        right -= 1
    if (bottom - top) * (right - left) > (1 - min_cut) * h * w:
        return None
    if bottom - top < h * min_keep or right - left < w * min_keep:
        return None
    return top, bottom, left, right


def _thumb(picture: Picture) -> bytes:
    grey = grey_square(picture)
    return cv2.resize(grey, (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA).tobytes()


def _pdq_variants(picture: Picture) -> tuple[list[bytes], float]:
    """The PDQ of ``picture`` and of its 7 other symmetries, from reunite's own PDQ.

    The same hash indexing stores as the ``pdq`` vector (:mod:`indexer.signals.hashes`:
    the reference's filter folded onto the 256-px copy, close to what a partner's
    list holds), computed from the buffer cached on the picture: when the
    picture is the one indexing decoded, the print costs no second PDQ. The
    variants come from the one DCT by the reference's sign changes and transposes.
    """
    coeffs, quality = pdq_coefficients(picture)
    return [bits.tobytes() for bits in pdq_bits_dihedral(coeffs)], quality / 100.0


def print_of(picture: Picture) -> Print:
    """The print of a decoded picture (PDQ with its dihedral variants, thumbnail, trimmed copy)."""
    small = picture.shrunk(PDQ_SIDE)
    variants, quality = _pdq_variants(picture)
    out = Print(pdq=variants[0], quality=quality, variants=variants, thumb=_thumb(small))
    box = trim_box(small.rgb)
    if box is not None:
        top, bottom, left, right = box
        pixels = np.ascontiguousarray(small.rgb[top:bottom, left:right])
        # Hashed as the crop it is (its own size as the original): no fold onto the parent's grid.
        crop = Picture(pixels, small.format, (pixels.shape[1], pixels.shape[0]), small.frames,
                       grey=small.grey)
        out.trim_variants, out.trim_quality = _pdq_variants(crop)
        out.trim_pdq = out.trim_variants[0]
        out.trim_thumb = _thumb(crop)
    return out


class KeyIndex:
    """Packed PDQ keys of one bank's prints, searched exactly (FAISS binary flat index: SIMD popcount).

    Exhaustive on purpose: at 10,000 images the 18 keys of a new image are
    compared with every stored key in about a millisecond, and an exact search
    cannot miss a copy the way an approximate one can.
    """

    def __init__(self) -> None:
        import faiss  # loaded by the verbs that link, not by every importer of the print helpers

        self._index = faiss.IndexBinaryFlat(KEY_BYTES * 8)
        self._items: list[int] = []
        self._kinds: list[int] = []
        self._pending: list[bytes] = []
        self.items: set[int] = set()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item_id: int, kind: int, key: bytes) -> None:
        self._items.append(item_id)
        self._kinds.append(kind)
        self._pending.append(key)
        self.items.add(item_id)

    def _flush(self) -> None:
        if self._pending:
            keys = np.frombuffer(b"".join(self._pending), dtype=np.uint8).reshape(-1, KEY_BYTES)
            self._index.add(keys)
            self._pending.clear()

    def search(self, keys: list[tuple[int, bytes]], radius: float
               ) -> dict[int, tuple[int, int, int]]:
        """item id -> (distance, query key kind, stored key kind) of its closest key within ``radius``."""
        self._flush()
        out: dict[int, tuple[int, int, int]] = {}
        if not self._items or not keys:
            return out
        queries = np.frombuffer(b"".join(k for _kind, k in keys), dtype=np.uint8).reshape(-1, KEY_BYTES)
        # FAISS's binary range search keeps distances strictly below the radius.
        lims, dists, rows = self._index.range_search(queries, int(radius) + 1)
        for q, (qkind, _key) in enumerate(keys):
            for d, row in zip(dists[lims[q]:lims[q + 1]], rows[lims[q]:lims[q + 1]], strict=True):
                item, d = self._items[int(row)], int(d)
                if item not in out or d < out[item][0]:
                    out[item] = (d, qkind, self._kinds[int(row)])
        return out


# --- the common-template test ---------------------------------------------------

_DIHEDRAL = (lambda t: t, lambda t: t[:, ::-1], lambda t: t[::-1], lambda t: t.T,
             lambda t: np.rot90(t), lambda t: np.rot90(t, 2), lambda t: np.rot90(t, 3),
             lambda t: np.rot90(t, 2).T)


def thumb_array(data: bytes | None) -> np.ndarray | None:
    if data is None or len(data) != THUMB_SIDE * THUMB_SIDE:
        return None
    return np.frombuffer(data, dtype=np.uint8).reshape(THUMB_SIDE, THUMB_SIDE).astype(np.float32)


def _aligned(a: np.ndarray, others: list[np.ndarray], mask: np.ndarray | None = None) -> np.ndarray:
    """The orientation of any of ``others`` closest to ``a`` (on ``mask`` when given)."""
    best, best_d = others[0], float("inf")
    for other in others:
        for op in _DIHEDRAL:
            c = op(other)
            diff = np.abs(a - c)
            d = float(diff[mask].mean()) if mask is not None else float(diff.mean())
            if d < best_d:
                best, best_d = c, d
    return best


@dataclass(frozen=True)
class TemplateRule:
    """Thresholds of :func:`template_witnesses` (grey levels 0-255, shares of the thumbnail)."""

    same_tol: float = 8.0
    min_shared: float = 0.3
    min_differing: float = 0.04


def template_witnesses(a: np.ndarray, b: np.ndarray, witnesses: list[list[np.ndarray]],
                       rule: TemplateRule = TemplateRule()) -> int:
    """How many ``witnesses`` share the part ``a`` and ``b`` share while showing a third content.

    ``witnesses`` holds, per other image, its thumbnails (full, trimmed). 0
    when the pair does not split into a shared and a differing part at all
    (the usual copy: edits change every pixel a little, or almost nothing).
    """
    b = _aligned(a, [b])
    diff = np.abs(a - b)
    shared = diff < rule.same_tol
    differing = ~shared
    if differing.mean() < rule.min_differing or shared.mean() < rule.min_shared:
        return 0
    # "Shows something else" is relative to how much a and b differ there: a
    # washed-out preview differs little in absolute grey levels.
    apart = max(rule.same_tol, 0.5 * float(diff[differing].mean()))
    count = 0
    for thumbs in witnesses:
        c = _aligned(a, thumbs, shared)
        if (np.abs(c - a)[shared].mean() < rule.same_tol
                and np.abs(c - a)[differing].mean() > apart
                and np.abs(c - b)[differing].mean() > apart):
            count += 1
    return count
