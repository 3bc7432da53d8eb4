"""Vector indexes in a Milvus server: one collection per (bank, signal), shared by every process.

Why: the embedded FAISS indexes live in each process's memory (and a file per
index in the data folder), so two API workers or two machines each hold their
own copy and rebuild it from the catalog whenever another one wrote. With
``REUNITE_VECTORS_URL=milvus://HOST:PORT`` (or ``--vectors-url``) the vectors
live in the server instead: an image indexed through one process is searchable
through every other at once, and a consent withdrawal deletes the vectors in
the one place they are kept.

Exactness is kept as with FAISS: packed-bit hashes are ``BINARY_VECTOR`` with
``HAMMING`` on a ``BIN_FLAT`` index (a scan; ``BIN_IVF_FLAT`` missed 11 of 13
neighbours at radius 100 even with nprobe = nlist), embeddings (faces, rooms)
are L2-normalised ``FLOAT_VECTOR`` with ``IP`` on a ``FLAT`` index.

A search sees every write the catalog shows: each write's Milvus timestamp is
recorded with the collection's revision, and reads name the newest such
timestamp this process knows (Milvus's ``Customized`` consistency with a
guarantee timestamp). A process that finds a newer catalog revision reads the
metadata (Strong) first. So a read waits only for writes it has to see, not for
the server's next time tick as a Strong read does (``proxy.timeTickInterval``,
200 ms by default; BENCHMARKS.md, *Milvus*).

The catalog stays the source of truth. Each collection's catalog revision is
recorded in a small metadata collection; a process trusts a collection only at
the catalog's revision for its (bank, signal), and otherwise (a crash between a
catalog commit and the Milvus write, a dropped collection, a process that wrote
the catalog without Milvus) rebuilds it from the catalog's stored vectors.
Writers of a bank hold a per-bank lock of the catalog (an advisory lock on
PostgreSQL, an ``flock`` beside a SQLite file) from before their catalog
transaction until Milvus holds the change and its revision; a reader that finds
Milvus behind takes the same lock and looks again before rebuilding, so an
in-flight write is waited for, not rebuilt over, and two processes never both
rebuild one collection (compare-and-set under the lock).

Collections are named ``reunite_<catalog id>_b<bank id>_<signal>`` (the
catalog's random identity, so two catalogs can share one server), and the
metadata collection ``reunite_<catalog id>_meta``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
from sqlalchemy import select, text

from indexer.signals import base as signals
from indexer.signals.base import Signal, VectorKind
from indexer.store.catalog import Catalog, IndexRevision
from indexer.store.indexes import IndexSet
from indexer.store.vectors import FaissFloatIndex, Hit, IndexChoice, VectorIndex, VectorOwners

log = logging.getLogger("reunite.milvus")

VECTORS_URL_ENV = "REUNITE_VECTORS_URL"
# Milvus refuses a search with more results than this (``topk`` / ``limit``).
MAX_RESULTS = 16_384
FIRST_LIMIT = 256  # a range search's first limit (the queries that fill it are asked again)
INSERT_BATCH = 5_000  # rows per insert: well under gRPC's 64 MB message at 8192-d floats
# pg_advisory_lock(key, bank) of a bank's vector writes ("rmvs" in ASCII); any other constant would do.
PG_VECTORS_LOCK = 0x726D7673
CONSISTENCY = "Strong"
CONNECT_TIMEOUT_S = 10


class BadVectorsUrl(ValueError):
    """``--vectors-url`` / ``$REUNITE_VECTORS_URL`` is neither empty, ``faiss`` nor a ``milvus://`` URL."""


class VectorsUnavailable(RuntimeError):
    """The Milvus server of the vectors URL cannot be reached or used."""


def milvus_uri(url: str | None) -> tuple[str, str] | None:
    """(``http(s)://host:port``, token) for a Milvus URL; None for the embedded FAISS default.

    Accepted: ``milvus://HOST[:PORT]`` (plain gRPC, port 19530 by default),
    ``milvus+https://HOST[:PORT]`` (TLS), with ``USER:PASSWORD@`` for a server
    with authentication; empty or ``faiss`` is the default.
    """
    if url is None or url.strip().lower() in ("", "faiss"):
        return None
    parts = urlsplit(url.strip())
    scheme = {"milvus": "http", "milvus+http": "http", "milvus+https": "https"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise BadVectorsUrl(f"the vectors URL must be milvus://HOST:PORT (or faiss), not {url!r}")
    try:
        port = parts.port or 19530
    except ValueError:
        raise BadVectorsUrl(f"the vectors URL has a bad port: {url!r}") from None
    token = ""
    if parts.username:
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return f"{scheme}://{parts.hostname}:{port}", token


def milvus_failure(exc: BaseException) -> str | None:
    """One line for an error the Milvus server (or the way to it) raised, else None."""
    current: BaseException | None = exc
    while current is not None:
        if type(current).__module__.startswith("pymilvus"):
            first = (str(getattr(current, "message", "")) or str(current)).strip().splitlines()
            line = (first or [type(current).__name__])[0][:200]
            return f"the Milvus server of the vectors URL failed: {line}"
        current = current.__cause__ or current.__context__
    return None


def collection_prefix(catalog_id: str) -> str:
    return "reunite_" + re.sub(r"[^A-Za-z0-9_]", "_", catalog_id)


def _hits(rows: Any, similarity: bool) -> list[Hit]:
    hits = [Hit(int(h["id"]), 1.0 - float(h["distance"]) if similarity else float(h["distance"]))
            for h in rows]
    hits.sort(key=lambda h: (h.distance, h.vector_id))
    return hits


class MilvusVectorIndex(VectorIndex):
    """One (bank, signal) collection; searches are exact and see every acknowledged write."""

    def __init__(self, client: Any, name: str, signal: Signal) -> None:
        self.client = client
        self.name = name
        self.signal = signal
        self.binary = signal.kind is VectorKind.BINARY
        self._count: int | None = None
        # Called when the collection turns out to be gone (dropped by hand): refills it from the catalog.
        self.recover: Callable[[], None] | None = None
        # The Milvus (hybrid) timestamp of the newest write this process must see: reads wait for it.
        self.guarantee_ts = 1
        # A fresh timestamp after a delete (Milvus 2.3 answers a delete with none); without one
        # (an index used on its own), every read after a delete is Strong.
        self.barrier: Callable[[], int] | None = None
        self._strong = False

    def _reads(self) -> dict[str, Any]:
        if self._strong:
            return {"consistency_level": "Strong"}
        return {"consistency_level": "Customized", "guarantee_timestamp": max(1, int(self.guarantee_ts))}

    def _wrote(self, result: Any) -> None:
        self.guarantee_ts = max(self.guarantee_ts, int(result.timestamp))

    # schema --------------------------------------------------------------------------------
    def create(self) -> None:
        """An empty collection with its exact index, loaded (dropping any old one of that name)."""
        from pymilvus import DataType

        if self.client.has_collection(self.name):
            self.client.drop_collection(self.name)
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False,
                                           description=f"reunite vectors of signal {self.signal.name}")
        schema.add_field("id", DataType.INT64, is_primary=True)
        if self.binary:
            schema.add_field("v", DataType.BINARY_VECTOR, dim=self.signal.dim)
        else:
            schema.add_field("v", DataType.FLOAT_VECTOR, dim=self.signal.dim)
        params = self.client.prepare_index_params()
        params.add_index("v", index_type="BIN_FLAT" if self.binary else "FLAT",
                         metric_type="HAMMING" if self.binary else "IP")
        self.client.create_collection(self.name, schema=schema, index_params=params,
                                      consistency_level=CONSISTENCY)
        self.client.load_collection(self.name)
        self._count = 0

    def _columns(self, ids: np.ndarray, vectors: np.ndarray) -> Iterator[list[Any]]:
        """[ids, vectors] in batches: column-wise, 20x faster to send than a dict per row."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.binary:
            data = np.ascontiguousarray(vectors, dtype=np.uint8).reshape(len(ids), -1)
        else:
            data = FaissFloatIndex._normalised(vectors)
        for start in range(0, len(ids), INSERT_BATCH):
            chunk = data[start:start + INSERT_BATCH]
            yield [ids[start:start + INSERT_BATCH].tolist(),
                   [row.tobytes() for row in chunk] if self.binary else chunk]

    def _orm(self) -> Any:
        """The collection through pymilvus's ORM on the client's own connection (it takes columns)."""
        from pymilvus import Collection

        return Collection(self.name, using=self.client._using)

    # writes --------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray, owners: VectorOwners | None = None) -> None:
        """Upsert: adding an id again (a retried write) replaces it instead of duplicating it.

        ``owners`` is not kept: several processes share the collection, and the catalog
        answers the owners of its hits (matcher.search.query)."""
        if len(ids):
            collection = self._orm()
            for columns in self._columns(ids, vectors):
                self._wrote(collection.upsert(columns))
        self._count = None

    def insert_new(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert ids the collection does not hold (a rebuild into an empty collection)."""
        if len(ids):
            collection = self._orm()
            for columns in self._columns(ids, vectors):
                self._wrote(collection.insert(columns))
        self._count = None

    def seal(self) -> None:
        """Flush what was inserted into sealed, indexed segments (after a bulk load: faster searches)."""
        self.client.flush(self.name)

    def remove(self, ids: np.ndarray) -> int:
        wanted = [int(i) for i in np.asarray(ids, dtype=np.int64)]
        removed = 0
        collection = self._orm() if wanted else None
        for start in range(0, len(wanted), INSERT_BATCH):
            chunk = wanted[start:start + INSERT_BATCH]
            held = self.client.query(self.name, filter=f"id in {chunk}", output_fields=["id"],
                                     **self._reads())
            assert collection is not None
            collection.delete(f"id in {chunk}")
            removed += len(held)
        if wanted:
            if self.barrier is None:
                self._strong = True
            else:
                self.guarantee_ts = max(self.guarantee_ts, self.barrier())
        self._count = None
        return removed

    # reads ---------------------------------------------------------------------------------
    def _queries(self, queries: np.ndarray) -> list[Any]:
        if self.binary:
            data = np.ascontiguousarray(queries, dtype=np.uint8).reshape(len(queries), -1)
            return [row.tobytes() for row in data]
        return list(FaissFloatIndex._normalised(queries))

    def _search(self, queries: np.ndarray, limit: int, params: dict[str, Any]) -> list[list[Hit]]:
        if len(queries) == 0:
            return []
        metric = "HAMMING" if self.binary else "IP"

        def ask() -> Any:
            return self.client.search(self.name, data=self._queries(queries), limit=limit, anns_field="v",
                                      search_params={"metric_type": metric, "params": params},
                                      **self._reads())

        try:
            rows = ask()
        except Exception:
            if self.recover is None or self.client.has_collection(self.name):
                raise
            self.recover()
            rows = ask()
        return [_hits(r, similarity=not self.binary) for r in rows]

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        if k <= 0:
            return [[] for _ in range(len(queries))]
        return self._search(queries, min(k, MAX_RESULTS), {})

    def radius_search(self, queries: np.ndarray, radius: float) -> list[list[Hit]]:
        """Every vector within ``radius`` (inclusive, as FAISS's answers here), nearest first.

        Milvus's range search keeps ``range_filter <= d < radius`` for Hamming and
        ``radius < s <= range_filter`` for inner product, and returns at most
        :data:`MAX_RESULTS` per query: a query with more neighbours than that gets
        the nearest ones and a warning (a hash radius holds a handful).
        """
        if self.binary:
            params = {"radius": int(radius) + 1, "range_filter": -1}
        else:
            params = {"radius": 1.0 - float(radius), "range_filter": 2.0}
        # A small limit first (a large one costs Milvus a heap of that size per query and
        # segment); the queries that filled it are asked again with the largest.
        out = self._search(queries, FIRST_LIMIT, params)
        full = [n for n, hits in enumerate(out) if len(hits) >= FIRST_LIMIT]
        if full:
            for n, hits in zip(full, self._search(queries[full], MAX_RESULTS, params), strict=True):
                out[n] = hits
        if any(len(hits) >= MAX_RESULTS for hits in out):
            log.warning("a range search of %s hit Milvus's %d results per query; the nearest are kept",
                        self.name, MAX_RESULTS)
        return out

    def __len__(self) -> int:
        if self._count is None:
            rows = self.client.query(self.name, filter="", output_fields=["count(*)"], **self._reads())
            self._count = int(rows[0]["count(*)"])
        return self._count

    def to_bytes(self) -> bytes:
        raise TypeError("a Milvus collection is kept by the server, not saved in the data folder")


class MilvusIndexSet(IndexSet):
    """Every (bank, signal) index of one catalog as Milvus collections, kept at the catalog's revisions."""

    def __init__(self, data_dir: Path, catalog: Catalog, url: str) -> None:
        super().__init__(data_dir, catalog, IndexChoice("flat"))
        found = milvus_uri(url)
        if found is None:
            raise BadVectorsUrl(f"not a Milvus URL: {url!r}")
        uri, token = found
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise VectorsUnavailable("Milvus vectors need pymilvus: pip install 'reunite[milvus]'") from None
        # pymilvus prints its errors on its own console handlers; they reach us as exceptions
        # (one line on the CLI's stderr, an answer of the service), so its printing is silenced.
        for name in ("pymilvus", "pymilvus.milvus_client"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        try:
            self.client = MilvusClient(uri=uri, token=token, timeout=CONNECT_TIMEOUT_S)
        except Exception as exc:  # pymilvus raises its own MilvusException and grpc errors
            raise VectorsUnavailable(
                f"cannot reach the Milvus server at {uri} ({exc.__class__.__name__})") from exc
        self.uri = uri
        self.prefix = collection_prefix(catalog.identity())
        self.meta = f"{self.prefix}_meta"
        self._handles: dict[tuple[int, str], MilvusVectorIndex] = {}
        self._synced: dict[tuple[int, str], int] = {}  # revision this process saw Milvus hold
        self._bank_locks: dict[int, threading.RLock] = {}
        self._held = threading.local()
        self._ensure_meta()

    # names and the metadata collection -----------------------------------------------------
    def collection(self, bank_id: int, signal: str) -> str:
        return f"{self.prefix}_b{int(bank_id)}_{re.sub(r'[^A-Za-z0-9_]', '_', signal)}"

    def _ensure_meta(self) -> None:
        from pymilvus import DataType

        if self.client.has_collection(self.meta):
            self.client.load_collection(self.meta)
            return
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False,
                                           description="reunite: catalog revision of each collection")
        schema.add_field("name", DataType.VARCHAR, max_length=255, is_primary=True)
        schema.add_field("revision", DataType.INT64)
        schema.add_field("ts", DataType.INT64)  # the Milvus timestamp of that revision's last write
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector field in every collection
        params = self.client.prepare_index_params()
        params.add_index("v", index_type="FLAT", metric_type="L2")
        with contextlib.suppress(Exception):  # another process created it meanwhile
            self.client.create_collection(self.meta, schema=schema, index_params=params,
                                          consistency_level=CONSISTENCY)
        self.client.load_collection(self.meta)

    def _stored(self, name: str) -> tuple[int, int] | None:
        """(catalog revision, Milvus timestamp of its last write) of ``name``; None when it is not there."""
        if not self.client.has_collection(name):
            return None
        rows = self.client.query(self.meta, filter=f'name == "{name}"', output_fields=["revision", "ts"],
                                 consistency_level=CONSISTENCY)
        return (int(rows[0]["revision"]), int(rows[0]["ts"])) if rows else None

    def stored_revision(self, name: str) -> int | None:
        """The catalog revision the collection ``name`` holds, None when it is not there."""
        stored = self._stored(name)
        return None if stored is None else stored[0]

    def _upsert_meta(self, name: str, revision: int, ts: int) -> int:
        from pymilvus import Collection

        done = Collection(self.meta, using=self.client._using).upsert(
            [[name], [int(revision)], [int(ts)], [[0.0, 0.0]]])
        return int(done.timestamp)

    def _barrier(self) -> int:
        """A timestamp later than every write acknowledged so far (one write of a row of its own)."""
        return self._upsert_meta("__barrier__", 0, 0)

    def _record(self, handle: MilvusVectorIndex, revision: int) -> None:
        self._upsert_meta(handle.name, revision, handle.guarantee_ts)

    # the per-bank lock ---------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, bank_id: int) -> Iterator[None]:
        """Hold the bank's vector lock (reentrant in a thread) across a catalog write and its mirror here."""
        with self._lock:
            lock = self._bank_locks.setdefault(int(bank_id), threading.RLock())
        with lock:
            depth: dict[int, int] = self._held.__dict__.setdefault("depth", {})
            if depth.get(bank_id, 0):
                depth[bank_id] += 1
                try:
                    yield
                finally:
                    depth[bank_id] -= 1
                return
            with self._catalog_lock(int(bank_id)):
                depth[bank_id] = 1
                try:
                    yield
                finally:
                    depth[bank_id] = 0

    @contextlib.contextmanager
    def _catalog_lock(self, bank_id: int) -> Iterator[None]:
        engine = self.catalog.engine
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k, :b)"), {"k": PG_VECTORS_LOCK, "b": bank_id})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k, :b)"),
                                 {"k": PG_VECTORS_LOCK, "b": bank_id})
                    conn.commit()
            return
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        if not database or database == ":memory:" or database.startswith("file:"):
            yield
            return
        path = Path(database).with_name(f"{Path(database).name}.vectors-{bank_id}.lock")
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _catalog_revision(self, bank_id: int, signal: str) -> int:
        """The committed revision now, on a connection of its own (not a unit's cached read)."""
        with self.catalog.engine.connect() as conn:
            rev = conn.execute(select(IndexRevision.revision).where(
                IndexRevision.bank_id == bank_id, IndexRevision.signal == signal)).scalar()
        return int(rev or 0)

    # the IndexSet interface ----------------------------------------------------------------
    def _handle(self, key: tuple[int, str], revision: int) -> MilvusVectorIndex:
        handle = self._handles.get(key)
        if handle is None:
            handle = MilvusVectorIndex(self.client, self.collection(*key), signals.get(key[1]))
            handle.recover = lambda: self._recover(key)
            handle.barrier = self._barrier
            self._handles[key] = handle
        if handle.revision != revision:
            handle._count = None
        handle.revision = revision
        return handle

    def get(self, bank_id: int, signal_name: str) -> VectorIndex:
        """The collection of (bank, signal), rebuilt from the catalog when it is not at its revision."""
        key = (bank_id, signal_name)
        if not signals.get(signal_name).vector_index:
            raise ValueError(f"signal {signal_name!r} is searched by its own index, not a vector index")
        wanted = self.catalog.revision(bank_id, signal_name)
        with self._lock:
            if self._synced.get(key) == wanted:
                return self._handle(key, wanted)
        stored = self._stored(self.collection(*key))
        if stored is not None and stored[0] == wanted:
            with self._lock:
                self._synced[key] = wanted
                handle = self._handle(key, wanted)
                handle.guarantee_ts = max(handle.guarantee_ts, stored[1])
                return handle
        revision = self._refill(key)  # under the bank's lock: a writer in flight finishes first
        with self._lock:
            return self._handle(key, revision)

    def _recover(self, key: tuple[int, str]) -> None:
        self._refill(key)

    def _refill(self, key: tuple[int, str]) -> int:
        """Rebuild (bank, signal) when Milvus does not hold the catalog's revision of it (under the lock)."""
        with self.writing(key[0]), self._lock:
            wanted = self._catalog_revision(*key)
            stored = self._stored(self.collection(*key))
            if stored is None or stored[0] != wanted:
                self._rebuild_collection(key, wanted)
            else:
                handle = self._handle(key, wanted)
                handle.guarantee_ts = max(handle.guarantee_ts, stored[1])
            self._synced[key] = wanted
            return wanted

    def _rebuild_collection(self, key: tuple[int, str], revision: int) -> None:
        """Refill the collection from the catalog (under the bank's lock: no writer meanwhile)."""
        signal = signals.get(key[1])
        handle = self._handle(key, revision)
        handle.create()
        count = 0
        for batch in self.catalog.iter_vectors(key[0], key[1]):
            ids = np.fromiter((vid for vid, _ in batch), dtype=np.int64, count=len(batch))
            data = np.frombuffer(b"".join(blob for _, blob in batch), dtype=signal.dtype)
            handle.insert_new(ids, data.reshape(len(batch), -1))
            count += len(batch)
        if count:
            handle.seal()
        self._record(handle, revision)
        handle._count = count
        log.info("rebuilt %s from the catalog: %d vectors at revision %d", handle.name, count, revision)

    def apply(self, revisions_before: dict[tuple[int, str], int],
              revisions_after: dict[tuple[int, str], int],
              added: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]],
              removed: dict[tuple[int, str], np.ndarray] | None = None,
              owners: dict[tuple[int, str], VectorOwners] | None = None) -> None:
        """Mirror a committed catalog change into Milvus, with its revision (``owners``: unused,
        see :meth:`MilvusVectorIndex.add`).

        When the collection was not at the revision the change started from (a
        writer that held no lock, a dropped collection), it is left alone: the
        next ``get`` finds it behind and rebuilds it from the catalog.
        """
        removed = removed or {}
        for key, after in sorted(revisions_after.items()):
            if not signals.get(key[1]).vector_index:
                continue
            with self.writing(key[0]), self._lock:
                before = revisions_before.get(key, -1)
                name = self.collection(*key)
                held = self._synced.get(key)
                stored = None
                if held != before:
                    stored = self._stored(name)
                    held = None if stored is None else stored[0]
                if held != before:
                    self._synced.pop(key, None)
                    continue
                handle = self._handle(key, before)
                if stored is not None:
                    handle.guarantee_ts = max(handle.guarantee_ts, stored[1])
                if key in removed and len(removed[key]):
                    handle.remove(removed[key])
                if key in added:
                    handle.add(*added[key])
                self._record(handle, after)
                self._synced[key] = after
                handle.revision = after

    def save(self) -> None:
        """Nothing to write: Milvus holds each change (and its revision) once ``apply`` returns."""

    def forget_bank(self, bank_id: int) -> None:
        with self._lock:
            mine = f"{self.prefix}_b{int(bank_id)}_"
            for name in self.client.list_collections():
                if name.startswith(mine):
                    self.client.drop_collection(name)
                    self.client.delete(self.meta, filter=f'name == "{name}"')
            for key in [k for k in self._handles if k[0] == bank_id]:
                self._handles.pop(key, None)
                self._synced.pop(key, None)
        super().forget_bank(bank_id)


def open_index_set(data_dir: Path, catalog: Catalog, url: str | None) -> IndexSet:
    """The FAISS files of the data folder (the default), or Milvus collections for a ``milvus://`` URL."""
    if milvus_uri(url) is None:
        return IndexSet(data_dir, catalog)
    assert url is not None
    return MilvusIndexSet(data_dir, catalog, url)
