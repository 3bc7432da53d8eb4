"""Multi-index hashing answers exactly what the flat FAISS scan answers.

Random and clustered 256-bit codes (the clustered ones share substrings the way
re-posted photos do, so buckets are skewed), radii inside the probe radius,
beyond it (the exact scan fallback) and nearest neighbours; after deletes,
after adds into the delta and a merge, and after a save and a memory-mapped
load. The comparison is hit for hit: ids and distances, in order.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import pytest

from indexer.signals import base as signals
from indexer.store.catalog import Catalog
from indexer.store.indexes import IndexSet
from indexer.store.mih import LARGE_LAYOUT_ROWS, MultiIndexHashIndex, default_substrings, substring_widths
from indexer.store.milvus_vectors import VECTORS_URL_ENV
from indexer.store.vectors import (
    FaissBinaryIndex,
    IndexChoice,
    VectorOwners,
    load_saved,
    new_index,
    save_atomically,
)

PDQ = signals.get("pdq")
# 16 substrings of 16 bits, one flip; 12 of 21-22 bits and 11 of 23-24 bits (millions of hashes), two flips
LAYOUTS = [(16, 1), (12, 2), (11, 2)]


def _flip(codes: np.ndarray, flips: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(codes, axis=1)
    for row, f in enumerate(flips):
        pos = rng.choice(256, size=int(f), replace=False)
        bits[row, pos] ^= 1
    return np.packbits(bits, axis=1)


def _random(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (n, 32), dtype=np.uint8)


def _clustered(n: int, rng: np.random.Generator) -> np.ndarray:
    """A few dozen seeds, each with copies at 0-40 bits: big buckets, many true neighbours."""
    seeds = _random(40, rng)
    base = seeds[rng.integers(0, len(seeds), n)]
    return _flip(base, rng.integers(0, 41, n), rng)


def _queries(codes: np.ndarray, rng: np.random.Generator, n: int = 60) -> np.ndarray:
    near = _flip(codes[rng.integers(0, len(codes), n // 2)], rng.integers(0, 40, n // 2), rng)
    return np.concatenate([near, _random(n - n // 2, rng), codes[:3]])


def _flat(ids: np.ndarray, codes: np.ndarray) -> FaissBinaryIndex:
    flat = FaissBinaryIndex(256)
    flat.add(ids, codes)
    return flat


def _same(mih: MultiIndexHashIndex, flat: FaissBinaryIndex, queries: np.ndarray) -> None:
    for radius in (0, 8, 31, mih.fast_radius, 45):
        assert mih.radius_search(queries, radius) == flat.radius_search(queries, radius), radius
    # Nearest neighbours: equal distances in order (ties may be ordered by id in either).
    for got, want in zip(mih.search(queries, 7), flat.search(queries, 7), strict=True):
        assert [h.distance for h in got] == [h.distance for h in want]
        assert len(got) == len(want)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_mih_equals_flat(layout: tuple[int, int], kind: str) -> None:
    rng = np.random.default_rng(7)
    codes = (_random if kind == "random" else _clustered)(6000, rng)
    ids = rng.permutation(50_000)[:6000].astype(np.int64)  # ids are the catalog's, not row numbers
    mih = MultiIndexHashIndex.from_vectors(256, ids, codes, *layout)
    flat = _flat(ids, codes)
    queries = _queries(codes, rng)
    assert sum(len(h) for h in flat.radius_search(queries, 31)) > 20  # the test has neighbours to miss
    _same(mih, flat, queries)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_probe_radius_is_exact_at_its_edge(layout: tuple[int, int]) -> None:
    """Hashes at exactly the probe radius, their flipped bits spread evenly over the substrings
    (the pigeonhole's worst case), are all found."""
    m, flips = layout
    rng = np.random.default_rng(3)
    mih = MultiIndexHashIndex(256, m, flips)
    widths = substring_widths(256, m)
    starts = np.cumsum([0] + widths[:-1])
    query = _random(1, rng)
    bits = np.unpackbits(query, axis=1)
    copies = []
    for _ in range(50):
        b = bits.copy()
        # flips+1 bits in every substring but one, which gets flips: m*(flips+1)-1 in all.
        short = rng.integers(0, m)
        for j, (s, w) in enumerate(zip(starts, widths, strict=True)):
            b[0, s + rng.choice(w, size=flips if j == short else flips + 1, replace=False)] ^= 1
        copies.append(np.packbits(b, axis=1)[0])
    codes = np.concatenate([np.stack(copies), _random(2000, rng)])
    ids = np.arange(len(codes), dtype=np.int64)
    mih = MultiIndexHashIndex.from_vectors(256, ids, codes, m, flips)
    hits = mih.radius_search(query, mih.fast_radius)[0]
    assert {h.vector_id for h in hits} >= set(range(50))
    assert all(h.distance == mih.fast_radius for h in hits if h.vector_id < 50)
    assert hits == _flat(ids, codes).radius_search(query, mih.fast_radius)[0]


def test_deletes_adds_and_merge_stay_exact() -> None:
    rng = np.random.default_rng(11)
    codes = _clustered(5000, rng)
    ids = np.arange(10, 5010, dtype=np.int64)
    mih = MultiIndexHashIndex.from_vectors(256, ids, codes)
    flat = _flat(ids, codes)
    queries = _queries(codes, rng)
    gone = rng.choice(ids, 700, replace=False)
    assert mih.remove(gone) == flat.remove(gone) == 700
    assert mih.remove(gone[:5]) == 0  # a second withdrawal removes nothing
    assert len(mih) == len(flat) == 4300
    _same(mih, flat, queries)
    # Adds land in the delta (scanned flat) ...
    more = _clustered(300, rng)
    more_ids = np.arange(20_000, 20_300, dtype=np.int64)
    mih.add(more_ids, more)
    flat.add(more_ids, more)
    assert len(mih._delta_ids) == 300
    _same(mih, flat, np.concatenate([queries, more[:5]]))
    # ... deletes reach the delta too, and a merge keeps every answer.
    assert mih.remove(more_ids[:50]) == flat.remove(more_ids[:50]) == 50
    _same(mih, flat, queries)
    mih.merge()
    assert len(mih._delta_ids) == 0 and len(mih._ids) == len(mih) == len(flat)
    _same(mih, flat, np.concatenate([queries, more[50:55]]))
    for hits in mih.radius_search(codes[np.isin(ids, gone)][:20], 0):
        assert not {h.vector_id for h in hits} & set(gone.tolist())


def test_saved_index_is_memory_mapped_and_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    codes = _clustered(4000, rng)
    ids = np.arange(1, 4001, dtype=np.int64)
    mih = MultiIndexHashIndex.from_vectors(256, ids, codes, 12, 2)
    mih.add(np.array([9000, 9001]), _random(2, rng))
    mih.remove(np.array([1, 2, 9000]))
    mih.revision = 42
    path = tmp_path / "pdq.faiss"
    save_atomically(mih, path)
    loaded = load_saved(PDQ, path)
    assert isinstance(loaded, MultiIndexHashIndex)
    assert loaded.revision == 42 and len(loaded) == len(mih) == 3999
    owner = loaded._perm
    while isinstance(owner, np.ndarray):  # the arrays are views of the file's mapping, not copies
        owner = owner.base
    assert isinstance(owner.obj if isinstance(owner, memoryview) else owner, mmap.mmap)
    queries = _queries(codes, rng)
    for radius in (31, 45):
        assert loaded.radius_search(queries, radius) == mih.radius_search(queries, radius)
    # A withdrawal after loading changes the process's copy, never the mapped file.
    before = path.read_bytes()
    assert loaded.remove(np.array([3, 4])) == 2
    assert path.read_bytes() == before
    assert not {3, 4} & {h.vector_id for hits in loaded.radius_search(codes[2:4], 0) for h in hits}
    # A damaged file is a cache miss, not an answer.
    path.write_bytes(before[:len(before) // 2])
    assert load_saved(PDQ, path) is None


def test_index_choice_from_the_environment() -> None:
    assert IndexChoice.from_env({}) == IndexChoice("auto", 200_000)
    choice = IndexChoice.from_env({"REUNITE_HASH_INDEX": "MIH", "REUNITE_MIH_MIN_HASHES": "5"})
    assert choice.wants_mih(PDQ, 0)
    assert not choice.wants_mih(signals.get("phash"), 10**9)  # 64-bit hashes stay flat
    auto = IndexChoice.from_env({"REUNITE_MIH_MIN_HASHES": "1000"})
    assert not auto.wants_mih(PDQ, 999) and auto.wants_mih(PDQ, 1000)
    assert not IndexChoice.from_env({"REUNITE_HASH_INDEX": "flat"}).wants_mih(PDQ, 10**9)
    assert isinstance(new_index(PDQ, 10, choice), MultiIndexHashIndex)
    assert isinstance(new_index(PDQ, 10, IndexChoice("flat")), FaissBinaryIndex)
    with pytest.raises(ValueError, match="REUNITE_HASH_INDEX"):
        IndexChoice.from_env({"REUNITE_HASH_INDEX": "fast"})
    with pytest.raises(ValueError, match="REUNITE_MIH_MIN_HASHES"):
        IndexChoice.from_env({"REUNITE_MIH_MIN_HASHES": "lots"})


def test_cli_refuses_a_bad_index_choice_in_one_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "-c", "from api.cli import main; main()", "--data", str(tmp_path),
                        "keys", "create", "--role", "admin", "--name", "x"], cwd=root,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "REUNITE_HASH_INDEX": "fastest"})
    assert r.returncode == 2, r.stderr
    want = "error: REUNITE_HASH_INDEX must be auto, flat or mih, not 'fastest'"
    assert r.stderr.strip().splitlines() == [want]


def test_index_set_grows_into_mih_and_rebuilds_from_the_catalog(tmp_path: Path) -> None:
    """Past the threshold a bank's PDQ index becomes multi-index (same answers); a fresh
    process rebuilds or loads that kind from the catalog and the saved file."""
    from indexer import pipeline
    from indexer.signals.base import SignalVector
    from indexer.store.store import NewImage, Store

    rng = np.random.default_rng(2)
    codes = _clustered(600, rng)

    def images(lo: int, hi: int) -> list[NewImage]:
        return [NewImage(pipeline.Extraction(f"{n:064x}", 64, 64, "PNG", 1,
                                             [SignalVector("pdq", codes[n], quality=1.0)]), f"ref-{n}")
                for n in range(lo, hi)]

    store = Store(tmp_path)
    store.indexes.choice = IndexChoice("auto", 500)
    bank = store.catalog.ensure_bank("refs", "hashes", {"signals": ["hashes"]})
    store.add_images(bank, images(0, 400))
    assert isinstance(store.indexes.get(bank.id, "pdq"), FaissBinaryIndex)
    flat_answer = store.indexes.get(bank.id, "pdq").radius_search(codes[:30], 31)
    store.add_images(bank, images(400, 600))
    grown = store.indexes.get(bank.id, "pdq")
    assert isinstance(grown, MultiIndexHashIndex) and len(grown) == 600
    store.checkpoint()
    reference = _flat(np.array([v for v, _ in _all_vectors(store.catalog, bank.id)]), codes)
    answer = grown.radius_search(codes[:30], 31)
    assert answer == reference.radius_search(codes[:30], 31)
    assert [len(a) for a in answer] >= [len(a) for a in flat_answer]

    # Another process: the saved multi-index file is loaded (mapped), not rebuilt.
    again = IndexSet(tmp_path, Catalog.open(tmp_path), IndexChoice("auto", 500))
    loaded = again.get(bank.id, "pdq")
    assert isinstance(loaded, MultiIndexHashIndex) and loaded.radius_search(codes[:30], 31) == answer
    # Configured flat, the same folder rebuilds a flat index from the catalog: same answers.
    flat_again = IndexSet(tmp_path, Catalog.open(tmp_path), IndexChoice("flat"))
    rebuilt = flat_again.get(bank.id, "pdq")
    assert isinstance(rebuilt, FaissBinaryIndex) and rebuilt.radius_search(codes[:30], 31) == answer


def test_wide_radius_banks_keep_the_flat_scan_under_auto(tmp_path: Path) -> None:
    """An ads bank matches PDQ at 70 bits, past what multi-index hashing answers without
    a full read: however large, ``auto`` leaves it on FAISS's flat scan; ``mih`` forces it."""
    from indexer import pipeline
    from indexer.signals.base import SignalVector
    from indexer.store.store import NewImage, Store

    codes = _clustered(600, np.random.default_rng(3))
    store = Store(tmp_path)
    store.indexes.choice = IndexChoice("auto", 500)
    ads = store.catalog.ensure_bank("crawl", "ads", {"signals": ["hashes"]})
    pdq = [[SignalVector("pdq", codes[n], quality=1.0)] for n in range(600)]
    store.add_images(ads, [NewImage(pipeline.Extraction(f"{n:064x}", 64, 64, "PNG", 1, pdq[n]), f"ad-{n}")
                           for n in range(600)])
    assert isinstance(store.indexes.get(ads.id, "pdq"), FaissBinaryIndex)
    forced = IndexSet(tmp_path, Catalog.open(tmp_path), IndexChoice("mih"))
    assert isinstance(forced.get(ads.id, "pdq"), MultiIndexHashIndex)


def test_narrow_kinds_are_the_kinds_that_match_within_the_exact_radius() -> None:
    """NARROW_HASH_KINDS must follow matcher/defaults.json: a kind listed there matches PDQ
    within the radius the multi-index answers exactly, and the default PDQ match is wider."""
    from indexer.kinds import NARROW_HASH_KINDS
    from indexer.store.mih import MultiIndexHashIndex as Mih
    from matcher.defaults import load as load_defaults

    defaults = load_defaults()
    exact = Mih(256).fast_radius
    for kind in NARROW_HASH_KINDS:
        assert defaults.thresholds("pdq", defaults.policy_for(kind, {})).match <= exact
    assert defaults.thresholds("pdq", defaults.policy_for("ads", {})).match > exact


def _all_vectors(catalog: Catalog, bank_id: int) -> list[tuple[int, bytes]]:
    return [row for batch in catalog.iter_vectors(bank_id, "pdq") for row in batch]


def test_rebuilds_of_millions_of_hashes_use_the_11_substring_layout() -> None:
    """Both default layouts are exact at PDQ's radius; the wider keys from LARGE_LAYOUT_ROWS on."""
    assert default_substrings(256, LARGE_LAYOUT_ROWS - 1) == 12
    assert default_substrings(256, LARGE_LAYOUT_ROWS) == 11
    assert default_substrings(64, LARGE_LAYOUT_ROWS) == 12  # only 256-bit hashes
    for m in (11, 12):
        assert MultiIndexHashIndex(256, m, 2).fast_radius >= 31
    small = MultiIndexHashIndex.from_vectors(256, np.arange(3, dtype=np.int64), np.zeros((3, 32), np.uint8))
    assert small.m == 12


def _owners_of(ids: np.ndarray) -> VectorOwners:
    """Owners made from the ids (item = id * 10, quality id % 7 / 7 or none, subject id // 3 or
    none), so that any hit's owner can be checked against its id."""
    ids = np.asarray(ids, dtype=np.int64)
    qualities = [None if i % 5 == 0 else (i % 7) / 7 for i in ids.tolist()]
    subjects = [None if i % 4 == 0 else i // 3 for i in ids.tolist()]
    return VectorOwners.of_rows((ids * 10).tolist(), qualities, subjects)


def _assert_owned(mih: MultiIndexHashIndex, queries: np.ndarray) -> None:
    hits, owners = mih.radius_owned(queries, 31)
    assert owners is not None
    for got, want in zip(hits, mih.radius_arrays(queries, 31), strict=True):
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    for (ids, _dist), handles in zip(hits, owners.handles, strict=True):
        assert owners.read(handles).rows() == _owners_of(ids).rows()


def test_owners_follow_their_hashes_through_deletes_adds_merge_and_a_mapped_load(tmp_path: Path) -> None:
    """Each hit's owner comes with it, from the layout and the delta, after deletes, a merge and a
    save and memory-mapped load; an add without owners makes the index stop answering them."""
    rng = np.random.default_rng(17)
    codes = _clustered(3000, rng)
    ids = np.arange(5, 3005, dtype=np.int64)
    mih = MultiIndexHashIndex.from_vectors(256, ids, codes, owners=_owners_of(ids))
    assert mih.keeps_owners
    queries = _queries(codes, rng)
    _assert_owned(mih, queries)
    more, more_ids = _clustered(200, rng), np.arange(10_000, 10_200, dtype=np.int64)
    mih.add(more_ids, more, _owners_of(more_ids))
    mih.remove(np.concatenate([ids[:300], more_ids[:20]]))
    both = np.concatenate([queries, more[:10]])
    assert any(len(h[0]) and h[0].max() >= 10_000 for h in mih.radius_owned(both, 31)[0])  # delta hits
    _assert_owned(mih, both)
    mih.revision = 3
    save_atomically(mih, tmp_path / "pdq.faiss")
    loaded = load_saved(PDQ, tmp_path / "pdq.faiss")
    assert isinstance(loaded, MultiIndexHashIndex) and loaded.keeps_owners
    _assert_owned(loaded, both)
    mih.merge()
    assert len(mih._delta_ids) == 0
    _assert_owned(mih, both)
    with pytest.raises(ValueError, match="owners for"):
        mih.add(np.array([1]), more[:1], _owners_of(np.array([1, 2])))
    mih.add(np.array([20_000]), more[:1])  # no owners: none answered from now on, hits unchanged
    assert not mih.keeps_owners and mih.radius_owned(both, 31)[1] is None
    save_atomically(mih, tmp_path / "bare.faiss")
    bare = load_saved(PDQ, tmp_path / "bare.faiss")
    assert isinstance(bare, MultiIndexHashIndex) and not bare.keeps_owners
    assert [h[0].tolist() for h in bare.radius_arrays(both, 31)] == [h[0].tolist() for h in
                                                                      mih.radius_arrays(both, 31)]


def test_a_version_1_multi_index_file_is_rebuilt_with_its_owners(tmp_path: Path) -> None:
    """The previous release's file (no owners) is unreadable to this one: the catalog rebuilds it."""
    from indexer import pipeline
    from indexer.signals.base import SignalVector
    from indexer.store import mih as mih_mod
    from indexer.store.store import NewImage, Store

    rng = np.random.default_rng(8)
    codes = _clustered(300, rng)
    store = Store(tmp_path)
    store.indexes.choice = IndexChoice("mih")
    bank = store.catalog.ensure_bank("refs", "hashes", {"signals": ["hashes"]})
    store.add_images(bank, [NewImage(pipeline.Extraction(f"{n:064x}", 64, 64, "PNG", 1, [
        SignalVector("pdq", codes[n], quality=None if n % 3 else 0.9)]), f"ref-{n % 40}")
        for n in range(300)])
    store.checkpoint()
    path = store.indexes.path(bank.id, "pdq")
    saved = path.read_bytes()
    at = saved.index(mih_mod.MAGIC)
    path.write_bytes(saved[:at] + b"RUNMIH1\0" + saved[at + 8:])
    assert load_saved(PDQ, path) is None
    again = IndexSet(tmp_path, Catalog.open(tmp_path), IndexChoice("mih"))
    rebuilt = again.get(bank.id, "pdq")
    assert isinstance(rebuilt, MultiIndexHashIndex) and rebuilt.keeps_owners
    hits, owners = rebuilt.radius_owned(codes[:20], 31)
    assert owners is not None
    catalog = {v: (i, q, s) for v, i, q, s in store.catalog.vector_owner_rows(
        {int(v) for ids, _d in hits for v in ids.tolist()})}
    for (ids, _dist), handles in zip(hits, owners.handles, strict=True):
        assert owners.read(handles).rows() == [catalog[v] for v in ids.tolist()]
    assert any(q is None for _i, q, _s in owners.read(owners.every()).rows())


def test_owners_kept_by_writes_equal_the_catalogs(tmp_path: Path, catalog_url: str | None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch writes into a multi-index, a bank grown from flat into one, and a withdrawal: the
    owners the index answers are always those the catalog holds for the hits (SQLite and
    PostgreSQL catalogs; the multi-index is in-process, so never a vector server here)."""
    from indexer import pipeline
    from indexer.signals.base import SignalVector
    from indexer.store.store import NewImage, Store

    rng = np.random.default_rng(9)
    codes = _clustered(700, rng)

    def images(lo: int, hi: int) -> list[NewImage]:
        return [NewImage(pipeline.Extraction(f"{n:064x}", 64, 64, "PNG", 1, [
            SignalVector("pdq", codes[n], quality=(n % 9) / 9 if n % 2 else None)]), f"ref-{n % 90}")
            for n in range(lo, hi)]

    monkeypatch.delenv(VECTORS_URL_ENV, raising=False)
    store = Store(tmp_path, catalog_url)
    store.indexes.choice = IndexChoice("auto", 500)
    bank = store.catalog.ensure_bank("refs", "hashes", {"signals": ["hashes"]})
    store.add_images(bank, images(0, 400))
    store.add_images(bank, images(400, 600))  # crosses the threshold: rebuilt from the catalog
    grown = store.indexes.get(bank.id, "pdq")
    assert isinstance(grown, MultiIndexHashIndex) and grown.keeps_owners
    store.add_images(bank, images(600, 700))  # into the delta, with their owners
    index = store.indexes.get(bank.id, "pdq")
    assert index is grown and len(index._delta_ids) == 100 and index.keeps_owners
    with store.catalog.session() as s:
        gone = [it.id for it in store.subject_items(s, 1)]
        assert gone
        removed = store.catalog.delete_items(s, gone)
        before, after = dict(s.info.get("revisions_before", {})), dict(s.info.get("revisions", {}))
    store.indexes.apply(before, after, {}, {(bank.id, "pdq"): np.asarray(removed["pdq"])})
    assert store.indexes.get(bank.id, "pdq") is grown
    hits, owners = grown.radius_owned(codes[::7], 31)
    assert owners is not None
    found = {int(v) for ids, _d in hits for v in ids.tolist()}
    catalog = {v: (i, q, s) for v, i, q, s in store.catalog.vector_owner_rows(found)}
    assert set(catalog) == found and not {i for i, _q, _s in catalog.values()} & set(gone)
    for (ids, _dist), handles in zip(hits, owners.handles, strict=True):
        assert owners.read(handles).rows() == [catalog[v] for v in ids.tolist()]


def test_a_rebuild_read_grows_past_a_stale_count() -> None:
    """The rebuild's arrays are sized by a count read before the rows: rows added since still fit."""
    from indexer.store.indexes import _Columns

    rng = np.random.default_rng(4)
    rows = [(n, _random(1, rng).tobytes(), 10 * n, None if n % 2 else n / 10, None if n % 3 else n)
            for n in range(1, 8)]
    columns = _Columns(2, 32)
    for lo in range(0, len(rows), 3):
        columns.append(rows[lo:lo + 3], np.dtype(np.uint8))
    ids, codes, owners = columns.arrays()
    assert ids.tolist() == list(range(1, 8))
    assert codes.tobytes() == b"".join(r[1] for r in rows)
    assert owners.rows() == [(r[2], r[3], r[4]) for r in rows]


def test_owners_read_after_a_merge_are_those_of_the_search() -> None:
    """Owners are read lazily, after the search: a write and merge in between (another thread's)
    renumbers the rows, and the owners read must still be those of the hits found."""
    rng = np.random.default_rng(21)
    codes = _clustered(2000, rng)
    ids = np.arange(1, 2001, dtype=np.int64)
    mih = MultiIndexHashIndex.from_vectors(256, ids, codes, owners=_owners_of(ids))
    mih.add(np.arange(5000, 5050), _clustered(50, rng), _owners_of(np.arange(5000, 5050)))
    queries = _queries(codes, rng)
    hits, owners = mih.radius_owned(queries, 31)
    assert owners is not None and sum(len(h[0]) for h in hits) > 100
    mih.remove(ids[:500])
    mih.add(np.arange(9000, 9100), _clustered(100, rng), _owners_of(np.arange(9000, 9100)))
    mih.merge()
    for (found, _dist), handles in zip(hits, owners.handles, strict=True):
        assert owners.read(handles).rows() == _owners_of(found).rows()
