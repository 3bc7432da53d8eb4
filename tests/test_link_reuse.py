"""Linking after `reunite index` reuses the indexing decode: no image file is read or decoded twice.

The indexing workers compute each new ad photo's link print (PDQ with its dihedral
variants, thumbnail, trimmed copy) from the picture they decoded for the signals, and
each stored batch writes them; the linker then searches by those prints. Pinned here by
removing the photos between indexing and linking: every image is still searched by its
full print (a mirrored repost still links, which the stored PDQ alone could not do).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import select

from api.cli.main import link_staging, parse_signals
from indexer import ingest
from indexer.signals.hashes import PDQ_DCT_DIHEDRAL, pdq_bits, pdq_coefficients
from indexer.store.catalog import Subject
from indexer.store.store import Store
from matcher.networks.links import Linker, file_reader
from matcher.networks.store import AdLink, AdPrint
from tests.conftest import tiles


def test_linking_after_index_uses_the_prints_the_workers_made(tmp_path: Path) -> None:
    photos = tmp_path / "crawl"
    photos.mkdir()
    shots = tiles(4, size=160, seed=3)
    for i, tile in enumerate(shots):
        tile.save(photos / f"ad{i}.png")
    Image.fromarray(np.asarray(shots[0])[:, ::-1]).save(photos / "mirror.png")  # a mirrored repost of ad0
    store = Store(tmp_path / "data")
    bank = store.catalog.ensure_bank("ads", "ads")
    extras, after_batch = link_staging(store, bank)
    report = ingest.index_records(store, bank, ingest.iter_source(photos), parse_signals("hashes", "ads"),
                                  picture_extras=extras, after_batch=after_batch)
    assert report.indexed == 5
    with store.catalog.session() as s:
        staged = list(s.scalars(select(AdPrint)))
    assert len(staged) == 5 and all(row.variants and len(row.variants) == 8 * 32 for row in staged)

    for path in photos.iterdir():  # nothing left to read: linking must not need the files
        path.unlink()
    done = Linker(store).update(bank, read=file_reader())
    assert (done.images, done.images_from_vectors) == (5, 0)
    with store.catalog.session() as s:
        labels = {x.id: x.label for x in s.scalars(select(Subject))}
        pairs = {frozenset((labels[r.a], labels[r.b])) for r in s.scalars(select(AdLink))}
    assert frozenset(("ad0", "mirror")) in pairs


def test_print_variants_are_the_indexed_pdq_and_its_symmetries(tmp_path: Path) -> None:
    from indexer import images
    from matcher.networks.prints import print_of

    data = (tmp_path / "p.png")
    tiles(1, size=300, seed=5)[0].save(data)
    picture = images.load(data.read_bytes(), max_side=256, grey=True)
    mine = print_of(picture)
    coeffs, quality = pdq_coefficients(picture)
    assert mine.pdq == pdq_bits(coeffs).tobytes() and mine.quality == quality / 100.0
    assert mine.variants == [pdq_bits(t(coeffs)).tobytes() for t in PDQ_DCT_DIHEDRAL.values()]




def test_local_feature_links_come_from_the_stored_features(tmp_path: Path) -> None:
    """With local features (the ads default), the linker's copy search starts from the SIFT
    features indexing stored: a cropped repost, which no hash joins, still links after every
    photo was removed (before, linking decoded each image again and ran SIFT on it)."""
    from indexer.signals import base as signals
    from tests.conftest import jpeg_bytes, photo

    photos = tmp_path / "crawl"
    photos.mkdir()
    coffee = photo("coffee.png")
    w, h = coffee.size
    (photos / "orig.jpg").write_bytes(jpeg_bytes(coffee))
    (photos / "crop.jpg").write_bytes(jpeg_bytes(coffee.crop((w // 5, h // 6, w * 4 // 5, h * 5 // 6))))
    (photos / "other.jpg").write_bytes(jpeg_bytes(photo("brick.png")))
    store = Store(tmp_path / "data")
    bank = store.catalog.ensure_bank("ads", "ads")
    names = [s.name for s in signals.select(["hashes", "local"])]
    extras, after_batch = link_staging(store, bank)
    report = ingest.index_records(store, bank, ingest.iter_source(photos), names,
                                  picture_extras=extras, after_batch=after_batch)
    assert report.indexed == 3
    for path in photos.iterdir():
        path.unlink()
    done = Linker(store).update(bank, read=file_reader())
    assert (done.images, done.images_from_vectors) == (3, 0)
    with store.catalog.session() as s:
        labels = {x.id: x.label for x in s.scalars(select(Subject))}
        links = {frozenset((labels[r.a], labels[r.b])): r for r in s.scalars(select(AdLink))}
    assert set(links) == {frozenset(("orig", "crop"))}, set(links)
    assert links[frozenset(("orig", "crop"))].evidence.get("local_inliers", 0) > 0
