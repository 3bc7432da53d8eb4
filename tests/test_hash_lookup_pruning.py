"""Reading only the nearest hits of a crowded hash lookup ranks exactly as reading them all.

At ten million references a hash near a widely reposted photo has thousands of
references within the radius; the searcher reads owners and scores in groups of
equal distance, nearest first, until no unread hit can enter the ranking
(:meth:`matcher.search.query.HashSearcher._nearest_items`). These banks are crowded on
purpose (hundreds of references within the radius of one query, qualities on
both sides of PDQ's 50, several photos per subject, ties at every distance) and
every answer must equal the one that reads every hit: same candidates, scores,
decisions and evidence, in the same order, on the flat index and on the
multi-index, for several ``top``. The multi-index keeps its hashes' owners and
reads none from the catalog; one made without them (``mih-catalog``) reads
them as the flat index does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer import pipeline
from indexer.signals.base import SignalVector
from indexer.store.mih import MultiIndexHashIndex
from indexer.store.store import NewImage, Store
from indexer.store.vectors import FaissBinaryIndex, IndexChoice
from matcher import defaults as defaults_mod
from matcher.search import query as query_mod
from matcher.search.hashes import parse_hashes
from matcher.search.query import HashSearcher


def _flipped(code: np.ndarray, bits: int, rng: np.random.Generator) -> np.ndarray:
    raw = np.unpackbits(code.copy())
    at = rng.choice(raw.size, size=bits, replace=False)
    raw[at] ^= 1
    return np.packbits(raw)


def _crowded_bank(folder: Path, mode: str, rng: np.random.Generator,
                  subjects: int = 150) -> tuple[Store, object, np.ndarray]:
    store = Store(folder)
    store.indexes.choice = IndexChoice(mode.removesuffix("-catalog"))
    bank = store.catalog.ensure_bank("list", "hashes", {"signals": ["hashes"]})
    query = rng.integers(0, 256, 32, dtype=np.uint8)
    images = []
    for n in range(400):
        # Most within the probe radius, ties at every distance, some far (never hits).
        bits = int(rng.choice([rng.integers(0, 36), rng.integers(0, 12), rng.integers(60, 120)]))
        quality = float(rng.choice([0.3, 0.45, 0.49, 0.5, 0.8, 1.0]))
        label = f"subject-{n % subjects}"  # several photos per subject: they collapse to one candidate
        images.append(NewImage(pipeline.Extraction(f"{n:064x}", 64, 64, "PNG", 1,
                                                   [SignalVector("pdq", _flipped(query, bits, rng),
                                                                 quality=quality)]), label))
    store.add_images(bank, images)
    if mode == "mih-catalog":  # the same hashes in a multi-index that keeps no owners
        rows = [row for batch in store.catalog.iter_vectors(bank.id, "pdq") for row in batch]
        bare = MultiIndexHashIndex.from_vectors(
            256, np.array([vid for vid, _ in rows]), np.frombuffer(b"".join(b for _, b in rows), np.uint8))
        bare.revision = store.catalog.revision(bank.id, "pdq")
        store.indexes._indexes[(bank.id, "pdq")] = bare
    return store, bank, query


def _searchers(store: Store) -> tuple[HashSearcher, HashSearcher, list[int]]:
    """The searcher that reads the nearest hits (its owner reads counted into the list, one entry
    per read) and the one that reads every hit."""
    defaults = defaults_mod.load()
    nearest = HashSearcher(store, defaults)
    every = HashSearcher(store, defaults, read_all_hits=True)
    read: list[int] = []
    counted = nearest._vector_items
    nearest._vector_items = lambda ids: (read.append(len(ids)), counted(ids))[1]  # type: ignore[method-assign]
    return nearest, every, read


@pytest.mark.parametrize("mode", ["flat", "mih", "mih-catalog"])
def test_nearest_hits_rank_as_every_hit(tmp_path: Path, mode: str) -> None:
    rng = np.random.default_rng(23)
    store, bank, query = _crowded_bank(tmp_path, mode, rng)
    index = store.indexes.get(bank.id, "pdq")
    assert isinstance(index, FaissBinaryIndex if mode == "flat" else MultiIndexHashIndex)
    assert not isinstance(index, MultiIndexHashIndex) or index.keeps_owners == (mode == "mih")
    nearest, every, read = _searchers(store)
    crowded = passes = fewer = 0
    for n in range(12):
        near = _flipped(query, int(rng.integers(0, 10)), rng)
        hashes = parse_hashes({"pdq": near.tobytes().hex()})
        hits = len(index.radius_search(near[None], 31)[0])
        crowded += hits > 200
        for top in (1, 3, 10, 25, 100):
            read.clear()
            got = [c.to_json() for c in nearest._match_bank(hashes, bank, top)]
            passes += len(read) > 1  # the first groups read were not enough: read on
            fewer += sum(read) < hits
            assert mode != "mih" or read == [], "the multi-index answers its hits' owners"
            want = [c.to_json() for c in every._match_bank(hashes, bank, top)]
            assert got == want, (n, top)
            assert got, "every query is near the crowd"
    assert crowded >= 6  # the case this is about: hundreds of hits
    if mode != "mih":
        assert passes > 0 and fewer > 0


@pytest.mark.parametrize("mode", ["flat", "mih-catalog"])
def test_one_reference_a_subject_reads_the_nearest_top_not_four_times_as_many(
        tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hash list's references (a subject each, nothing to collapse): the first, short read of
    ``top`` items and a few spare is the answer, exactly as reading every hit, with fewer owner
    rows read than a first read of the four items per candidate that ranking keeps in reserve."""
    rng = np.random.default_rng(31)
    store, bank, query = _crowded_bank(tmp_path, mode, rng, subjects=400)
    nearest, every, read = _searchers(store)
    spare = query_mod._spare
    fewer = 0
    for n in range(8):
        near = _flipped(query, int(rng.integers(0, 10)), rng)
        hashes = parse_hashes({"pdq": near.tobytes().hex()})
        for top in (5, 20, 50):
            monkeypatch.setattr(query_mod, "_spare", lambda t: query_mod._kept(t) - t)  # one read, as before
            read.clear()
            before = [c.to_json() for c in nearest._match_bank(hashes, bank, top)]
            rows_before = sum(read)
            monkeypatch.setattr(query_mod, "_spare", spare)
            read.clear()
            got = [c.to_json() for c in nearest._match_bank(hashes, bank, top)]
            assert got == before == [c.to_json() for c in every._match_bank(hashes, bank, top)], (n, top)
            assert len(got) == top
            assert sum(read) <= rows_before
            fewer += sum(read) < rows_before
    assert fewer >= 12


def test_a_sha256_or_a_second_hash_reads_every_hit(tmp_path: Path) -> None:
    """Where the score is not one hash's distance alone, every hit is read (nothing to prune by)."""
    rng = np.random.default_rng(5)
    store, bank, query = _crowded_bank(tmp_path, "flat", rng)
    defaults = defaults_mod.load()
    nearest = HashSearcher(store, defaults)
    every = HashSearcher(store, defaults, read_all_hits=True)
    exact = f"{7:064x}"  # the sha256 of the eighth reference: an exact hit beside the hash hits
    hashes = parse_hashes({"pdq": query.tobytes().hex()}, exact)
    got = [c.to_json() for c in nearest._match_bank(hashes, bank, 10)]
    assert got == [c.to_json() for c in every._match_bank(hashes, bank, 10)]
    assert any(c["evidence"].get("sha256") == 0 for c in got)
