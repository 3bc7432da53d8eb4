"""One conformance test run over every registered signal.

Whatever a signal computes, users rely on the same contract: the same image
gives the same vectors, vectors survive serialisation, a re-encoded copy stays
within the signal's review distance, vectors have the declared size, and bad
input is refused with a typed error rather than garbage vectors.
"""

from __future__ import annotations

import numpy as np
import pytest

from indexer import images, pipeline
from indexer.signals import base as signals
from indexer.signals.base import VectorKind
from tests.conftest import jpeg_bytes, photo, png_bytes

ALL = signals.all_signals()
# A photo with a face, texture and structure, so every family finds something.
SOURCE = photo("astronaut.png")


@pytest.fixture(scope="module")
def original() -> bytes:
    return png_bytes(SOURCE)


@pytest.mark.parametrize("signal", ALL, ids=lambda s: s.name)
def test_declares_its_shape(signal: signals.Signal) -> None:
    assert signal.name and signal.family and signal.dim > 0
    assert signal.kind in (VectorKind.BINARY, VectorKind.FLOAT)
    t = signal.default_thresholds
    assert 0 <= t.match <= t.review <= signal.max_distance()
    assert signals.get(signal.name) is signal


@pytest.mark.parametrize("signal", ALL, ids=lambda s: s.name)
def test_is_deterministic_and_sized(signal: signals.Signal, original: bytes) -> None:
    a = pipeline.extract(original, [signal.name]).vectors
    b = pipeline.extract(original, [signal.name]).vectors
    assert a, f"{signal.name} found nothing in the reference photo"
    assert [v.vector.tobytes() for v in a] == [v.vector.tobytes() for v in b]
    for v in a:
        assert v.signal == signal.name
        assert v.vector.dtype == signal.dtype and v.vector.nbytes == signal.nbytes
        if v.quality is not None:
            assert 0.0 <= v.quality <= 1.0


@pytest.mark.parametrize("signal", ALL, ids=lambda s: s.name)
def test_serialisation_round_trip(signal: signals.Signal, original: bytes) -> None:
    for v in pipeline.extract(original, [signal.name]).vectors:
        assert np.array_equal(signal.from_hex(signal.to_hex(v.vector)), v.vector)
        assert np.array_equal(signal.from_bytes(signal.to_bytes(v.vector)), v.vector)
    with pytest.raises(ValueError):
        signal.from_hex("zz")
    with pytest.raises(ValueError):
        signal.from_bytes(b"\x00")


@pytest.mark.parametrize("signal", ALL, ids=lambda s: s.name)
def test_robust_to_reencoding(signal: signals.Signal, original: bytes) -> None:
    ref = pipeline.extract(original, [signal.name]).vectors
    half = SOURCE.resize((SOURCE.width // 2, SOURCE.height // 2))
    copy = pipeline.extract(jpeg_bytes(half, quality=50), [signal.name]).vectors
    assert copy, f"{signal.name} lost the picture after re-encoding"
    best = min(signal.distance(a.vector, b.vector) for a in ref for b in copy)
    assert best <= signal.default_thresholds.review


@pytest.mark.parametrize("signal", ALL, ids=lambda s: s.name)
def test_unrelated_photo_is_far(signal: signals.Signal, original: bytes) -> None:
    ref = pipeline.extract(original, [signal.name]).vectors
    other = pipeline.extract(png_bytes(photo("coffee.png")), [signal.name]).vectors
    if not other:
        return  # nothing found is the right answer for a signal that has nothing to say
    best = min(signal.distance(a.vector, b.vector) for a in ref for b in other)
    assert best > signal.default_thresholds.match


@pytest.mark.parametrize("signal", ALL, ids=lambda s: s.name)
@pytest.mark.parametrize("bad", [b"", b"GIF89a-truncated", b"plain text, not a picture"])
def test_bad_input_raises_typed_error(signal: signals.Signal, bad: bytes) -> None:
    with pytest.raises(images.ImageError):
        pipeline.extract(bad, [signal.name])


def test_one_decode_serves_every_hash() -> None:
    names = [s.name for s in signals.select(["hashes"])]
    assert {"pdq", "phash", "dhash", "ahash", "whash"} <= set(names)
    out = pipeline.extract(jpeg_bytes(SOURCE), names, with_variants=True)
    assert sorted(v.signal for v in out.vectors) == sorted(names)
    assert len(out.variants["pdq"]) == 8  # the dihedral group
    assert len(out.sha256) == 64


def test_unknown_family_is_named_in_the_error() -> None:
    with pytest.raises(KeyError, match="nonsense"):
        signals.select(["nonsense"])


def test_fast_whash_equals_imagehash() -> None:
    import imagehash

    from indexer.signals.hashes import _whash
    from tests.conftest import tiles

    total = 0
    for tile in tiles(50, size=64, seed=11):
        grey = tile.convert("L")
        total += imagehash.whash(grey, image_scale=64) - _whash(grey)
    assert total <= 3  # float ties only: at most a few bits in 3,200


def test_fast_phash_equals_imagehash_without_scipy() -> None:
    import subprocess
    import sys

    import imagehash

    from indexer.signals.hashes import _phash
    from tests.conftest import ROOT, photo, tiles

    total = 0
    pictures = [*tiles(60, size=96, seed=12), *(photo(p) for p in ("astronaut.png", "brick.png"))]
    for tile in pictures:
        total += imagehash.phash(tile) - _phash(tile)
    assert total <= 3  # float ties on the median only
    # Hashing a picture must not load SciPy (imagehash's pHash imports scipy.fftpack).
    probe = ("import sys; from indexer import pipeline; from tests.conftest import jpeg_bytes, tiles; "
             "pipeline.extract(jpeg_bytes(tiles(1)[0]), ['phash', 'dhash', 'ahash', 'whash', 'pdq']); "
             "print('scipy' in sys.modules, 'numpy.ma' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    # Nor numpy.ma (np.median's NaN check imports it: 70 ms in each worker of a crawl).
    assert done.stdout.strip() == "False False", done.stderr[-1000:]


def test_median_is_numpys_median_to_the_bit() -> None:
    from indexer.signals.hashes import median

    rng = np.random.default_rng(5)
    for size in (64, 63, 2, 1):
        for _ in range(200):
            values = rng.normal(size=size) * 10.0 ** rng.integers(-3, 4)
            values[: size // 3] = values[-1]  # ties, as flat squares give
            assert median(values) == np.median(values)
            assert median(values.reshape(-1, 1)) == np.median(values)


def _odd_greys() -> list[bytes]:
    """Photos whose grey decode takes each route: JPEG luma drafts, grey and palette PNGs, CMYK,
    an EXIF quarter turn, a large JPEG drafted down, a framed photo (the print's trimmed crop)."""
    import io

    from PIL import Image

    from tests.conftest import jpeg_bytes, photo, png_bytes

    cat = photo("chelsea.png").convert("RGB")
    framed = Image.new("RGB", (400, 400), (255, 255, 255))
    framed.paste(cat.resize((300, 200)), (50, 100))
    turned = io.BytesIO()
    grey = cat.convert("L")
    exif = grey.getexif()
    exif[0x0112] = 6
    grey.save(turned, "JPEG", exif=exif.tobytes())
    cmyk = io.BytesIO()
    cat.convert("CMYK").save(cmyk, "JPEG")
    return [jpeg_bytes(cat), jpeg_bytes(cat.convert("L")), png_bytes(cat.convert("L")),
            png_bytes(cat.convert("LA")), png_bytes(cat.convert("P")), cmyk.getvalue(), turned.getvalue(),
            jpeg_bytes(cat.resize((1800, 1200))), jpeg_bytes(framed), jpeg_bytes(framed.convert("L")),
            png_bytes(photo("astronaut.png"))]


def test_grey_decodes_hash_as_the_rgb_formulas_do() -> None:
    """A grey decode (three equal channels) reads PDQ's luma from a table and the hashes' grey
    square from one channel, and a luma decode skips Pillow's L -> RGB -> L: the same bits as the
    RGB formulas on the same pixels."""
    import dataclasses

    from PIL import Image

    from indexer.signals.hashes import grey_square, pdq_buffer
    from matcher.networks.prints import print_of

    levels = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16), "L")
    assert np.array_equal(np.asarray(levels.convert("RGB").convert("L")), np.asarray(levels))
    names = [s.name for s in signals.select(["hashes"])]
    for data in _odd_greys():
        fast = images.load(data, max_side=256, grey=True)
        assert fast.grey
        slow = dataclasses.replace(fast, grey=False, _cache={})
        assert np.array_equal(pdq_buffer(fast), pdq_buffer(slow))
        assert np.array_equal(grey_square(fast), grey_square(slow))
        assert print_of(fast) == print_of(slow)
        fast_out = pipeline.extract_picture(data, fast, names, with_variants=True)
        slow_out = pipeline.extract_picture(data, slow, names, with_variants=True)
        assert [v.vector.tobytes() for v in fast_out.vectors] == [
            v.vector.tobytes() for v in slow_out.vectors]
        assert [v.quality for v in fast_out.vectors] == [v.quality for v in slow_out.vectors]
        for name, variants in fast_out.variants.items():
            assert [v.vector.tobytes() for _n, v in variants] == [
                v.vector.tobytes() for _n, v in slow_out.variants[name]]
    assert not images.load(_odd_greys()[0], max_side=256).grey  # a colour decode is never marked
