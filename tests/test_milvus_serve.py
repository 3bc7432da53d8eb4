"""Two ``reunite serve`` processes on two ports, and ``reunite serve --workers 2`` on one port,
each on one PostgreSQL catalog and one Milvus server.

Each process keeps no vectors of its own: what one indexes is found through the other at
once, and a consent withdrawal through one deletes the subject's vectors in Milvus (a query
of the collection finds none of them) and is gone from the other's answers too. For the two
workers of one port, each request is sent on a connection whose server end the test has
found in that worker's file descriptors (/proc), so "through the other worker" is known, not
left to the kernel's spreading of connections.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import consent_record
from conftest import jpeg_bytes, photo, png_bytes
from serve_process import start_serve, wait_ready
from sqlalchemy import func, select

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


def _folder_on_pg_and_milvus(tmp_path: Path, pg_url: str, milvus, name: str  # noqa: ANN001
                             ) -> tuple[Path, Catalog, dict[str, str], dict[str, str]]:
    """A data folder on the test's database and the run's Milvus: path, catalog, serve env, a key per role."""
    data = tmp_path / "data"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REUNITE_CATALOG_URL": pg_url,
           "REUNITE_VECTORS_URL": milvus.url, KEY_ENV: generate_key()}
    catalog = Catalog.open(data, pg_url)
    keys = {role: create_key(catalog, role, f"{name}-{role}") for role in ("admin", "ingest", "investigator")}
    return data, catalog, env, keys


def test_two_ports_see_each_others_writes_and_withdrawals(tmp_path: Path, pg_url: str, milvus) -> None:  # noqa: ANN001
    data, catalog, env, keys = _folder_on_pg_and_milvus(tmp_path, pg_url, milvus, "two-ports")
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


def _workers(pid: int) -> list[int]:
    """uvicorn's worker processes of the ``reunite serve`` at ``pid``: its children started by
    multiprocessing's spawn (not its resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if parent == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


def _serving_worker(workers: list[int], server_port: int, client_port: int) -> int | None:
    """Which of ``workers`` holds the server end of the loopback connection from ``client_port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                local, remote, inode = cols[1], cols[2], cols[9]
                if int(local.rsplit(":", 1)[1], 16) == server_port and \
                        int(remote.rsplit(":", 1)[1], 16) == client_port:
                    inodes.add(f"socket:[{inode}]")
    for pid in workers:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in inodes:
                    return pid
    return None


def _client_port(response: httpx.Response) -> int:
    return int(response.extensions["network_stream"].get_extra_info("socket").getsockname()[1])


def _through(url: str, workers: list[int], worker: int, key: str, method: str, path: str,
             **request: Any) -> httpx.Response:
    """Send one request on a new connection that ``worker`` accepted (others are closed unused)."""
    server_port = int(url.rsplit(":", 1)[1])
    for _attempt in range(200):
        with httpx.Client(base_url=url, timeout=120) as client:
            probe = client.get("/readyz")
            assert probe.status_code == 200, probe.text
            port = _client_port(probe)
            if _serving_worker(workers, server_port, port) != worker:
                continue
            r = client.request(method, path, headers={"X-API-Key": key}, **request)
            assert _client_port(r) == port  # the same kept-alive connection: the same worker
            return r
    raise AssertionError(f"no connection of 200 reached worker {worker}")


def test_two_workers_see_each_others_writes_and_withdrawals(tmp_path: Path, pg_url: str, milvus) -> None:  # noqa: ANN001
    data, catalog, env, keys = _folder_on_pg_and_milvus(tmp_path, pg_url, milvus, "two-workers")
    server, url = start_serve(data, env, "--workers", "2")
    try:
        wait_ready(server, url, timeout=180)
        workers = _workers(server.pid)
        assert len(workers) == 2, workers
        first, second = workers
        # /readyz answered through one worker; wait until the other accepts connections too.
        seen: set[int | None] = set()
        deadline = time.monotonic() + 180
        while not seen >= {first, second}:
            assert server.poll() is None and time.monotonic() < deadline, f"workers seen: {seen}"
            with httpx.Client(base_url=url, timeout=60) as probe:
                r = probe.get("/readyz")
                seen.add(_serving_worker(workers, int(url.rsplit(":", 1)[1]), _client_port(r)))

        def a(role: str, method: str, path: str, **request: Any) -> httpx.Response:
            return _through(url, workers, first, keys[role], method, path, **request)

        def b(role: str, method: str, path: str, **request: Any) -> httpx.Response:
            return _through(url, workers, second, keys[role], method, path, **request)

        for bank in ({"name": "ads", "kind": "ads", "policy": {"signals": ["hashes"]}},
                     {"name": "families", "kind": "missing_person"}):
            r = a("admin", "POST", "/v1/banks", json=bank)
            assert r.status_code == 201, r.text

        # An ad photo indexed through worker A is found through worker B at once.
        ad = photo("rocket.jpg").resize((240, 160))
        r = a("ingest", "POST", "/v1/banks/ads/items/batch",
              files=[("images", ("ad-1.png", png_bytes(ad), "image/png"))])
        assert r.status_code == 200 and r.json()["indexed"] == 1, r.text
        r = b("investigator", "POST", "/v1/match", data={"banks": "ads"},
              files={"image": ("q.jpg", jpeg_bytes(ad, 75), "image/jpeg")})
        assert r.status_code == 200, r.text
        assert r.json()["candidates"][0]["decision"] == "match", r.text

        # Enrolled through B, found through A; withdrawn through A, gone from B and from Milvus.
        reference = photo("astronaut.png").crop((130, 20, 370, 260)).resize((160, 160))
        r = b("admin", "POST", "/v1/banks/families/subjects",
              data={"record": json.dumps(consent_record("two-workers"))},
              files=[("photos", ("p.png", png_bytes(reference), "image/png"))])
        assert r.status_code == 201, r.text
        pseudonym = r.json()["subject"]["pseudonym"]

        def query() -> dict[str, tuple[str, bytes, str]]:
            return {"image": ("q.jpg", jpeg_bytes(reference, 80), "image/jpeg")}

        r = a("investigator", "POST", "/v1/match", data={"banks": "families"}, files=query())
        assert [c["pseudonym"] for c in r.json()["candidates"]][:1] == [pseudonym], r.text
        with catalog.session() as s:
            held = s.scalar(select(func.count(Vector.id)).join(Item, Item.id == Vector.item_id)
                            .join(Subject, Subject.id == Item.subject_id)
                            .where(Subject.pseudonym == pseudonym))
        r = a("admin", "DELETE", f"/v1/subjects/{pseudonym}")
        assert r.status_code == 200 and r.json()["vectors"] == held, r.text
        r = b("investigator", "POST", "/v1/match", data={"banks": "families"}, files=query())
        assert r.status_code == 200
        assert all(c["pseudonym"] != pseudonym for c in r.json()["candidates"]), r.text
        assert not list((data / "indexes").glob("**/*.faiss"))  # neither worker kept vectors
    finally:
        server.terminate()
        server.wait(timeout=60)
        catalog.engine.dispose()
