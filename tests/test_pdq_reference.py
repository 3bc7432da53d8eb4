"""reunite's PDQ speaks the reference's language (issue 14).

A partner's PDQ list is made by the reference (``pdqhash.compute``, Meta's C++
hasher) on the full decode of each photo. These tests pin reunite's PDQ to it:
bit for bit where reunite hashes the full decode, within a few bits where it
folds the reference's filter onto its 256-px copy, and within a few bits of the
hashes ThreatExchange publishes for its own test images (fixtures/pdq, BSD).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pdqhash
import pytest
from PIL import Image, ImageOps

from indexer import images, pipeline
from indexer.signals import base as signals
from indexer.signals import hashes

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PUBLISHED = {
    path: digest
    for digest, _quality, path in (
        line.split(",") for line in (FIXTURES / "pdq" / "expected.csv").read_text().split()
    )
}
# Photos larger than the 256-px copy the hashes work from (300-640 px).
LARGER = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png", "brick.png"]
HASH_NAMES = [s.name for s in signals.select(["hashes"])]


def _bits(vector: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.asarray(vector, dtype=np.uint8))


def _distance(a: np.ndarray, b: np.ndarray) -> int:
    return int((np.asarray(a) != np.asarray(b)).sum())


def _reference(data: bytes) -> tuple[np.ndarray, int, list[np.ndarray]]:
    """pdqhash on the full, EXIF-upright RGB decode: hash, quality, dihedral hashes."""
    rgb = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    bits, quality = pdqhash.compute(rgb)
    variants, _ = pdqhash.compute_dihedral(rgb)
    return bits, quality, variants


def _reunite(data: bytes) -> tuple[np.ndarray, float, list[np.ndarray]]:
    """reunite's PDQ as indexing computes it (the hashes family, one decode) and its variants."""
    ex = pipeline.extract(data, HASH_NAMES, with_variants=True)
    vector = next(v for v in ex.vectors if v.signal == "pdq")
    return _bits(vector.vector), float(vector.quality), [_bits(v.vector) for _n, v in ex.variants["pdq"]]


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("name", [f"pdq/{p}" for p in PUBLISHED] + LARGER)
def test_on_the_full_decode_it_is_the_reference_bit_for_bit(name: str) -> None:
    data = (FIXTURES / name).read_bytes()
    ref, ref_quality, ref_variants = _reference(data)
    coeffs, quality = hashes.pdq_coefficients(images.load(data), side=None)
    assert _distance(_bits(hashes.pdq_bits(coeffs)), ref) == 0
    assert quality == ref_quality
    for (symmetry, transform), want in zip(hashes.PDQ_DCT_DIHEDRAL.items(), ref_variants, strict=True):
        assert _distance(_bits(hashes.pdq_bits(transform(coeffs))), want) == 0, symmetry


@pytest.mark.parametrize("path", sorted(PUBLISHED))
def test_published_hashes_of_threatexchange_images(path: str) -> None:
    """Indexing reproduces the hashes ThreatExchange publishes (measured: 0-2 bits; the
    reference itself is 0 here); images of 256 px or less equal the reference exactly."""
    data = (FIXTURES / "pdq" / path).read_bytes()
    mine, quality, _variants = _reunite(data)
    ref, ref_quality, _ = _reference(data)
    want = np.unpackbits(np.frombuffer(bytes.fromhex(PUBLISHED[path]), dtype=np.uint8))
    assert _distance(mine, want) <= 4
    assert round(quality * 100) == ref_quality == 100
    if max(Image.open(io.BytesIO(data)).size) <= hashes.PDQ_SIDE:
        assert _distance(mine, ref) == 0


@pytest.mark.parametrize("name", LARGER)
def test_larger_photos_hash_close_to_the_reference_on_their_full_decode(name: str) -> None:
    """Measured 0-4 bits (the reference run on the 256-px copy: 10-58)."""
    data = (FIXTURES / name).read_bytes()
    mine, quality, _variants = _reunite(data)
    ref, ref_quality, _ = _reference(data)
    assert _distance(mine, ref) <= 6
    assert abs(round(quality * 100) - ref_quality) <= 2


@pytest.mark.parametrize("name", [n for n in LARGER if n != "brick.png"])
def test_dihedral_variants_close_to_the_references(name: str) -> None:
    """Each of the eight variants against compute_dihedral on the full decode: measured
    <= 6 bits (rotating the 256-px copy instead: 14-24). Brick's fine periodic texture
    is left out: there the reference's own rotations disagree by 104 bits."""
    data = (FIXTURES / name).read_bytes()
    _mine, _q, variants = _reunite(data)
    _ref, _rq, ref_variants = _reference(data)
    for symmetry, mine, want in zip(hashes.PDQ_DCT_DIHEDRAL, variants, ref_variants, strict=True):
        assert _distance(mine, want) <= 10, symmetry


@pytest.mark.parametrize("name", [n for n in LARGER if n != "brick.png"])
@pytest.mark.parametrize(("symmetry", "op"), [
    ("rotate180", lambda a: np.rot90(a, 2)),
    ("flip_minus1", lambda a: np.rot90(a, 2).swapaxes(0, 1)),
])
def test_a_rotated_copy_lands_on_its_variant_as_the_references_does(name: str, symmetry: str, op) -> None:
    """The hash of a rotated or flipped file is as close to the original's variant of that
    symmetry as the reference's own (measured: equal, or 4 bits more, at most 22)."""
    data = (FIXTURES / name).read_bytes()
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    index = list(hashes.PDQ_DCT_DIHEDRAL).index(symmetry)
    _m, _q, variants = _reunite(data)
    turned, _tq, _tv = _reunite(_png(op(rgb)))
    ref_variants, _ = pdqhash.compute_dihedral(rgb)
    ref_turned, _ = pdqhash.compute(np.ascontiguousarray(op(rgb)))
    ours = _distance(turned, variants[index])
    assert ours <= _distance(ref_turned, ref_variants[index]) + 6
    assert ours <= hashes.PdqSignal.default_thresholds.match


def test_a_partners_hash_of_the_unrotated_file_is_one_of_the_variants() -> None:
    """A phone photo stored sideways with EXIF orientation 6: reunite hashes it upright,
    a partner's hasher may hash the stored pixels as they are. One of reunite's dihedral
    variants is that partner hash (measured: 0 bits), so a query still finds it."""
    upright = np.asarray(Image.open(FIXTURES / "coffee.png").convert("RGB"))
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # orientation 6: turn 90° clockwise to view
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, "JPEG", quality=95, exif=exif.tobytes())
    data = buf.getvalue()

    raw = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # no EXIF rotation
    partner, _ = pdqhash.compute(raw)
    mine, _q, variants = _reunite(data)
    upright_ref, _rq, _rv = _reference(data)
    assert images.load(data).size == (upright.shape[1], upright.shape[0])
    assert _distance(mine, upright_ref) <= 6  # the stored hash is the upright photo's
    assert _distance(mine, partner) > hashes.PdqSignal.default_thresholds.match  # ...not the partner's
    nearest = min(range(8), key=lambda i: _distance(variants[i], partner))
    assert list(hashes.PDQ_DCT_DIHEDRAL)[nearest] == "rotate90"
    assert _distance(variants[nearest], partner) <= 6
