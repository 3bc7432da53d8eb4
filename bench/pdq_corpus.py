"""Realistic PDQ hash sets for the scale benchmark: real photos' hashes and perturbed copies.

Uniform random 256-bit codes flatter a multi-index hash: every 16-bit substring
bucket holds the same number of hashes. Real PDQ hashes are not uniform (bits
correlate with image structure; flat or similar photos share substrings), so
the benchmark starts from the PDQ hashes of the benchmark photos under
``../shared/bench`` (computed once with ``pdqhash.compute`` and cached), and
grows them to millions with what a reference bank really holds: near-duplicates
(re-encodes, crops: a few bits apart) and further copies at several distances.
Benchmark-only: tests never read ../shared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def real_hashes(suite_root: Path, cache: Path) -> np.ndarray:
    """The packed (n, 32) uint8 PDQ hashes of every photo under ``suite_root``, cached."""
    if cache.exists():
        return np.load(cache)
    import pdqhash
    from PIL import Image

    out = []
    for path in sorted(suite_root.rglob("*.jpg")):
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        bits, quality = pdqhash.compute(rgb)
        if quality >= 50:  # reunite indexes only hashes of PDQ quality >= 50
            out.append(np.packbits(np.asarray(bits, dtype=np.uint8)))
    codes = np.unique(np.stack(out), axis=0)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, codes)
    return codes


def flip_bits(codes: np.ndarray, flips: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``codes`` with up to ``flips[i]`` random bits flipped in row i.

    Positions are drawn independently, so two draws of one bit cancel and a row
    may end a few bits short of ``flips[i]``; the benchmark checks exactness
    against a flat scan, not these nominal distances.
    """
    out = codes.copy()
    width = codes.shape[1] * 8
    for t in range(int(flips.max(initial=0))):
        rows = np.flatnonzero(flips > t)
        pos = rng.integers(0, width, len(rows))
        out[rows, pos >> 3] ^= (1 << (7 - (pos & 7))).astype(np.uint8)
    return out


def grow(seeds: np.ndarray, n: int, rng: np.random.Generator, chunk: int = 500_000) -> np.ndarray:
    """``n`` hashes grown from ``seeds`` as a bank of millions of ad photos holds them.

    A few thousand real photos cannot each have thousands of copies in a real
    bank, so the hashes are of three kinds:

    * 40% "other photos": a real hash with 48-96 random bits flipped: as far
      from it as unrelated photos are from each other (PDQ: ~128, and real
      pairs of different photos often nearer), yet keeping its substrings'
      skew, which is what a multi-index hash feels;
    * 40% near-duplicates (1-12 bits: re-encodes, resizes, small crops, the
      pairs a radius-31 lookup must find) of a hash grown earlier, so that
      re-posted photos form clusters of every size;
    * 20% further copies (13-48 bits: heavy edits, the edge of the radius).
    """
    out = np.empty((n, seeds.shape[1]), dtype=np.uint8)
    done = 0
    while done < n:
        m = min(chunk, n - done)
        kind = rng.random(m)
        # Other photos come from a real hash; copies from any hash grown before.
        base = seeds[rng.integers(0, len(seeds), m)]
        if done:
            copies = kind >= 0.4
            base[copies] = out[rng.integers(0, done, int(copies.sum()))]
        flips = np.select([kind < 0.4, kind < 0.8],
                          [rng.integers(48, 97, m), rng.integers(1, 13, m)], rng.integers(13, 49, m))
        out[done:done + m] = flip_bits(base, flips, rng)
        done += m
    return out


def queries(bank: np.ndarray, seeds: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Lookups as a hotline sends them: copies of banked and of real hashes at 0-40 bits, and
    unrelated photos (a real hash with 48-96 bits flipped), a third each."""
    third = n // 3
    a = flip_bits(bank[rng.integers(0, len(bank), third)], rng.integers(0, 41, third), rng)
    b = flip_bits(seeds[rng.integers(0, len(seeds), third)], rng.integers(0, 41, third), rng)
    rest = n - 2 * third
    c = flip_bits(seeds[rng.integers(0, len(seeds), rest)], rng.integers(48, 97, rest), rng)
    q = np.concatenate([a, b, c])
    return q[rng.permutation(len(q))]
