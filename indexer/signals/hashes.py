"""Perceptual hashes: pHash, dHash, aHash, wHash (imagehash) and PDQ.

Why several: each hash fails differently. pHash and PDQ (DCT based) survive
recompression, resizing and mild colour edits; dHash (gradients) is robust to
brightness shifts; wHash to blur. PDQ is the common currency of hash exchange
(StopNCII, ThreatExchange) and carries a quality score that tells us when a
hash is too flat to trust.

Speed: all five are computed from ONE decoded picture, shrunk to a long side of
256 px (with the JPEG draft decode in :mod:`indexer.images`, large photos are
decoded at 1/2..1/8 scale). The imagehash family only ever looks at a tiny grey
square (at most 64x64), so that square is made once and each hash resamples it.

PDQ must speak the field's language: a partner's list is computed by the
reference (``pdqhash.compute`` / the C++ hasher) on the full-size photo, and
PDQ's bits sit close to their median, so hashing a 256-px copy with the
reference code moved photos by 21 bits on average (7.7% beyond the 31-bit
match threshold). PDQ reduces any picture to 64x64 with its own tent filter
(two passes of Jarosz box filters sized from the picture's dimensions) and
samples it at fixed centres; that filter and sampling are linear, so they are
one 64xN matrix per axis. :func:`pdq_buffer` builds those matrices for the
*original* dimensions and folds them onto the decoded grid (each decoded pixel
is the area average of the original pixels it covers), so the 256-px copy
yields the 64x64 buffer the reference would compute from the full photo. On a
full-size picture this is the reference exactly (bit for bit with
``pdqhash.compute``, pinned by tests/test_pdq_reference.py); on the suites'
photos the 256-px fold is mean 2.4 bits, max 18, from the reference on the full
decode (BENCHMARKS.md, bench/pdq_agreement.py) at no extra decode cost. DCT,
median threshold, quality and the dihedral variants follow the reference code.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import cv2
import imagehash
import numpy as np
from PIL import Image

from indexer.images import Picture
from indexer.signals.base import Signal, SignalVector, Thresholds, VectorKind, register

# Long side of the copy every hash is computed from (PDQ through its folded filter).
PDQ_SIDE = 256
_GREY_SIDE = 64

# The eight symmetries of a square, named as in the PDQ reference code, with
# the numpy operation that applies each to an array of pixels.
DIHEDRAL: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "original": lambda a: a,
    "rotate90": lambda a: np.rot90(a, 1),
    "rotate180": lambda a: np.rot90(a, 2),
    "rotate270": lambda a: np.rot90(a, 3),
    "flip_x": lambda a: a[::-1],
    "flip_y": lambda a: a[:, ::-1],
    "flip_plus1": lambda a: np.swapaxes(a, 0, 1),
    "flip_minus1": lambda a: np.rot90(a, 2).swapaxes(0, 1),
}


def grey_square(picture: Picture) -> np.ndarray:
    """The 64x64 grey thumbnail every imagehash signal starts from (cached)."""
    key = "grey_square"
    if key not in picture._cache:
        shrunk = picture.shrunk(PDQ_SIDE)
        small = shrunk.rgb
        if shrunk.grey:  # OpenCV's luma of three equal channels is that channel (weights sum to 1)
            grey = np.ascontiguousarray(small[:, :, 0])
        else:
            grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)  # same ITU-R 601 luma as Pillow's "L"
        picture._cache[key] = cv2.resize(grey, (_GREY_SIDE, _GREY_SIDE), interpolation=cv2.INTER_AREA)
    return picture._cache[key]


class _ImageHashSignal(Signal):
    """A 64-bit imagehash computed from the shared grey square."""

    kind = VectorKind.BINARY
    dim = 64
    family = "hashes"
    decode_side = PDQ_SIDE
    needs_color = False
    # Quality = bit balance (minority bits / 32). A dark or flat picture gives an aHash
    # or dHash of almost all zeros or all ones, and two such hashes agree whatever
    # they show: measured, half-crops of two night photos matched a scanned page's
    # all-ones dHash at distance 0-1. Below 8 minority bits of 64 a hash may ask for
    # a review, never an automatic match (PDQ's quality gate, for the 64-bit hashes).
    min_quality = 25

    def __init__(self, name: str, fn: Callable[[Image.Image], imagehash.ImageHash],
                 thresholds: Thresholds) -> None:
        self.name = name
        self._fn = fn
        self.default_thresholds = thresholds

    def _hash(self, grey: np.ndarray) -> np.ndarray:
        bits = self._fn(Image.fromarray(np.ascontiguousarray(grey), "L")).hash
        return np.packbits(bits.astype(np.uint8).ravel())

    def extract(self, picture: Picture) -> list[SignalVector]:
        vector = self._hash(grey_square(picture))
        return [SignalVector(self.name, vector, quality=bit_balance(vector))]

    def variants(self, picture: Picture) -> list[tuple[str, SignalVector]]:
        """The hash of each dihedral transform, for mirrored or rotated queries."""
        grey = grey_square(picture)
        out = []
        for name, op in DIHEDRAL.items():
            vector = self._hash(op(grey))
            out.append((name, SignalVector(self.name, vector, quality=bit_balance(vector),
                                           extra={"transform": name})))
        return out


def bit_balance(vector: np.ndarray) -> float:
    """Share of a hash's bits on its minority side, scaled to [0, 1] (1: half of them set)."""
    ones = int(np.unpackbits(np.asarray(vector, dtype=np.uint8)).sum())
    bits = 8 * int(np.asarray(vector).size)
    return round(min(ones, bits - ones) / (bits / 2), 4)


class PdqSignal(Signal):
    """Meta's PDQ: a 256-bit DCT hash with a 0-100 quality score."""

    name = "pdq"
    family = "hashes"
    kind = VectorKind.BINARY
    dim = 256
    decode_side = PDQ_SIDE
    needs_color = False  # PDQ hashes ITU-R 601 luma
    default_thresholds = Thresholds(match=31, review=70)
    # PDQ's authors: hashes with quality below 50 come from flat images and
    # match each other far too easily.
    min_quality = 50

    def extract(self, picture: Picture) -> list[SignalVector]:
        coeffs, quality = pdq_coefficients(picture)
        return [SignalVector(self.name, pdq_bits(coeffs), quality=quality / 100.0)]

    def variants(self, picture: Picture) -> list[tuple[str, SignalVector]]:
        """The hash of each dihedral transform of the picture, as the reference's
        ``pdqDihedralHash256esFromFloatLuma`` computes them: from the one 16x16 DCT,
        by the sign changes and transposes each symmetry makes of its coefficients."""
        coeffs, quality = pdq_coefficients(picture)
        return [
            (name, SignalVector(self.name, bits, quality=quality / 100.0, extra={"transform": name}))
            for name, bits in zip(PDQ_DCT_DIHEDRAL, pdq_bits_dihedral(coeffs), strict=True)
        ]


# --- PDQ, as the reference computes it ------------------------------------------

# The reference's Jarosz box window is the dimension / 128, rounded up; two X,Y passes.
_PDQ_WINDOW_DIVISOR = 128
_PDQ_PASSES = 2
_PDQ_MIN_SIDE = 5  # the reference clears the hash of anything smaller
_PDQ_DCT = np.array(
    [[np.sqrt(2.0 / 64.0) * np.cos((np.pi / 2.0 / 64.0) * (i + 1) * (2 * j + 1)) for j in range(64)]
     for i in range(16)], dtype=np.float32)
_PDQ_LUMA = (0.299, 0.587, 0.114)
# PDQ's float luma of a grey level v repeated on three channels, summed as the RGB formula sums it
# (so a grey picture's luma is one table look-up per pixel, the same float32 values).
_PDQ_GREY_LUMA = ((np.arange(256.0) * _PDQ_LUMA[0] + np.arange(256.0) * _PDQ_LUMA[1])
                  + np.arange(256.0) * _PDQ_LUMA[2]).astype(np.float32)


def _box_transpose(rows: np.ndarray, window: int) -> np.ndarray:
    """``rows @ A`` for the reference's 1-D box filter A (``box1DFloat``) of ``window``.

    Output o of the reference is the mean of inputs o-left..o+right, clipped to
    the vector, with right = (window+2)//2 - 1 and left = window-1-right; so input
    j receives v[o]/count[o] from every o in j-right..j+left (one cumulative sum).
    """
    n = rows.shape[1]
    right = (window + 2) // 2 - 1
    left = window - 1 - right
    o = np.arange(n)
    count = np.minimum(n - 1, o + right) - np.maximum(0, o - left) + 1
    cum = np.zeros((rows.shape[0], n + 1))
    np.cumsum(rows / count, axis=1, out=cum[:, 1:])
    hi = np.minimum(n, o + left + 1)
    lo = np.maximum(0, o - right)
    return cum[:, hi] - cum[:, lo]


@lru_cache(maxsize=256)
def pdq_axis_filter(original: int, decoded: int) -> np.ndarray:
    """The 64 x ``decoded`` matrix taking one axis of a decoded picture to PDQ's 64 samples.

    It is the reference's filter-and-decimate for an axis of ``original`` pixels
    (two box passes, then the samples at int((i + 0.5) * original / 64)), with
    each original pixel's weight given to the decoded pixels that cover it, in
    proportion to the overlap. ``decoded == original`` is the reference itself.
    """
    window = (original + 2 * 64 - 1) // (2 * 64)
    rows = np.zeros((64, original))
    rows[np.arange(64), [int(((i + 0.5) * original) / 64) for i in range(64)]] = 1.0
    for _ in range(_PDQ_PASSES):
        rows = _box_transpose(rows, window)
    if decoded != original:
        # Integrate the per-pixel weights over each decoded pixel's footprint.
        scale = original / decoded
        edges = np.minimum(np.arange(decoded + 1) * scale, original)
        cum = np.zeros((64, original + 1))
        np.cumsum(rows, axis=1, out=cum[:, 1:])
        whole = np.minimum(np.floor(edges).astype(int), original - 1)
        padded = np.concatenate([rows, np.zeros((64, 1))], axis=1)
        at = cum[:, whole] + (edges - whole) * padded[:, whole]
        rows = at[:, 1:] - at[:, :-1]
    return np.ascontiguousarray(rows, dtype=np.float32)


def _original_dims(picture: Picture) -> tuple[int, int]:
    """(rows, cols) of the photo the decoded pixels were scaled from.

    Only a uniform downscale of the stored image (draft decode, area shrink)
    is folded back to the original's dimensions; anything else (a crop handed
    in with its parent's size) is hashed as the picture it is.
    """
    rows, cols = picture.rgb.shape[:2]
    orig_cols, orig_rows = picture.original_size
    if (rows, cols) == (orig_rows, orig_cols) or rows > orig_rows or cols > orig_cols:
        return rows, cols
    fy, fx = orig_rows / rows, orig_cols / cols
    # A draft decode rounds each side up and a resize rounds to the nearest pixel.
    if abs(fy - fx) > max(fy, fx) * (1.0 / min(rows, cols) + 0.01):
        return rows, cols
    return orig_rows, orig_cols


def pdq_buffer(picture: Picture, side: int | None = PDQ_SIDE) -> np.ndarray:
    """PDQ's 64x64 float luma downsample of ``picture`` shrunk to ``side`` (None: as
    it is), cached on the picture."""
    key = ("pdq_buffer", side)
    if key not in picture._cache:
        small = picture if side is None else picture.shrunk(side)
        rgb = small.rgb
        if small.grey:
            luma = _PDQ_GREY_LUMA[rgb[:, :, 0]]
        else:
            r, g, b = _PDQ_LUMA
            luma = (rgb[:, :, 0] * r + rgb[:, :, 1] * g + rgb[:, :, 2] * b).astype(np.float32)
        orig_rows, orig_cols = _original_dims(small)
        rows = pdq_axis_filter(orig_rows, luma.shape[0])
        cols = pdq_axis_filter(orig_cols, luma.shape[1])
        picture._cache[key] = (rows @ luma) @ cols.T
    return picture._cache[key]


def pdq_quality(buffer: np.ndarray) -> int:
    """The reference's quality: significant gradients of the 64x64 buffer, 0-100."""
    hundred, full = np.float32(100), np.float32(255)
    down = np.trunc((buffer[:-1, :] - buffer[1:, :]) * hundred / full)
    across = np.trunc((buffer[:, :-1] - buffer[:, 1:]) * hundred / full)
    gradient = int(np.abs(down).sum() + np.abs(across).sum())
    return min(100, gradient // 90)


def pdq_coefficients(picture: Picture, side: int | None = PDQ_SIDE) -> tuple[np.ndarray, int]:
    """The 16x16 DCT coefficients PDQ thresholds, and the quality (0-100)."""
    key = ("pdq_coefficients", side)
    cached = picture._cache.get(key)
    if cached is not None:  # the pdq signal and the linker's print ask for the same DCT
        return cached
    rows, cols = _original_dims(picture)  # the reference judges the photo, not our copy
    if rows < _PDQ_MIN_SIDE or cols < _PDQ_MIN_SIDE:
        out = np.zeros((16, 16), dtype=np.float32), 0
    else:
        buffer = pdq_buffer(picture, side)
        out = (_PDQ_DCT @ buffer) @ _PDQ_DCT.T, pdq_quality(buffer)
    picture._cache[key] = out
    return out


def pdq_bits(coeffs: np.ndarray) -> np.ndarray:
    """Packed 256-bit hash: coefficient above the median, in pdqhash's bit order."""
    flat = coeffs.ravel()
    median = np.partition(flat, 127)[127]  # the reference's torben(): the 128th smallest of 256
    return np.packbits((flat > median)[::-1].astype(np.uint8))


def pdq_bits_dihedral(coeffs: np.ndarray) -> list[np.ndarray]:
    """:func:`pdq_bits` of every :data:`PDQ_DCT_DIHEDRAL` transform of ``coeffs``, in its order,
    computed together (one partition and one packbits for the eight: the linker's print and
    the query's variants need all of them for every image)."""
    stack = np.stack([transform(coeffs).ravel() for transform in PDQ_DCT_DIHEDRAL.values()])
    medians = np.partition(stack, 127, axis=1)[:, 127:128]
    return list(np.packbits((stack > medians)[:, ::-1], axis=1))


def _dct_sign(parity_of: str) -> np.ndarray:
    i, j = np.indices((16, 16))
    odd = {"row": i % 2, "col": j % 2, "sum": (i + j) % 2}[parity_of]
    return np.where(odd == 1, 1.0, -1.0).astype(np.float32)


# Made once: building them on every call was a third of the linker's print (issue 21).
_SIGN_ROW, _SIGN_COL, _SIGN_SUM = _dct_sign("row"), _dct_sign("col"), _dct_sign("sum")

# Each symmetry of the picture as the reference applies it to the DCT (dct16OriginalTo*).
PDQ_DCT_DIHEDRAL: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "original": lambda c: c,
    "rotate90": lambda c: (c * _SIGN_COL).T,
    "rotate180": lambda c: c * -_SIGN_SUM,
    "rotate270": lambda c: (c * _SIGN_ROW).T,
    "flip_x": lambda c: c * _SIGN_ROW,
    "flip_y": lambda c: c * _SIGN_COL,
    "flip_plus1": lambda c: c.T,
    "flip_minus1": lambda c: (c * -_SIGN_SUM).T,
}


# The first 8 rows of scipy.fftpack's unnormalised DCT-II of length 32 (2 cos(pi k (2n+1) / 64)).
_PHASH_DCT = 2.0 * np.cos(np.pi * np.arange(8)[:, None] * (2 * np.arange(32)[None, :] + 1) / 64.0)


def _phash(img: Image.Image) -> imagehash.ImageHash:
    """imagehash's pHash (hash_size 8, highfreq_factor 4), with the DCT as two small matrix products.

    imagehash imports SciPy's fftpack for its DCT on the first pHash, which
    costs more than a crawl of a few hundred small photos takes to hash; only
    the 8x8 low frequencies are kept, so ``D @ P @ D.T`` with D the first 8 DCT
    rows is the same hash (tests compare with imagehash; float rounding can
    only move a coefficient that sits on the median).
    """
    pixels = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = _PHASH_DCT @ pixels @ _PHASH_DCT.T
    return imagehash.ImageHash(low > median(low))


def _whash(img: Image.Image) -> imagehash.ImageHash:
    """imagehash's Haar wHash (hash_size 8, image_scale 64), computed directly.

    With Haar wavelets the level-3 LL band of a 64x64 square is each 8x8
    block's sum divided by 8, and removing the coarsest LL band first
    (imagehash's ``remove_max_haar_ll``) subtracts the image mean, which shifts
    all coefficients and their median alike. So the hash is "8x8 block means
    above their median": identical bits (tests compare with imagehash) at a
    twentieth of pywt's cost.
    """
    pixels = np.asarray(img, dtype=np.float64)
    side = pixels.shape[0] // 8
    blocks = pixels.reshape(8, side, 8, side).mean(axis=(1, 3))
    return imagehash.ImageHash(blocks > median(blocks))


def median(values: np.ndarray) -> float:
    """``np.median`` of a finite float array, the same float: the middle value, or the two middle
    values' sum halved (numpy's mean of two). Why not np.median: its NaN check imports
    ``numpy.ma`` on the first call, 70 ms in every worker process of a crawl."""
    flat = np.sort(values, axis=None)
    mid = flat.size // 2
    return flat[mid] if flat.size % 2 else (flat[mid - 1] + flat[mid]) / 2.0


PHASH = register(_ImageHashSignal("phash", _phash, Thresholds(match=10, review=18)))
DHASH = register(_ImageHashSignal("dhash", imagehash.dhash, Thresholds(match=8, review=16)))
AHASH = register(_ImageHashSignal("ahash", imagehash.average_hash, Thresholds(match=4, review=10)))
WHASH = register(_ImageHashSignal("whash", _whash, Thresholds(match=4, review=10)))
PDQ = register(PdqSignal())
