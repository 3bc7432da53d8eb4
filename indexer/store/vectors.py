"""Vector indexes: one per (bank, signal), behind one small interface.

FAISS is the embedded implementation: exact Hamming search over packed bits
for hashes (``IndexBinaryFlat``) and exact inner product over L2-normalised
floats for embeddings (``IndexFlatIP``), both wrapped in an ID map so that
vector ids are the catalog's ids and deletes are real deletes. Exact search is
deliberate: at the sizes a bank reaches on one machine (10^5..10^6 vectors) a
flat scan is milliseconds, and an approximate index would silently miss
matches. The server-backed implementation (Milvus, shared by every process) is
indexer.store.milvus_vectors, behind the same interface.

Saved files are written atomically (temporary file, fsync, rename, fsync of the
folder) and carry the catalog revision they were built at, so that a crash at
any moment leaves either the old or the new file, never half of one, and a
stale file is detected and rebuilt from the catalog.
"""

from __future__ import annotations

import os
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.signals.base import Signal, VectorKind
from indexer.store.atomic import write_atomically
from indexer.store.faiss_tuned import faiss

_MAGIC = b"RUNIDX1\0"
_HEADER = struct.Struct("<8sQ")  # magic, catalog revision


# One query's hits: vector ids (int64) and their distances (float64), in the same order.
HitArrays = tuple[np.ndarray, np.ndarray]


def hits_to_arrays(hits: list[Hit]) -> HitArrays:
    """``hits`` as (ids, distances) arrays, order kept."""
    return (np.fromiter((h.vector_id for h in hits), dtype=np.int64, count=len(hits)),
            np.fromiter((h.distance for h in hits), dtype=np.float64, count=len(hits)))


@dataclass(frozen=True)
class VectorOwners:
    """Each vector's owner as ranking needs it: its item, stored quality and the item's subject.

    Why: a crowded hash lookup at ten million references read ~120 owner rows from
    the catalog, random rows of its two largest tables, and those reads were 0.6 ms
    of a 4 ms lookup (BENCHMARKS.md). An index that keeps these columns beside its
    ids answers them with its hits. They are exactly the catalog's: a vector's item
    and quality never change while it exists, nor an item's subject, and every add
    or delete of a (bank, signal)'s vectors bumps the revision an index is checked
    against before every search (indexer.store.indexes).

    Arrays in the vectors' order: ``items`` int64, ``qualities`` float64 (NaN: none
    stored), ``subjects`` int64 (-1: a reference with no subject).
    """

    items: np.ndarray
    qualities: np.ndarray
    subjects: np.ndarray

    @classmethod
    def empty(cls) -> VectorOwners:
        return cls(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.int64))

    @classmethod
    def of_rows(cls, items: list[int], qualities: list[float | None],
                subjects: list[int | None]) -> VectorOwners:
        """From catalog columns as Python values (None where a quality or subject is absent)."""
        return cls(np.asarray(items, dtype=np.int64),
                   np.array([np.nan if q is None else q for q in qualities], dtype=np.float64),
                   np.array([-1 if sid is None else sid for sid in subjects], dtype=np.int64))

    @classmethod
    def joined(cls, parts: list[VectorOwners]) -> VectorOwners:
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.items for p in parts]), np.concatenate([p.qualities for p in parts]),
                   np.concatenate([p.subjects for p in parts]))

    def __len__(self) -> int:
        return len(self.items)

    def take(self, at: np.ndarray | slice) -> VectorOwners:
        return VectorOwners(self.items[at], self.qualities[at], self.subjects[at])

    def rows(self) -> list[tuple[int, float | None, int | None]]:
        """(item id, quality, subject id) per vector, as :meth:`Catalog.vector_owner_rows` gives them."""
        return [(item, None if quality != quality else quality, None if subject < 0 else subject)
                for item, quality, subject in zip(self.items.tolist(), self.qualities.tolist(),
                                                  self.subjects.tolist(), strict=True)]


@dataclass(frozen=True)
class OwnedHits:
    """The owners of a search's hits, read when asked: per query, the index's handle of each hit
    (in the hits' order) and the function that reads the owners of some of them.

    Why not every owner at once: a crowded lookup has hundreds to thousands of hits and
    ranks the nearest hundred; each owner is three random reads of a large mapping.
    ``read`` sees the index as it was at the search (an add or merge after it changes
    nothing that ``read`` reads).
    """

    handles: list[np.ndarray]
    read: Callable[[np.ndarray], VectorOwners]

    def every(self) -> np.ndarray:
        """The handles of every query's hits, in order."""
        return self.handles[0] if len(self.handles) == 1 else np.concatenate(self.handles)


@dataclass(frozen=True)
class Hit:
    """One nearest neighbour: the catalog's vector id and its distance."""

    vector_id: int
    distance: float


class VectorIndex(ABC):
    """What the matcher needs from a vector store."""

    revision: int = 0
    # The largest radius answered without reading every vector (None: every search
    # is a scan). The hash searcher keeps large banks to it (matcher/search/query.py).
    fast_radius: int | None = None

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray, owners: VectorOwners | None = None) -> None:
        """Add vectors; ``owners``: theirs, for an index that keeps them (others ignore it)."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int: ...

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """The ``k`` nearest vectors of each query, nearest first."""

    @abstractmethod
    def radius_search(self, queries: np.ndarray, radius: float) -> list[list[Hit]]:
        """Every vector within ``radius`` of each query, nearest first."""

    def radius_arrays(self, queries: np.ndarray, radius: float) -> list[HitArrays]:
        """:meth:`radius_search` as arrays per query: (vector ids, distances), nearest first.

        Why: a hash lookup near a widely reposted photo has thousands of hits and
        reads only the nearest few from the catalog; a Python object per hit was
        most of such a lookup (BENCHMARKS.md). Indexes that find their hits as
        arrays (:mod:`indexer.store.mih`) answer this without making any.
        """
        return [hits_to_arrays(hits) for hits in self.radius_search(queries, radius)]

    def radius_owned(self, queries: np.ndarray, radius: float) -> tuple[list[HitArrays], OwnedHits | None]:
        """:meth:`radius_arrays` (each query's hits nearest first, ties by id, each vector once)
        and, for an index that keeps them, its hits' owners (else None)."""
        return self.radius_arrays(queries, radius), None

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def to_bytes(self) -> bytes: ...

    def to_parts(self) -> Iterator[bytes | memoryview]:
        """The saved form in pieces (an index of a gigabyte need not be joined first)."""
        yield self.to_bytes()


class FaissBinaryIndex(VectorIndex):
    """Exact Hamming search over packed-bit hashes."""

    def __init__(self, bits: int, index: faiss.IndexBinary | None = None) -> None:
        self.bits = bits
        self.index = index or faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(bits))

    def add(self, ids: np.ndarray, vectors: np.ndarray, owners: VectorOwners | None = None) -> None:
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

    def radius_arrays(self, queries: np.ndarray, radius: float) -> list[HitArrays]:
        if len(self) == 0:
            return [hits_to_arrays([]) for _ in range(len(queries))]
        lims, dist, ids = self.index.range_search(
            np.ascontiguousarray(queries, dtype=np.uint8), int(radius) + 1)
        out = []
        for q in range(len(lims) - 1):
            lo, hi = int(lims[q]), int(lims[q + 1])
            order = np.lexsort((ids[lo:hi], dist[lo:hi]))  # nearest first, ties by id: radius_search's
            out.append((ids[lo:hi][order].astype(np.int64), dist[lo:hi][order].astype(np.float64)))
        return out

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def export(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, packed codes) of every stored hash (to move them into another index kind)."""
        ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        flat = faiss.downcast_IndexBinary(self.index.index)
        codes = faiss.vector_to_array(flat.xb).reshape(len(ids), self.bits // 8)
        return ids, codes

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

    def add(self, ids: np.ndarray, vectors: np.ndarray, owners: VectorOwners | None = None) -> None:
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


class BadIndexChoice(ValueError):
    """REUNITE_HASH_INDEX or REUNITE_MIH_MIN_HASHES holds something else than they accept."""


@dataclass(frozen=True)
class IndexChoice:
    """Which index a binary hash bank gets: flat (FAISS) or multi-index hashing.

    ``REUNITE_HASH_INDEX``: ``auto`` (default: multi-index hashing from
    ``REUNITE_MIH_MIN_HASHES`` hashes on, where it starts to pay; BENCHMARKS.md),
    ``flat`` or ``mih`` (always). Only 256-bit hashes (PDQ) qualify: the 64-bit
    hashes' match radii are too wide a share of their bits for it.
    """

    mode: str = "auto"
    min_hashes: int = 200_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IndexChoice:
        env = os.environ if environ is None else environ
        mode = env.get("REUNITE_HASH_INDEX", "auto").strip().lower() or "auto"
        if mode not in {"auto", "flat", "mih"}:
            raise BadIndexChoice(f"REUNITE_HASH_INDEX must be auto, flat or mih, not {mode!r}")
        raw = env.get("REUNITE_MIH_MIN_HASHES", "").strip()
        try:
            minimum = int(raw) if raw else cls.min_hashes
        except ValueError:
            raise BadIndexChoice(f"REUNITE_MIH_MIN_HASHES must be a whole number, not {raw!r}") from None
        return cls(mode, max(0, minimum))

    def wants_mih(self, signal: Signal, count: int) -> bool:
        if signal.kind is not VectorKind.BINARY or signal.dim != 256 or self.mode == "flat":
            return False
        return self.mode == "mih" or count >= self.min_hashes


def new_index(signal: Signal, count: int = 0, choice: IndexChoice | None = None) -> VectorIndex:
    """An empty index for ``signal`` that will hold about ``count`` vectors."""
    if signal.kind is VectorKind.BINARY:
        if (choice or IndexChoice()).wants_mih(signal, count):
            from indexer.store.mih import MultiIndexHashIndex
            return MultiIndexHashIndex(signal.dim)
        return FaissBinaryIndex(signal.dim)
    return FaissFloatIndex(signal.dim)


def save_atomically(index: VectorIndex, path: Path) -> None:
    """Write ``index`` with its revision so that readers see the old or the new file."""
    write_atomically(path, _saved_parts(index))


def _saved_parts(index: VectorIndex) -> Iterator[bytes | memoryview]:
    yield _HEADER.pack(_MAGIC, index.revision)
    yield from index.to_parts()


def load_saved(signal: Signal, path: Path) -> VectorIndex | None:
    """The index saved at ``path``, or None when it is missing or unreadable.

    A multi-index hash file is memory-mapped, not read: processes that load the
    same file share its pages.
    """
    from indexer.store import mih

    try:
        with path.open("rb") as f:
            head = f.read(_HEADER.size + len(mih.MAGIC))
    except FileNotFoundError:
        return None
    if len(head) < _HEADER.size:
        return None
    magic, revision = _HEADER.unpack_from(head)
    if magic != _MAGIC:
        return None
    if head[_HEADER.size:] != mih.MAGIC and head[_HEADER.size:].startswith(mih.MAGIC[:6]):
        return None  # a multi-index file of an older layout: rebuilt, never read whole into FAISS
    if head[_HEADER.size:] == mih.MAGIC:
        try:
            index: VectorIndex = mih.load_mapped(path, _HEADER.size)
            if signal.kind is not VectorKind.BINARY or index.bits != signal.dim:  # type: ignore[attr-defined]
                return None
        except (ValueError, OSError):
            return None
        index.revision = int(revision)
        return index
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    body = data[_HEADER.size:]
    try:
        if signal.kind is VectorKind.BINARY:
            index = FaissBinaryIndex.from_bytes(signal.dim, body)
        else:
            index = FaissFloatIndex.from_bytes(signal.dim, body)
    except Exception:  # a damaged file is a cache miss: the catalog rebuilds it
        return None
    index.revision = int(revision)
    return index
