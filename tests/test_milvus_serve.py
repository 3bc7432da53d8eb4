"""Two ``reunite serve`` processes on two ports, one PostgreSQL catalog and one Milvus server.

Each process keeps no vectors of its own: what one indexes is found through the other at
once, and a consent withdrawal through one deletes the subject's vectors in Milvus (a query
of the collection finds none of them) and is gone from the other's answers too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_support import consent_record
from conftest import jpeg_bytes, photo, png_bytes
from serve_process import start_serve, wait_ready
from sqlalchemy import select

from api.application import Application
from api.auth import create_key
from indexer.crypto import KEY_ENV, generate_key
from indexer.store.catalog import Bank, Catalog, Item, Subject, Vector
from indexer.store.milvus_vectors import collection_prefix, milvus_uri


@pytest.fixture
def pg_url(pg_server) -> Iterator[str]:  # noqa: ANN001 - tests.pg_server.PostgresServer
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url)


def test_two_ports_see_each_others_writes_and_withdrawals(tmp_path: Path, pg_url: str, milvus) -> None:  # noqa: ANN001
    data = tmp_path / "data"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REUNITE_CATALOG_URL": pg_url,
           "REUNITE_VECTORS_URL": milvus.url, KEY_ENV: generate_key()}
    catalog = Catalog.open(data, pg_url)
    keys = {role: create_key(catalog, role, f"two-ports-{role}")
            for role in ("admin", "ingest", "investigator")}
    # The folder's audit key made once, so that the two processes can start side by side.
    Application(data, pg_url, env).store.catalog.engine.dispose()
    (first, url_a), (second, url_b) = start_serve(data, env), start_serve(data, env)
    try:
        wait_ready(first, url_a)
        wait_ready(second, url_b)
        a = {r: httpx.Client(base_url=url_a, headers={"X-API-Key": k}, timeout=120) for r, k in keys.items()}
        b = {r: httpx.Client(base_url=url_b, headers={"X-API-Key": k}, timeout=120) for r, k in keys.items()}
        ads = {"name": "ads", "kind": "ads", "policy": {"signals": ["hashes"]}}
        families = {"name": "families", "kind": "missing_person"}  # hashes and faces
        for bank in (ads, families):
            r = a["admin"].post("/v1/banks", json=bank)
            assert r.status_code == 201, r.text

        # An ad photo indexed through A is found through B at once.
        ad = photo("rocket.jpg").resize((240, 160))
        r = a["ingest"].post("/v1/banks/ads/items/batch",
                             files=[("images", ("ad-1.png", png_bytes(ad), "image/png"))])
        assert r.status_code == 200 and r.json()["indexed"] == 1, r.text
        r = b["investigator"].post("/v1/match", data={"banks": "ads"},
                                   files={"image": ("q.jpg", jpeg_bytes(ad, 75), "image/jpeg")})
        assert r.status_code == 200, r.text
        assert r.json()["candidates"][0]["decision"] == "match", r.text

        # A missing person enrolled through B is found through A; withdrawn through A, gone from B.
        reference = photo("astronaut.png").crop((130, 20, 370, 260)).resize((160, 160))
        r = b["admin"].post("/v1/banks/families/subjects",
                            data={"record": json.dumps(consent_record("two-ports"))},
                            files=[("photos", ("p.png", png_bytes(reference), "image/png"))])
        assert r.status_code == 201, r.text
        pseudonym = r.json()["subject"]["pseudonym"]
        query = {"image": ("q.jpg", jpeg_bytes(reference, 80), "image/jpeg")}
        r = a["investigator"].post("/v1/match", data={"banks": "families"}, files=query)
        assert [c["pseudonym"] for c in r.json()["candidates"]][:1] == [pseudonym], r.text
        with catalog.session() as s:
            bank_id = s.scalar(select(Bank.id).where(Bank.name == "families"))
            held = [(str(sig), int(vid)) for vid, sig in s.execute(
                select(Vector.id, Vector.signal).join(Item, Item.id == Vector.item_id)
                .join(Subject, Subject.id == Item.subject_id).where(Subject.pseudonym == pseudonym))]
        assert len(held) >= 5 and any(signal.startswith("face") for signal, _vid in held)  # floats too
        from pymilvus import MilvusClient
        uri, token = milvus_uri(milvus.url)
        server = MilvusClient(uri=uri, token=token)
        prefix = collection_prefix(catalog.identity())

        def in_milvus() -> list[int]:
            found = []
            for signal, vid in held:
                found += [int(row["id"]) for row in server.query(
                    f"{prefix}_b{bank_id}_{signal}", filter=f"id in [{vid}]", output_fields=["id"],
                    consistency_level="Strong")]
            return found

        assert sorted(in_milvus()) == sorted(vid for _s, vid in held)
        r = a["admin"].delete(f"/v1/subjects/{pseudonym}")
        assert r.status_code == 200 and r.json()["vectors"] == len(held), r.text
        assert in_milvus() == []
        r = b["investigator"].post("/v1/match", data={"banks": "families"}, files=query)
        assert r.status_code == 200
        assert all(c["pseudonym"] != pseudonym for c in r.json()["candidates"]), r.text
        server.close()
        # No process kept vectors of its own: nothing was saved in the data folder.
        assert not list((data / "indexes").glob("**/*.faiss"))
    finally:
        for proc in (first, second):
            proc.terminate()
            proc.wait(timeout=60)
        catalog.engine.dispose()
