"""A bank on the multi-index hash answers hash lookups over HTTP as the flat index did.

Same service, same references, same partner lookups (``/v1/match/hashes`` and
HMA's ``/m/lookup``): first on the flat FAISS index, then with the bank's PDQ
index rebuilt from the catalog as a multi-index hash. Partners hear of hits
only, and every hit here is within the probe radius, so the answers must be
identical, byte for byte. A withdrawal (the reference deleted) is gone from
the multi-index answer too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from api_support import LiveApi, live_api
from conftest import jpeg_bytes, png_bytes, tiles

from indexer import pipeline
from indexer.store.indexes import IndexSet
from indexer.store.mih import MultiIndexHashIndex
from indexer.store.milvus_vectors import MilvusIndexSet, MilvusVectorIndex
from indexer.store.vectors import FaissBinaryIndex, IndexChoice

HASHES_ONLY = {"signals": ["hashes"]}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, module_catalog_url: str | None) -> Iterator[LiveApi]:
    with live_api(Path(tmp_path_factory.mktemp("mih-http")), catalog_url=module_catalog_url) as running:
        r = running.as_("admin").post("/v1/banks",
                                      json={"name": "refs", "kind": "ads", "policy": HASHES_ONLY})
        assert r.status_code in (200, 201), r.text
        yield running


def _pdq(data: bytes) -> str:
    return next(v for v in pipeline.extract(data, ["pdq"]).vectors).hex()


def _flip(hex_hash: str, bits: list[int]) -> str:
    raw = bytearray(bytes.fromhex(hex_hash))
    for b in bits:
        raw[b // 8] ^= 1 << (7 - b % 8)
    return raw.hex()


def _answers(api: LiveApi, lookups: list[str], round_name: str) -> list[tuple[int, str, int, str]]:
    # A key per round and route: a partner key may queue only 20 candidates an hour (api.budgets).
    partner = api.client(api.key("partner", f"{round_name}-v1"))
    hma = api.client(api.key("partner", f"{round_name}-hma"))
    out = []
    for h in lookups:
        a = partner.post("/v1/match/hashes", json={"hashes": {"pdq": h}, "banks": ["refs"]})
        b = hma.get("/m/lookup", params={"signal_type": "pdq", "signal": h})
        out.append((a.status_code, a.text, b.status_code, b.text))
    return out


def test_http_lookups_are_the_same_on_the_multi_index(api: LiveApi) -> None:
    pictures = tiles(8, seed=71)
    files = [("images", (f"{n}.png", png_bytes(p), "image/png")) for n, p in enumerate(pictures)]
    r = api.as_("ingest").post("/v1/banks/refs/items/batch", files=files,
                               data={"records": "[" + ", ".join(f'{{"label": "ad-{n}"}}'
                                                                for n in range(8)) + "]"})
    assert r.status_code == 200 and r.json()["indexed"] == 8, r.text
    rng = np.random.default_rng(4)
    exact = [_pdq(png_bytes(p)) for p in pictures]
    lookups = (exact
               + [_pdq(jpeg_bytes(p.resize((80, 80)), 70)) for p in pictures[:4]]  # recompressed copies
               + [_flip(h, rng.choice(256, 12, replace=False).tolist()) for h in exact[:4]]  # 12 bits off
               + [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(3)])  # strangers
    store = api.service.store
    indexes = store.indexes
    bank = store.catalog.bank("refs")
    original = indexes
    on_milvus = isinstance(indexes, MilvusIndexSet)  # REUNITE_TEST_VECTORS=milvus
    assert isinstance(indexes.get(bank.id, "pdq"), MilvusVectorIndex if on_milvus else FaissBinaryIndex)
    before = _answers(api, lookups, "flat")
    assert sum('"decision":"match"' in a[1] for a in before) >= 8  # the lookups do find the references

    try:
        if on_milvus:  # Milvus's BIN_FLAT answered; the service now answers from in-process indexes
            store.indexes = indexes = IndexSet(store.data_dir, store.catalog)
        indexes.choice = IndexChoice("mih")
        assert isinstance(indexes.get(bank.id, "pdq"), MultiIndexHashIndex)  # rebuilt: the kind changed
        assert _answers(api, lookups, "mih") == before

        # A withdrawal reaches the multi-index: the deleted reference is no longer found.
        partner = api.client(api.key("partner", "withdrawal"))
        first = partner.post("/v1/match/hashes", json={"hashes": {"pdq": exact[0]}}).json()
        assert first["hits"]
        item = _item_of(api, exact[0])
        with api.service.store.catalog.session() as s:
            api.service.store.delete_items(s, [item])
        assert isinstance(indexes.get(bank.id, "pdq"), MultiIndexHashIndex)
        gone = partner.post("/v1/match/hashes", json={"hashes": {"pdq": exact[0]}}).json()
        assert gone["hits"] == []
    finally:
        indexes.choice = IndexChoice("auto")
        store.indexes = original


def _item_of(api: LiveApi, pdq_hex: str) -> int:
    from sqlalchemy import select

    from indexer.store.catalog import Vector

    with api.service.store.catalog.session() as s:
        return int(s.scalar(select(Vector.item_id).where(Vector.signal == "pdq",
                                                          Vector.data == bytes.fromhex(pdq_hex))))
