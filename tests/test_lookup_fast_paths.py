"""The lean reads of a hash lookup answer exactly what the general ones do.

A partner lookup reads its hits as arrays (``VectorIndex.radius_arrays``), the
banks, the hits' owners and their subjects through Core statements or the
DB-API cursor instead of ORM sessions (BENCHMARKS.md, hash lookups over HTTP).
Each is compared here with the path it replaces, on real indexes and real
catalogs (SQLite and PostgreSQL), and the rows it returns behave as the ORM's
would: read anew on every call, and safe to hand back to a session.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, update

from indexer import pipeline
from indexer.signals.base import SignalVector
from indexer.store.catalog import Bank, Catalog, Item, Subject, Vector
from indexer.store.mih import MultiIndexHashIndex
from indexer.store.store import NewImage, Store
from indexer.store.vectors import FaissBinaryIndex, Hit, VectorIndex, hits_to_arrays


def _as_arrays(hits: list[Hit]) -> tuple[list[int], list[float]]:
    return [h.vector_id for h in hits], [h.distance for h in hits]


def _codes(n: int, seed: int = 0) -> np.ndarray:
    """Random codes with near copies, so that radii hold ties and crowds."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n // 4, 32), dtype=np.uint8)
    bits = np.unpackbits(base[rng.integers(0, len(base), n - len(base))], axis=1)
    flips = rng.random(bits.shape) < rng.uniform(0.0, 0.12, (len(bits), 1))
    return np.concatenate([base, np.packbits(bits ^ flips, axis=1)])


@pytest.mark.parametrize("kind", ["mih", "flat"])
def test_radius_arrays_are_radius_search_as_arrays(kind: str) -> None:
    codes = _codes(4000)
    ids = np.arange(10, 10 + len(codes), dtype=np.int64)
    if kind == "mih":
        index: VectorIndex = MultiIndexHashIndex.from_vectors(256, ids[:3000], codes[:3000])
        index.add(ids[3000:], codes[3000:])  # a delta beside the layout
    else:
        index = FaissBinaryIndex(256)
        index.add(ids, codes)
    index.remove(ids[::7])  # deleted hashes are never returned
    queries = codes[[0, 5, 1234, 3500, 3999]]
    for radius in (0, 8, 31, 60):  # 60: beyond the multi-index's probe radius (its scan)
        arrays = index.radius_arrays(queries, radius)
        for hits, (got_ids, got_dist) in zip(index.radius_search(queries, radius), arrays, strict=True):
            assert got_ids.dtype == np.int64 and got_dist.dtype == np.float64
            assert (got_ids.tolist(), got_dist.tolist()) == _as_arrays(hits)
    assert any(len(a[0]) > 1 for a in index.radius_arrays(queries, 31))  # the radius held crowds


def test_default_radius_arrays_keeps_the_hits_order() -> None:
    hits = [Hit(7, 0.0), Hit(3, 2.0), Hit(9, 2.0)]
    got_ids, got_dist = hits_to_arrays(hits)
    assert got_ids.tolist() == [7, 3, 9] and got_dist.tolist() == [0.0, 2.0, 2.0]
    empty = hits_to_arrays([])
    assert empty[0].dtype == np.int64 and len(empty[0]) == 0


def _store(folder: Path, catalog_url: str | None) -> tuple[Store, Bank, list[int]]:
    store = Store(folder, catalog_url)
    bank = store.catalog.ensure_bank("list", "hashes", {"signals": ["hashes"], "partner_lookup": True})
    codes = _codes(40, seed=2)
    images = [NewImage(pipeline.Extraction(f"{n:064x}", 64, 64, "PNG", 1,
                                           [SignalVector("pdq", codes[n], quality=0.5 + n / 100)]),
                       f"subject-{n}") for n in range(len(codes))]
    store.add_images(bank, images)
    with store.catalog.session() as s:
        # A third hash-only, as a partner's list is (bench/hash_http.py writes such rows).
        s.execute(update(Item).where(Item.id % 3 == 0).values(subject_id=None))
        vector_ids = sorted(int(v) for v in s.scalars(select(Vector.id)))
    return store, bank, vector_ids


def test_vector_owner_rows_match_the_orm_owners(tmp_path: Path, catalog_url: str | None) -> None:
    store, _bank, vector_ids = _store(tmp_path, catalog_url)
    asked = vector_ids + [10**9, 10**9 + 1]  # unknown ids are left out
    rows = store.catalog.vector_owner_rows(asked)
    owners = store.catalog.vector_owners(asked)
    assert sorted(r[0] for r in rows) == sorted(owners) == vector_ids
    for vid, item_id, quality, subject_id in rows:
        vec, item, subject = owners[vid]
        assert (item_id, quality, subject_id) == (item.id, vec.quality, item.subject_id)
        assert subject_id is None or subject is not None
    with store.catalog.unit():  # inside a unit: the unit's connection, same answer
        assert sorted(store.catalog.vector_owner_rows(asked)) == sorted(rows)
    assert store.catalog.vector_owner_rows([]) == []


def test_vector_owner_rows_read_in_chunks(tmp_path: Path) -> None:
    """More ids than SQLite binds in one statement (900 per query)."""
    store, _bank, vector_ids = _store(tmp_path, None)
    asked = list(range(1, 2500))  # the 40 vectors and 2,459 unknown ids
    assert sorted(r[0] for r in store.catalog.vector_owner_rows(asked)) == vector_ids


def test_banks_are_read_anew_and_safe_to_hand_to_a_session(tmp_path: Path, catalog_url: str | None) -> None:
    store, bank, _ids = _store(tmp_path, catalog_url)
    [read] = store.catalog.banks()
    assert (read.id, read.name, read.kind, read.policy) == (bank.id, "list", "hashes", bank.policy)
    # Another process (a second worker, the CLI) closes the bank to partners: the next read says so.
    other = Catalog(catalog_url) if catalog_url else Catalog.open(tmp_path)
    with other.session() as s:
        s.get(Bank, bank.id).policy = {"signals": ["hashes"], "partner_lookup": False}
    [again] = store.catalog.banks()
    assert again.policy == {"signals": ["hashes"], "partner_lookup": False}
    # A row handed back to a session is the stored row (merged or added), never a new one.
    with store.catalog.session() as s:
        assert s.merge(again).name == "list"
    with store.catalog.session() as s:
        s.add(store.catalog.banks()[0])
    with store.catalog.session() as s:
        assert s.scalar(select(func.count(Bank.id))) == 1
    other.engine.dispose()


def test_subjects_read_by_core_are_the_orm_rows(tmp_path: Path, catalog_url: str | None) -> None:
    store, _bank, _ids = _store(tmp_path, catalog_url)
    with store.catalog.session() as s:
        expected = {sub.id: (sub.bank_id, sub.label, sub.pseudonym, sub.consent_expires, sub.protected_until,
                             sub.attributes, sub.personal) for sub in s.scalars(select(Subject))}
    with store.catalog.unit() as s:
        got = store.catalog.subjects(s, [*expected, 10**9])
    assert sorted(got) == sorted(expected)
    for sid, subject in got.items():
        assert isinstance(subject, Subject)
        assert (subject.bank_id, subject.label, subject.pseudonym, subject.consent_expires,
                subject.protected_until, subject.attributes, subject.personal) == expected[sid]



def test_prepared_statements_raise_sqlalchemys_errors(tmp_path: Path, catalog_url: str | None) -> None:
    """A driver error on the DB-API cursor is the IntegrityError (etc.) SQLAlchemy would raise, so
    the queue's and the audit's race retries catch it; the transaction rolls back as usual."""
    from sqlalchemy.exc import IntegrityError

    store, _bank, vector_ids = _store(tmp_path, catalog_url)
    prep = store.catalog.prepared
    with pytest.raises(IntegrityError), store.catalog.writing() as conn:
        prep.run(conn, "INSERT INTO catalog_meta (name, value) VALUES (:name, :value)",
                 {"name": "catalog_id", "value": "another"})  # its primary key is taken
    assert store.catalog.identity() != "another"
    # A list of every width (padded on SQLite, an array on PostgreSQL) finds the same rows.
    with store.catalog.reading() as conn:
        for n in (1, 7, 8, 9, 33):
            rows = prep.rows(conn, "SELECT id FROM vectors WHERE id {in:ids}", lists={"ids": vector_ids[:n]})
            assert sorted(r[0] for r in rows) == vector_ids[:n]
