"""Catalog and vector indexes: atomic saves, staleness, rebuilds, deletes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from indexer import pipeline
from indexer.signals import base as signals
from indexer.store import vectors
from indexer.store.store import NewImage, Store
from tests.conftest import jpeg_bytes, tiles, vectors_for

HASHES = [s.name for s in signals.select(["hashes"])]


def _fill(store: Store, n: int, bank_name: str = "ads", seed: int = 0) -> None:
    bank = store.catalog.ensure_bank(bank_name, "ads")
    batch = [NewImage(pipeline.extract(jpeg_bytes(t), HASHES), f"ad-{i}", f"tile-{i}")
             for i, t in enumerate(tiles(n, seed=seed))]
    store.add_images(bank, batch)


def test_binary_index_knn_radius_remove() -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (50, 32), dtype=np.uint8)
    idx = vectors.FaissBinaryIndex(256)
    idx.add(np.arange(100, 150), data)
    assert len(idx) == 50
    hits = idx.search(data[:1], 3)[0]
    assert hits[0].vector_id == 100 and hits[0].distance == 0
    near = data[0].copy()
    near[0] ^= 0b111  # three bits away
    within = idx.radius_search(near[None], 3)[0]
    assert [h.vector_id for h in within] == [100]  # the radius is inclusive
    assert idx.radius_search(near[None], 2)[0] == []
    assert idx.remove(np.array([100])) == 1
    assert idx.search(data[:1], 1)[0][0].vector_id != 100


def test_float_index_reports_cosine_distance() -> None:
    idx = vectors.FaissFloatIndex(4)
    idx.add(np.array([1, 2]), np.array([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=np.float32))
    hits = idx.search(np.array([[2, 0, 0, 0]], dtype=np.float32), 2)[0]
    assert hits[0].vector_id == 1 and abs(hits[0].distance) < 1e-6
    assert abs(hits[1].distance - 1.0) < 1e-6
    assert [h.vector_id for h in idx.radius_search(np.array([[1, 0.1, 0, 0]]), 0.1)[0]] == [1]


def test_atomic_save_keeps_the_old_file_when_a_write_fails(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "idx" / "pdq.faiss"
    idx = vectors.FaissBinaryIndex(256)
    idx.add(np.array([1]), np.zeros((1, 32), np.uint8))
    idx.revision = 7
    vectors.save_atomically(idx, path)
    before = path.read_bytes()

    idx.add(np.array([2]), np.ones((1, 32), np.uint8))
    idx.revision = 8

    def crash(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        vectors.save_atomically(idx, path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["pdq.faiss"]  # no temp file left
    loaded = vectors.load_saved(signals.get("pdq"), path)
    assert loaded is not None and loaded.revision == 7 and len(loaded) == 1


def test_damaged_index_file_is_a_cache_miss(tmp_path: Path) -> None:
    path = tmp_path / "pdq.faiss"
    path.write_bytes(b"RUNIDX1\0" + b"\x01" * 8 + b"garbage")
    assert vectors.load_saved(signals.get("pdq"), path) is None
    assert vectors.load_saved(signals.get("pdq"), tmp_path / "missing.faiss") is None


def test_indexes_persist_and_reload(data_dir: Path, catalog_url: str | None) -> None:
    vectors_url = vectors_for(catalog_url)
    store = Store(data_dir, catalog_url, vectors_url)
    _fill(store, 12)
    store.checkpoint()
    bank = store.bank_or_error("ads")
    if vectors_url is None:  # FAISS: the index is saved in the folder
        assert store.indexes.path(bank.id, "pdq").exists()
    else:  # Milvus: the server holds the collection at the catalog's revision, nothing in the folder
        held = store.indexes.stored_revision(store.indexes.collection(bank.id, "pdq"))
        assert held == store.catalog.revision(bank.id, "pdq")
        assert not list((data_dir / "indexes").glob("**/*.faiss"))
    reopened = Store(data_dir, catalog_url, vectors_url)
    idx = reopened.indexes.get(bank.id, "pdq")
    assert len(idx) == 12 and idx.revision == reopened.catalog.revision(bank.id, "pdq")


def test_stale_or_missing_index_is_rebuilt_from_the_catalog(data_dir: Path, catalog_url: str | None) -> None:
    vectors_url = vectors_for(catalog_url)
    store = Store(data_dir, catalog_url, vectors_url)
    _fill(store, 8)
    store.checkpoint()
    bank = store.bank_or_error("ads")
    if vectors_url is None:
        old = store.indexes.path(bank.id, "pdq").read_bytes()
        # A second process adds images but "crashes" before saving its indexes.
        other = Store(data_dir, catalog_url)
        _fill(other, 5, seed=99)
        store.indexes.path(bank.id, "pdq").write_bytes(old)
    else:
        # A second process adds images to the catalog without Milvus (its own FAISS files): the
        # collections are behind the catalog's revision.
        other = Store(data_dir, catalog_url)
        _fill(other, 5, seed=99)
    fresh = Store(data_dir, catalog_url, vectors_url).indexes.get(bank.id, "pdq")
    assert len(fresh) == 13
    if vectors_url is None:
        store.indexes.path(bank.id, "phash").unlink()
    else:  # the collection dropped on the server
        store.indexes.client.drop_collection(store.indexes.collection(bank.id, "phash"))
    assert len(Store(data_dir, catalog_url, vectors_url).indexes.get(bank.id, "phash")) == 13


def test_adding_the_same_image_twice_is_idempotent(data_dir: Path, catalog_url: str | None) -> None:
    store = Store(data_dir, catalog_url, vectors_for(catalog_url))
    bank = store.catalog.ensure_bank("ads", "ads")
    ex = pipeline.extract(jpeg_bytes(tiles(1)[0]), HASHES)
    first = store.add_images(bank, [NewImage(ex, "ad-1")])
    second = store.add_images(bank, [NewImage(ex, "ad-2")])
    assert first[0][1] is True and second[0][1] is False
    assert store.catalog.count_items(bank.id) == 1
    assert len(store.indexes.get(bank.id, "pdq")) == 1


def test_deleting_items_removes_their_vectors_from_the_index(data_dir: Path, catalog_url: str | None) -> None:
    store = Store(data_dir, catalog_url, vectors_for(catalog_url))
    _fill(store, 6)
    bank = store.bank_or_error("ads")
    assert len(store.indexes.get(bank.id, "pdq")) == 6
    with store.catalog.session() as s:
        ids = [i.id for i in store.subject_items(s, store.catalog.subject_by_label(s, bank.id, "ad-0").id)]
        removed = store.catalog.delete_items(s, ids)
    assert len(removed["pdq"]) == 1
    assert len(store.indexes.get(bank.id, "pdq")) == 5
    assert store.catalog.count_items(bank.id) == 5


def test_bank_kind_conflicts_are_refused(data_dir: Path, catalog_url: str | None) -> None:
    store = Store(data_dir, catalog_url, vectors_for(catalog_url))
    store.catalog.ensure_bank("refs", "missing_person")
    with pytest.raises(ValueError, match="already exists with kind"):
        store.catalog.ensure_bank("refs", "ads")
    with pytest.raises(ValueError, match="unknown bank kind"):
        store.catalog.ensure_bank("x", "people")


def test_catalog_is_sqlite_in_wal_mode(data_dir: Path) -> None:
    store = Store(data_dir)
    with store.catalog.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert (data_dir / "catalog.sqlite").exists()


# --- catalog file permissions, schema step, enrolment paths --------------------------

def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_catalog_and_its_wal_and_shm_are_private_from_creation(data_dir: Path) -> None:
    old_umask = os.umask(0o022)  # the usual umask, under which files come out 0644
    try:
        store = Store(data_dir)
        _fill(store, 3)
        catalog = data_dir / "catalog.sqlite"
        companions = [catalog, *(catalog.with_name(f"catalog.sqlite-{end}") for end in ("wal", "shm"))]
        assert all(p.exists() for p in companions)  # WAL mode, a connection still open
        assert [_mode(p) for p in companions] == [0o600] * 3
        store.catalog.engine.dispose()
        # A data folder of an older version (0644 files) is narrowed on its next open.
        for p in companions:
            if p.exists():
                os.chmod(p, 0o644)
        again = Store(data_dir)
        _fill(again, 2, seed=5)
        assert {_mode(p) for p in companions if p.exists()} == {0o600}
        assert again.catalog.count_items(again.bank_or_error("ads").id) == 5
        again.catalog.engine.dispose()
    finally:
        os.umask(old_umask)


def test_an_old_catalog_without_the_review_version_column_opens_and_decides(data_dir: Path) -> None:
    import sqlite3

    from matcher.review import queue as review
    from matcher.search.query import Candidate

    store = Store(data_dir)
    bank = store.catalog.ensure_bank("ads", "ads")
    extraction = pipeline.extract(jpeg_bytes(tiles(1)[0]), HASHES)
    [(item, _)] = store.add_images(bank, [NewImage(extraction, "ad-0")])
    queue = review.ReviewQueue(store.catalog)
    cand = Candidate(bank="ads", label="ad-0", subject_id=item.subject_id, pseudonym=None, item=item.id,
                     score=0.9, decision="match")
    cid = queue.record([cand], {"ads": bank}, "query-0", "investigator")[0]
    store.catalog.engine.dispose()
    # The schema of a release before the column existed, which had no migrations either.
    with sqlite3.connect(data_dir / "catalog.sqlite") as conn:
        conn.execute("ALTER TABLE candidates DROP COLUMN version")
        conn.execute("DROP TABLE alembic_version")
        conn.execute("DROP TABLE catalog_meta")
    (data_dir / "catalog-id").unlink()
    conn.close()

    reopened = Store(data_dir)
    queue = review.ReviewQueue(reopened.catalog)
    row, decision = queue.decide(cid, "reviewer-1", "reviewer", "confirm")
    assert row.state == "confirmed" and row.version == 1 and decision.state_after == "confirmed"
    assert review.ReviewQueue(Store(data_dir).catalog).get(cid)[0].version == 1


def test_enrolment_keeps_no_file_path_and_old_paths_are_blanked(data_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    from indexer.crypto import KEY_ENV, generate_key

    monkeypatch.setenv(KEY_ENV, generate_key())  # enrolling a missing person needs the key

    from sqlalchemy import select, update

    from indexer import enroll
    from indexer.store.catalog import Item
    from tests.conftest import photo

    folder = tmp_path / "photos"
    folder.mkdir()
    ref = folder / "person1_JaneDoe.jpg"
    ref.write_bytes(jpeg_bytes(photo("astronaut.png")))
    today = dt.date.today()
    row = {"path": str(ref), "label": "case-7", "consent_by": "parent",
           "consent_date": (today - dt.timedelta(days=3)).isoformat(),
           "consent_expires": (today + dt.timedelta(days=300)).isoformat(), "case_ref": "CASE-7"}
    store = Store(data_dir)
    assert enroll.enroll_records(store, "families", "missing_person", [row])["enrolled"] == 1
    with store.catalog.session() as s:
        assert list(s.scalars(select(Item.source))) == ["manifest"]
    store.catalog.engine.dispose()
    assert b"JaneDoe" not in (data_dir / "catalog.sqlite").read_bytes()

    # A catalog written by an older version holds the path: the next open blanks it.
    with store.catalog.session() as s:
        s.execute(update(Item).values(source="photos/person1_JaneDoe.jpg"))
    store.catalog.engine.dispose()
    reopened = Store(data_dir)
    with reopened.catalog.session() as s:
        assert list(s.scalars(select(Item.source))) == ["manifest"]


def test_two_writers_storing_the_same_images_at_once_store_each_once(data_dir: Path,
                                                                    catalog_url: str | None) -> None:
    """Two stores on one folder (as two processes have) add overlapping batches at the same moment."""
    import threading

    writers = [Store(data_dir, catalog_url, vectors_for(catalog_url)) for _ in range(2)]
    banks = [w.catalog.ensure_bank("ads", "ads") for w in writers]
    pictures = tiles(60, seed=21)
    extractions = [pipeline.extract(jpeg_bytes(t), HASHES) for t in pictures]
    created: list[int] = []
    for start in range(0, 60, 6):
        chunk = list(range(start, start + 6))
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def write(n: int, chunk: list[int] = chunk, barrier: threading.Barrier = barrier,
                  errors: list[BaseException] = errors) -> None:
            order = chunk if n == 0 else chunk[::-1]  # the same images and ads, in another order
            batch = [NewImage(extractions[k], f"ad-{k // 2}") for k in order]
            barrier.wait()
            try:
                created.append(sum(was_new for _item, was_new in writers[n].add_images(banks[n], batch)))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
    assert sum(created) == 60
    bank = writers[0].bank_or_error("ads")
    assert writers[0].catalog.count_items(bank.id) == 60
    assert len(writers[1].indexes.get(bank.id, "pdq")) == 60
    for w in writers:
        w.catalog.engine.dispose()
