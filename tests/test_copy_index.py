"""The local-feature store: keypoint selection and the descriptor index's life cycle.

Why these matter: a copy that keeps only a corner of a photo is found only if
the reference stored keypoints in that corner (grid spread) and if flat photos
yield keypoints at all (adaptive contrast); and the inverted file must be
trained when indexing ends, not by whichever query comes first.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import faiss
import numpy as np
import pytest
from PIL import Image

from indexer import images, ingest
from indexer.signals import base as signals
from indexer.signals import local
from indexer.store import features
from indexer.store.features import LocalIndexSet
from indexer.store.store import Store
from tests.conftest import FIXTURES, jpeg_bytes

IN_BANK = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"]


def test_spread_keeps_keypoints_in_every_cell() -> None:
    rng = np.random.default_rng(3)
    # 400 strong points crowd the top-left quarter; 400 weak ones are spread everywhere.
    xy = np.concatenate([rng.uniform(0, 50, (400, 2)), rng.uniform(0, 100, (400, 2))]).astype(np.float32)
    response = np.concatenate([rng.uniform(10, 20, 400), rng.uniform(0, 1, 400)]).astype(np.float32)
    kept = local.spread_order(xy, response, (100, 100), 64, cells=4)
    assert len(kept) == 64 and len(set(kept.tolist())) == 64
    cells = {(int(x // 25), int(y // 25)) for x, y in xy[kept]}
    assert len(cells) == 16
    # By strength alone every kept point would be a crowded one.
    strongest = np.argsort(-response)[:64]
    assert {(int(x // 25), int(y // 25)) for x, y in xy[strongest]} <= {(0, 0), (0, 1), (1, 0), (1, 1)}
    # Within the budget, each cell still keeps its strongest first.
    few = local.spread_order(xy, response, (100, 100), 16, cells=4)
    for i in few:
        cell = (xy[:, 0] // 25 == xy[i, 0] // 25) & (xy[:, 1] // 25 == xy[i, 1] // 25)
        assert response[i] == response[cell].max()


def test_flat_photo_still_yields_keypoints() -> None:
    # A low-contrast picture (smooth shading and faint blobs), like sky or a wall.
    rng = np.random.default_rng(5)
    base = cv2.GaussianBlur(rng.normal(0, 1, (300, 400)).astype(np.float32), (0, 0), 6)
    grey = np.clip(128 + 6 * base / base.std(), 0, 255).astype(np.uint8)
    picture = images.load(jpeg_bytes(Image.fromarray(grey).convert("RGB"), 95))
    default = cv2.SIFT_create().detect(local.feature_frame(picture)[0], None)
    ours = local.extract_features(picture)
    assert len(ours) >= 2 * max(len(default), 1)
    assert len(ours) >= 100


def test_descriptor_index_is_trained_when_indexing_ends(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # A bank small enough for a test, made to cross the inverted-file size.
    monkeypatch.setattr(features, "IVF_MIN_DESCRIPTORS", 1000)
    store = Store(tmp_path / "data")
    bank = store.catalog.ensure_bank("b", "ads")
    names = [s.name for s in signals.select(["hashes", "local"])]
    records = [ingest.Record(FIXTURES / n, Path(n).stem, n) for n in IN_BANK]
    report = ingest.index_records(store, bank, records, names)
    assert report.indexed == len(IN_BANK)

    # Before any query: the file is there, trained, holds every keypoint, and is current.
    path = LocalIndexSet(store.data_dir, store.catalog).path(bank.id)
    saved = features.LocalFeatureIndex.from_bytes(path.read_bytes())
    assert saved.is_ivf and saved.index.is_trained
    assert isinstance(saved.index, faiss.IndexIVF)
    assert saved.n_vectors == len(IN_BANK) and saved.trained_for > 0
    assert saved.revision == store.catalog.revision(bank.id, local.SIFT.name)
    with store.catalog.session() as s:
        from sqlalchemy import select

        from indexer.store.catalog import Vector
        blobs = s.scalars(select(Vector.data).where(Vector.bank_id == bank.id,
                                                     Vector.signal == local.SIFT.name)).all()
    assert len(saved) == sum(len(local.unpack(bytes(b))) for b in blobs)
    # A matcher on the same store shares the index the indexer filled: nothing left to build.
    assert bank.id in features.for_store(store)._indexes
    # The keypoint records live in the catalog and the descriptor index only: no generic
    # vector index duplicates them (67 KB a photo, 6.8 GB at 100,000 photos).
    assert not store.indexes.path(bank.id, local.SIFT.name).exists()
    assert local.SIFT.name not in store.index_signals(bank)
    assert "pdq" in store.index_signals(bank)
    with pytest.raises(ValueError, match="its own index"):
        store.indexes.get(bank.id, local.SIFT.name)


def test_hash_only_ingest_builds_no_descriptor_index(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    bank = store.catalog.ensure_bank("h", "ads")
    names = [s.name for s in signals.select(["hashes"])]
    ingest.index_records(store, bank, [ingest.Record(FIXTURES / IN_BANK[0], "a", IN_BANK[0])], names)
    assert not LocalIndexSet(store.data_dir, store.catalog).path(bank.id).exists()


def test_mirrored_features_are_what_sift_finds_on_the_mirrored_picture() -> None:
    picture = images.load(FIXTURES / "astronaut.png")
    plain = local.extract_features(picture, max_keypoints=1000, spread=False)
    flipped = local.extract_features(picture, max_keypoints=1000, spread=False, flip=True)
    permuted = local.mirrored(plain)
    pairs = local.mutual_matches(permuted.rootsift(), flipped.rootsift())
    same_place = np.linalg.norm(permuted.xy[pairs[:, 0]] - flipped.xy[pairs[:, 1]], axis=1) < 1.0
    assert same_place.sum() > 0.8 * len(plain)
    # Unpermuted descriptors of a mirrored picture mostly do not match at all.
    assert len(local.mutual_matches(plain.rootsift(), flipped.rootsift())) < 0.2 * len(plain)


def test_large_banks_get_a_product_quantised_index_that_still_finds_copies(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Thresholds lowered so that four photos count as a large bank.
    monkeypatch.setattr(features, "IVF_MIN_DESCRIPTORS", 1000)
    monkeypatch.setattr(features, "PQ_MIN_DESCRIPTORS", 1000)
    store = Store(tmp_path / "data")
    bank = store.catalog.ensure_bank("b", "ads")
    names = [s.name for s in signals.select(["hashes", "local"])]
    ingest.index_records(store, bank, [ingest.Record(FIXTURES / n, Path(n).stem, n) for n in IN_BANK],
                         names)
    index = features.for_store(store).get(bank.id)
    assert index.is_pq and index.index.code_size == features.PQ_BYTES
    reloaded = features.LocalFeatureIndex.from_bytes(
        LocalIndexSet(store.data_dir, store.catalog).path(bank.id).read_bytes())
    assert reloaded.is_pq and len(reloaded) == len(index)

    from matcher.search import decide
    from matcher.search.query import Matcher
    img = Image.open(FIXTURES / "chelsea.png").convert("RGB")
    w, h = img.size
    best = Matcher(store).match(jpeg_bytes(img.crop((w // 4, h // 4, w * 3 // 4, h * 3 // 4))),
                                [bank])[0]
    assert best.label == "chelsea" and best.decision == decide.MATCH


def test_inverted_lists_are_no_more_than_the_sample_trains(capfd: pytest.CaptureFixture[str]) -> None:
    # A bank just past the inverted-file size whose photos have fewer keypoints than the cap:
    # 80 photos count as 40,960 descriptors (1,024 lists by the square-root rule), but the
    # sample holds 38,150 rows, too few for FAISS's 39 per list.
    rows = np.random.default_rng(5).random((38_150, local.DESCRIPTOR_DIM), dtype=np.float32)
    index = features.LocalFeatureIndex.empty(80 * local.MAX_KEYPOINTS, rows)
    assert index.is_ivf
    assert index.index.nlist == 512
    assert index.index.nlist * features.MIN_TRAIN_PER_LIST <= len(rows)
    assert "WARNING clustering" not in capfd.readouterr().err
    # Enough rows: the square-root rule alone, as before.
    assert features.nlist_for(80 * local.MAX_KEYPOINTS) == 1024
    assert features.nlist_for(80 * local.MAX_KEYPOINTS, 1024 * 40) == 1024
    # Never below FAISS's guideline's floor of 256 lists.
    assert features.nlist_for(30_000, 1_000) == 256


def test_banks_of_a_few_dozen_photos_are_searched_through_an_inverted_file() -> None:
    # The flat search's cost grows with every stored descriptor (linking searches each new
    # photo twice): from about 40 photos on, a bank is shortlisted through an inverted file.
    assert features.IVF_MIN_DESCRIPTORS <= 40 * local.MAX_KEYPOINTS
    few = features.LocalFeatureIndex.empty(30 * local.MAX_KEYPOINTS,
                                           np.zeros((15_360, local.DESCRIPTOR_DIM), np.float32))
    assert not few.is_ivf
