"""Vector indexes in a real Milvus server (tests/milvus_server.py), against FAISS and the catalog.

Exactness: on the same random and perturbed codes, Milvus's range search at radius 31 returns
exactly what FAISS's flat index returns, and float top-k the same neighbours. Then the store:
indexing through the command finds the copy, a consent withdrawal deletes the vectors in the
server, a dropped collection is rebuilt from the catalog (once, with two stores asking at once).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import jpeg_bytes, photo, run_reunite

from indexer import pipeline
from indexer.signals import base as signals
from indexer.signals.base import SignalVector
from indexer.store.catalog import Catalog
from indexer.store.milvus_vectors import MilvusIndexSet, MilvusVectorIndex, collection_prefix, milvus_uri
from indexer.store.store import NewImage, Store
from indexer.store.vectors import FaissBinaryIndex, FaissFloatIndex


@pytest.fixture
def client(milvus) -> Iterator[object]:  # noqa: ANN001 - tests.milvus_server.MilvusServer
    from pymilvus import MilvusClient

    uri, token = milvus_uri(milvus.url)
    c = MilvusClient(uri=uri, token=token)
    yield c
    c.close()


def _perturbed(rng: np.random.Generator, codes: np.ndarray, max_flips: int) -> np.ndarray:
    """Copies of ``codes`` with 0..max_flips random bits flipped each."""
    bits = np.unpackbits(codes, axis=1)
    for row in bits:
        flips = rng.choice(bits.shape[1], size=int(rng.integers(0, max_flips + 1)), replace=False)
        row[flips] ^= 1
    return np.packbits(bits, axis=1)


def test_binary_range_search_at_radius_31_equals_faiss_flat(client) -> None:  # noqa: ANN001
    rng = np.random.default_rng(23)
    base = rng.integers(0, 256, (1500, 32), dtype=np.uint8)
    codes = np.concatenate([base, _perturbed(rng, base[:300], 45), _perturbed(rng, base[:100], 45)])
    ids = np.arange(10, 10 + len(codes), dtype=np.int64)
    milvus = MilvusVectorIndex(client, "reunite_test_binary", signals.get("pdq"))
    milvus.create()
    milvus.add(ids, codes)
    faiss = FaissBinaryIndex(256)
    faiss.add(ids, codes)
    queries = np.concatenate([_perturbed(rng, base[:60], 40), rng.integers(0, 256, (20, 32), dtype=np.uint8)])

    want = faiss.radius_search(queries, 31)
    got = milvus.radius_search(queries, 31)
    assert sum(len(h) for h in want) > 60  # the radius really holds neighbours: not a vacuous match
    assert [[(h.vector_id, h.distance) for h in row] for row in got] == \
           [[(h.vector_id, h.distance) for h in row] for row in want]
    assert len(milvus) == len(codes)
    # A radius holding more than the first limit's hits (milvus_vectors.FIRST_LIMIT): asked again, all kept.
    wide_f, wide_m = faiss.radius_search(queries[:3], 124), milvus.radius_search(queries[:3], 124)
    assert min(len(h) for h in wide_f) > 256
    assert [[(h.vector_id, h.distance) for h in row] for row in wide_m] == \
           [[(h.vector_id, h.distance) for h in row] for row in wide_f]

    # Top-k: the same distances (ids may differ only among ties at the k-th distance).
    top_m, top_f = milvus.search(queries, 5), faiss.search(queries, 5)
    assert [[h.distance for h in row] for row in top_m] == [[h.distance for h in row] for row in top_f]

    # Deleted by id: gone from the next search, and counted.
    gone = np.array([h.vector_id for row in want for h in row][:40], dtype=np.int64)
    gone = np.unique(gone)
    assert milvus.remove(gone) == len(gone)
    faiss.remove(gone)
    after = milvus.radius_search(queries, 31)
    assert not {h.vector_id for row in after for h in row} & set(gone.tolist())
    assert [[h.vector_id for h in row] for row in after] == \
           [[h.vector_id for h in row] for row in faiss.radius_search(queries, 31)]
    assert len(milvus) == len(codes) - len(gone)
    client.drop_collection(milvus.name)


def test_float_top_k_equals_faiss(client) -> None:  # noqa: ANN001
    rng = np.random.default_rng(5)
    signal = signals.get("face_sface")
    vectors = rng.normal(size=(800, signal.dim)).astype(np.float32)
    ids = np.arange(1, 801, dtype=np.int64)
    milvus = MilvusVectorIndex(client, "reunite_test_float", signal)
    milvus.create()
    milvus.add(ids, vectors * 3.0)  # stored L2-normalised, as FAISS stores them
    faiss = FaissFloatIndex(signal.dim)
    faiss.add(ids, vectors)
    queries = vectors[:25] + rng.normal(scale=0.5, size=(25, signal.dim)).astype(np.float32)

    got, want = milvus.search(queries, 10), faiss.search(queries, 10)
    assert [[h.vector_id for h in row] for row in got] == [[h.vector_id for h in row] for row in want]
    assert np.allclose([[h.distance for h in row] for row in got],
                       [[h.distance for h in row] for row in want], atol=1e-4)
    radius = float(np.median([row[1].distance for row in want]))
    near_m = milvus.radius_search(queries, radius)
    near_f = faiss.radius_search(queries, radius)
    assert sum(len(r) for r in near_f) >= 25
    assert [{h.vector_id for h in r} for r in near_m] == [{h.vector_id for h in r} for r in near_f]
    client.drop_collection(milvus.name)


def _extraction(n: int, code: np.ndarray) -> pipeline.Extraction:
    return pipeline.Extraction(f"{n:064x}", 64, 64, "PNG", 1, [SignalVector("pdq", code, quality=1.0)])


def test_dropped_collection_is_rebuilt_from_the_catalog_once(tmp_path: Path, milvus, client,  # noqa: ANN001
                                                             caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    store = Store(tmp_path, vectors_url=milvus.url)
    assert isinstance(store.indexes, MilvusIndexSet)
    bank = store.catalog.ensure_bank("list", "hashes", {"signals": ["hashes"]})
    store.add_images(bank, [NewImage(_extraction(n, codes[n]), f"ref-{n}") for n in range(300)])
    name = store.indexes.collection(bank.id, "pdq")
    assert store.indexes.stored_revision(name) == store.catalog.revision(bank.id, "pdq")
    assert not (tmp_path / "indexes" / f"bank-{bank.id}" / "pdq.faiss").exists()  # nothing saved here

    client.drop_collection(name)
    # Two processes' stores (their own locks on the catalog) find it missing at once: one rebuilds.
    others = [Store(tmp_path, vectors_url=milvus.url) for _ in range(2)]
    found: list[int] = []
    caplog.set_level(logging.INFO, logger="reunite.milvus")
    threads = [threading.Thread(target=lambda s=s: found.append(len(s.indexes.get(bank.id, "pdq"))))
               for s in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert found == [300, 300]
    revision = store.catalog.revision(bank.id, "pdq")
    assert [r.message for r in caplog.records if r.message.startswith("rebuilt")] == \
           [f"rebuilt {name} from the catalog: 300 vectors at revision {revision}"]
    hits = others[0].indexes.get(bank.id, "pdq").radius_search(codes[7:8], 0)[0]
    owners = store.catalog.vector_owners([h.vector_id for h in hits])
    assert [owners[h.vector_id][2].label for h in hits] == ["ref-7"]
    # The first store's write after the rebuild reaches the others without another rebuild.
    extra = rng.integers(0, 256, (1, 32), dtype=np.uint8)
    store.add_images(bank, [NewImage(_extraction(999, extra[0]), "late")])
    assert len(others[1].indexes.get(bank.id, "pdq").radius_search(extra, 0)[0]) == 1
    assert sum(r.message.startswith("rebuilt") for r in caplog.records) == 1
    # Dropped under a store that holds it as current: its next search refills it and answers.
    client.drop_collection(name)
    hits = store.indexes.get(bank.id, "pdq").radius_search(extra, 0)[0]
    assert [store.catalog.vector_owners([h.vector_id])[h.vector_id][2].label for h in hits] == ["late"]
    assert sum(r.message.startswith("rebuilt") for r in caplog.records) == 2
    store.indexes.forget_bank(bank.id)
    assert not client.has_collection(name)


def test_index_and_match_through_the_command_with_milvus(tmp_path: Path, milvus, client) -> None:  # noqa: ANN001
    data = tmp_path / "data"
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    for name in ("astronaut.png", "coffee.png", "rocket.jpg"):
        photo(name).resize((256, 256)).save(crawl / f"{Path(name).stem}.png")
    env = {"REUNITE_VECTORS_URL": milvus.url}
    run_reunite("index", str(crawl), "--bank", "ads", "--signals", "hashes", "--no-watch", data=data,
                env=env, check=True)
    assert not list((data / "indexes").glob("bank-*/*.faiss"))  # the vectors went to the server
    catalog = Catalog.open(data)
    prefix = collection_prefix(catalog.identity())
    catalog.engine.dispose()
    pdq = [n for n in client.list_collections() if n.startswith(prefix) and n.endswith("_pdq")]
    assert len(pdq) == 1
    assert client.query(pdq[0], filter="", output_fields=["count(*)"],
                        consistency_level="Strong")[0]["count(*)"] == 3
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(jpeg_bytes(photo("coffee.png").resize((256, 256)).resize((200, 200)), 70))
    # The option before the verb does what the environment does.
    done = run_reunite("--vectors-url", milvus.url, "match", str(copy), "--bank", "ads", "--json", data=data,
                       check=True)
    best = json.loads(done.stdout.splitlines()[0])["candidates"][0]
    assert best["label"] == "coffee" and best["decision"] == "match", done.stdout
    assert not list((data / "indexes").glob("bank-*/*.faiss"))  # found in Milvus, not a FAISS rebuild
    bad = run_reunite("match", str(copy), "--bank", "ads", data=data,
                      env={"REUNITE_VECTORS_URL": "redis://127.0.0.1:1"})
    assert bad.returncode == 2 and "milvus://HOST:PORT" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_a_reader_waits_for_a_write_in_flight_instead_of_rebuilding(tmp_path: Path, milvus,  # noqa: ANN001
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 256, (21, 32), dtype=np.uint8)
    writer, reader = Store(tmp_path, vectors_url=milvus.url), Store(tmp_path, vectors_url=milvus.url)
    bank = writer.catalog.ensure_bank("list", "hashes", {"signals": ["hashes"]})
    writer.add_images(bank, [NewImage(_extraction(n, codes[n]), f"ref-{n}") for n in range(20)])
    assert len(reader.indexes.get(bank.id, "pdq")) == 20
    caplog.set_level(logging.INFO, logger="reunite.milvus")

    # The writer's catalog commit is done and its Milvus write not yet (held for a moment here):
    # a reader seeing the newer catalog revision waits on the bank's lock, then finds it written.
    committed = threading.Event()
    mirror = writer.indexes.apply

    def slow_apply(*args, **kwargs) -> None:  # noqa: ANN002, ANN003
        committed.set()
        time.sleep(1.5)
        mirror(*args, **kwargs)

    writer.indexes.apply = slow_apply  # type: ignore[method-assign]
    late = threading.Thread(target=writer.add_images,
                            args=(bank, [NewImage(_extraction(20, codes[20]), "late")]))
    late.start()
    assert committed.wait(60)
    assert reader.catalog.revision(bank.id, "pdq") > reader.indexes.stored_revision(
        reader.indexes.collection(bank.id, "pdq"))
    hits = reader.indexes.get(bank.id, "pdq").radius_search(codes[20:21], 0)[0]
    late.join(timeout=60)
    assert len(hits) == 1
    assert not [r for r in caplog.records if r.message.startswith("rebuilt")]
    writer.indexes.forget_bank(bank.id)
