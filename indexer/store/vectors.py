"""Vector indexes: one per (bank, signal), behind one small interface.

FAISS is the embedded implementation: exact Hamming search over packed bits
for hashes (``IndexBinaryFlat``) and exact inner product over L2-normalised
floats for embeddings (``IndexFlatIP``), both wrapped in an ID map so that
vector ids are the catalog's ids and deletes are real deletes. Exact search is
deliberate: at the sizes a bank reaches on one machine (10^5..10^6 vectors) a
flat scan is milliseconds, and an approximate index would silently miss
matches. A server-backed implementation (Milvus) fits behind the same
interface.

Saved files are written atomically (temporary file, fsync, rename, fsync of the
folder) and carry the catalog revision they were built at, so that a crash at
any moment leaves either the old or the new file, never half of one, and a
stale file is detected and rebuilt from the catalog.
"""

from __future__ import annotations

import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from indexer.signals.base import Signal, VectorKind
from indexer.store.atomic import write_atomically

_MAGIC = b"RUNIDX1\0"
_HEADER = struct.Struct("<8sQ")  # magic, catalog revision


@dataclass(frozen=True)
class Hit:
    """One nearest neighbour: the catalog's vector id and its distance."""

    vector_id: int
    distance: float


class VectorIndex(ABC):
    """What the matcher needs from a vector store."""

    revision: int = 0

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int: ...

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """The ``k`` nearest vectors of each query, nearest first."""

    @abstractmethod
    def radius_search(self, queries: np.ndarray, radius: float) -> list[list[Hit]]:
        """Every vector within ``radius`` of each query, nearest first."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def to_bytes(self) -> bytes: ...


class FaissBinaryIndex(VectorIndex):
    """Exact Hamming search over packed-bit hashes."""

    def __init__(self, bits: int, index: faiss.IndexBinary | None = None) -> None:
        self.bits = bits
        self.index = index or faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(bits))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.uint8),
                                    np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> int:
        return int(self.index.remove_ids(np.asarray(ids, dtype=np.int64)))

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        if len(self) == 0 or k <= 0:
            return [[] for _ in range(len(queries))]
        dist, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.uint8),
                                      min(k, len(self)))
        return [[Hit(int(i), float(d)) for d, i in zip(drow, irow, strict=True) if i >= 0]
                for drow, irow in zip(dist, ids, strict=True)]

    def radius_search(self, queries: np.ndarray, radius: float) -> list[list[Hit]]:
        if len(self) == 0:
            return [[] for _ in range(len(queries))]
        # FAISS's binary range search is strict (< radius); ours is inclusive.
        lims, dist, ids = self.index.range_search(
            np.ascontiguousarray(queries, dtype=np.uint8), int(radius) + 1)
        return _split_ranges(lims, dist, ids)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def to_bytes(self) -> bytes:
        return faiss.serialize_index_binary(self.index).tobytes()

    @classmethod
    def from_bytes(cls, bits: int, data: bytes) -> FaissBinaryIndex:
        index = faiss.deserialize_index_binary(np.frombuffer(data, dtype=np.uint8))
        if index.d != bits:
            raise ValueError(f"index has {index.d} bits, the signal {bits}")
        return cls(bits, index)


class FaissFloatIndex(VectorIndex):
    """Exact cosine search; distances are reported as ``1 - cosine``."""

    def __init__(self, dim: int, index: faiss.Index | None = None) -> None:
        self.dim = dim
        self.index = index or faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    @staticmethod
    def _normalised(vectors: np.ndarray) -> np.ndarray:
        x = np.array(vectors, dtype=np.float32, copy=True, ndmin=2)
        faiss.normalize_L2(x)
        return x

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(self._normalised(vectors), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: np.ndarray) -> int:
        return int(self.index.remove_ids(np.asarray(ids, dtype=np.int64)))

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        if len(self) == 0 or k <= 0:
            return [[] for _ in range(len(queries))]
        sims, ids = self.index.search(self._normalised(queries), min(k, len(self)))
        return [[Hit(int(i), float(1.0 - s)) for s, i in zip(srow, irow, strict=True) if i >= 0]
                for srow, irow in zip(sims, ids, strict=True)]

    def radius_search(self, queries: np.ndarray, radius: float) -> list[list[Hit]]:
        if len(self) == 0:
            return [[] for _ in range(len(queries))]
        # Inner-product range search keeps similarities above the threshold.
        lims, sims, ids = self.index.range_search(self._normalised(queries), 1.0 - radius)
        return _split_ranges(lims, 1.0 - sims, ids)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def to_bytes(self) -> bytes:
        return faiss.serialize_index(self.index).tobytes()

    @classmethod
    def from_bytes(cls, dim: int, data: bytes) -> FaissFloatIndex:
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        if index.d != dim:
            raise ValueError(f"index has dimension {index.d}, the signal {dim}")
        return cls(dim, index)


def _split_ranges(lims: np.ndarray, dist: np.ndarray, ids: np.ndarray) -> list[list[Hit]]:
    out = []
    for q in range(len(lims) - 1):
        lo, hi = int(lims[q]), int(lims[q + 1])
        hits = [Hit(int(i), float(d)) for d, i in zip(dist[lo:hi], ids[lo:hi], strict=True)]
        hits.sort(key=lambda h: (h.distance, h.vector_id))
        out.append(hits)
    return out


def new_index(signal: Signal) -> VectorIndex:
    if signal.kind is VectorKind.BINARY:
        return FaissBinaryIndex(signal.dim)
    return FaissFloatIndex(signal.dim)


def save_atomically(index: VectorIndex, path: Path) -> None:
    """Write ``index`` with its revision so that readers see the old or the new file."""
    write_atomically(path, _HEADER.pack(_MAGIC, index.revision) + index.to_bytes())


def load_saved(signal: Signal, path: Path) -> VectorIndex | None:
    """The index saved at ``path``, or None when it is missing or unreadable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) < _HEADER.size:
        return None
    magic, revision = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        return None
    body = data[_HEADER.size:]
    try:
        if signal.kind is VectorKind.BINARY:
            index: VectorIndex = FaissBinaryIndex.from_bytes(signal.dim, body)
        else:
            index = FaissFloatIndex.from_bytes(signal.dim, body)
    except Exception:  # a damaged file is a cache miss: the catalog rebuilds it
        return None
    index.revision = int(revision)
    return index
