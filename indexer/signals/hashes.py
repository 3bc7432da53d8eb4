"""Perceptual hashes: pHash, dHash, aHash, wHash (imagehash) and PDQ (pdqhash).

Why several: each hash fails differently. pHash and PDQ (DCT based) survive
recompression, resizing and mild colour edits; dHash (gradients) is robust to
brightness shifts; wHash to blur. PDQ is the common currency of hash exchange
(StopNCII, ThreatExchange) and carries a quality score that tells us when a
hash is too flat to trust.

Speed: all five are computed from ONE decoded picture. The imagehash family
only ever looks at a tiny grey square (at most 64x64), so that square is made
once and each hash resamples it; PDQ works on the picture shrunk to a long side
of 256 px (PDQ itself reduces every picture to 64x64 with Jarosz box filters,
so 4x oversampling is plenty). Together with the JPEG draft decode in
:mod:`indexer.images`, which then decodes large photos at 1/2..1/8 scale, this
is what makes indexing several times faster than calling each library on its
own full decode (bench/hash_throughput.py).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import imagehash
import numpy as np
import pdqhash
from PIL import Image

from indexer.images import Picture
from indexer.signals.base import Signal, SignalVector, Thresholds, VectorKind, register

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
        small = picture.shrunk(PDQ_SIDE).rgb
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
        rgb = picture.shrunk(PDQ_SIDE).rgb
        bits, quality = pdqhash.compute(np.ascontiguousarray(rgb))
        return [SignalVector(self.name, np.packbits(bits.astype(np.uint8)),
                             quality=quality / 100.0)]

    def variants(self, picture: Picture) -> list[tuple[str, SignalVector]]:
        rgb = picture.shrunk(PDQ_SIDE).rgb
        hashes, quality = pdqhash.compute_dihedral(np.ascontiguousarray(rgb))
        return [
            (name, SignalVector(self.name, np.packbits(h.astype(np.uint8)),
                                quality=quality / 100.0, extra={"transform": name}))
            for name, h in zip(DIHEDRAL, hashes, strict=True)
        ]


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
    return imagehash.ImageHash(blocks > np.median(blocks))


PHASH = register(_ImageHashSignal("phash", imagehash.phash, Thresholds(match=10, review=18)))
DHASH = register(_ImageHashSignal("dhash", imagehash.dhash, Thresholds(match=8, review=16)))
AHASH = register(_ImageHashSignal("ahash", imagehash.average_hash, Thresholds(match=4, review=10)))
WHASH = register(_ImageHashSignal("whash", _whash, Thresholds(match=4, review=10)))
PDQ = register(PdqSignal())
