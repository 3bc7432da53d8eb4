"""The local-feature descriptor index of a bank: every stored keypoint, searchable at once.

Why a separate index: a hash index holds one vector per image, this one holds
hundreds of RootSIFT descriptors per image, so that a query can find the
references it shares descriptors with even when nothing global is left in
common (a crop, a screenshot). Like the hash indexes it is only a cache of the
catalog's ``sift`` vectors: it records the catalog revision, the highest
vector id and the vector count it was built from, catches up by adding the
vectors written since (the common case: a crawl keeps indexing), and is
rebuilt from the catalog when vectors were deleted or the file is missing or
damaged.

Banks of a few dozen photos are searched exactly (``IndexFlatL2``). From
:data:`IVF_MIN_DESCRIPTORS` descriptors on (about 40 photos), an inverted file
(``IndexIVFFlat``) is trained with FAISS k-means on a sample of the bank's own
descriptors; it is retrained when the bank has grown :data:`RETRAIN_GROWTH`
times past the size it was trained for. The flat search is a matrix product
with every stored descriptor, so its cost grows with the bank: at 100 photos
a photo's 512 rows cost ~85 ms of CPU against ~9-14 ms in the inverted file,
and linking a crawl searches every new photo twice (plain and mirrored). The
threshold was 100,000 descriptors (~200 photos); at 20,000 the links of a
150-photo crawl of copies were the same and its ``index`` CPU fell by a third
(BENCHMARKS.md, ingest). From :data:`PQ_MIN_DESCRIPTORS` on (about 8,000 photos)
the inverted file stores product-quantised codes (``IndexIVFPQ``,
:data:`PQ_BYTES` bytes instead of 512 per descriptor): the index only picks
which references to verify, and verification re-reads the exact descriptors
from the catalog, so approximate distances cost little recall while a bank of
100,000 photos fits in 2 GB instead of 22 GB (BENCHMARKS.md).
"""

from __future__ import annotations

import io
import json
import struct
import threading
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import func, select

from indexer.signals import local
from indexer.store.atomic import write_atomically
from indexer.store.catalog import Catalog, Vector
from indexer.store.faiss_tuned import faiss

if TYPE_CHECKING:
    from indexer.store.catalog import Bank
    from indexer.store.store import Store

_MAGIC = b"RUNLOC1\0"
_LEN = struct.Struct("<Q")
IVF_MIN_DESCRIPTORS = 20_000
PQ_MIN_DESCRIPTORS = 4_000_000
PQ_BYTES = 32  # sub-quantizers of 4 dimensions, 8 bits each
RETRAIN_GROWTH = 4.0
TRAIN_PER_LIST = 40
MIN_TRAIN_PER_LIST = 39  # FAISS k-means' min_points_per_centroid
NPROBE = 8
_SEED = 1234


@dataclass
class DescriptorHits:
    """Nearest stored descriptors of each query descriptor: squared L2 distances and owner vector ids."""

    distances: np.ndarray  # float32 (n, k)
    vector_ids: np.ndarray  # int64 (n, k), -1 where fewer than k exist


class LocalFeatureIndex:
    """FAISS index over RootSIFT rows; row number -> owning catalog vector id."""

    def __init__(self, index: faiss.Index, owners: np.ndarray, *, revision: int = 0,
                 max_vector_id: int = 0, n_vectors: int = 0, trained_for: int = 0) -> None:
        self.index = index
        self.owners = owners
        self.revision = revision
        self.max_vector_id = max_vector_id
        self.n_vectors = n_vectors
        self.trained_for = trained_for

    @classmethod
    def empty(cls, expected_descriptors: int, sample: np.ndarray | None = None) -> LocalFeatureIndex:
        """An index sized for ``expected_descriptors``; IVF ones are trained on ``sample``."""
        dim = local.DESCRIPTOR_DIM
        if expected_descriptors < IVF_MIN_DESCRIPTORS or sample is None:
            return cls(faiss.IndexFlatL2(dim), np.zeros(0, np.int64))
        nlist = nlist_for(expected_descriptors, len(sample))
        quantizer = faiss.IndexFlatL2(dim)
        if expected_descriptors >= PQ_MIN_DESCRIPTORS:
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, PQ_BYTES, 8)
        else:
            index = faiss.IndexIVFFlat(quantizer, dim, nlist)
        index.cp.niter = 10
        index.cp.seed = _SEED
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        index.nprobe = NPROBE
        return cls(index, np.zeros(0, np.int64), trained_for=expected_descriptors)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_ivf(self) -> bool:
        return isinstance(self.index, faiss.IndexIVF)

    @property
    def is_pq(self) -> bool:
        """True for product-quantised codes (large banks), False for exact vectors."""
        return isinstance(self.index, faiss.IndexIVFPQ)

    def add(self, vector_ids: np.ndarray, blobs: list[bytes]) -> None:
        """Add the descriptors of packed ``sift`` vectors (one per catalog vector id)."""
        rows, owners = [], []
        for vid, blob in zip(vector_ids, blobs, strict=True):
            features = local.unpack(blob)
            if len(features):
                rows.append(features.rootsift())
                owners.append(np.full(len(features), int(vid), dtype=np.int64))
            self.max_vector_id = max(self.max_vector_id, int(vid))
            self.n_vectors += 1
        if rows:
            self.index.add(np.ascontiguousarray(np.concatenate(rows)))
            self.owners = np.concatenate([self.owners, *owners])

    def search(self, descriptors: np.ndarray, k: int) -> DescriptorHits:
        if len(self) == 0 or len(descriptors) == 0:
            n = len(descriptors)
            return DescriptorHits(np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64))
        dist, rows = self.index.search(np.ascontiguousarray(descriptors, dtype=np.float32),
                                       min(k, len(self)))
        owners = np.where(rows >= 0, self.owners[np.maximum(rows, 0)], -1)
        return DescriptorHits(dist, owners)

    def to_bytes(self) -> bytes:
        meta = json.dumps({"revision": self.revision, "max_vector_id": self.max_vector_id,
                           "n_vectors": self.n_vectors, "trained_for": self.trained_for}).encode()
        body = faiss.serialize_index(self.index).tobytes()
        owners = self.owners.astype("<i8").tobytes()
        out = io.BytesIO()
        out.write(_MAGIC)
        for part in (meta, body, owners):
            out.write(_LEN.pack(len(part)))
            out.write(part)
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LocalFeatureIndex:
        if data[:len(_MAGIC)] != _MAGIC:
            raise ValueError("not a local-feature index file")
        parts, pos = [], len(_MAGIC)
        for _ in range(3):
            (n,) = _LEN.unpack_from(data, pos)
            pos += _LEN.size
            if pos + n > len(data):
                raise ValueError("truncated local-feature index file")
            parts.append(data[pos:pos + n])
            pos += n
        meta = json.loads(parts[0])
        index = faiss.deserialize_index(np.frombuffer(parts[1], dtype=np.uint8))
        owners = np.frombuffer(parts[2], dtype="<i8").astype(np.int64)
        if int(index.ntotal) != len(owners):
            raise ValueError("index and owner table disagree")
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = NPROBE
        return cls(index, owners, revision=int(meta["revision"]),
                   max_vector_id=int(meta["max_vector_id"]), n_vectors=int(meta["n_vectors"]),
                   trained_for=int(meta["trained_for"]))


def nlist_for(n_descriptors: int, training_rows: int | None = None) -> int:
    """Inverted lists: about 4 sqrt(N), a power of two, 256..65536 (FAISS's guideline).

    With ``training_rows`` (the sample's size), no more lists than that sample trains
    with :data:`MIN_TRAIN_PER_LIST` rows each: FAISS's k-means wants 39 points per
    centroid and says so on stderr otherwise, which a small bank whose photos have
    fewer than :data:`local.MAX_KEYPOINTS` keypoints would hit.
    """
    target = 4.0 * np.sqrt(max(n_descriptors, 1))
    lists = int(min(65536, max(256, 2 ** int(np.round(np.log2(target))))))
    if training_rows is not None:
        while lists > 256 and lists * MIN_TRAIN_PER_LIST > training_rows:
            lists //= 2
    return lists


class LocalIndexSet:
    """The local-feature index of every bank of one data folder, kept current."""

    def __init__(self, data_dir: Path, catalog: Catalog, signal: str = local.SIFT.name) -> None:
        self.root = Path(data_dir) / "indexes"
        self.catalog = catalog
        self.signal = signal
        self._indexes: dict[int, LocalFeatureIndex] = {}
        self._lock = threading.RLock()

    def path(self, bank_id: int) -> Path:
        return self.root / f"bank-{bank_id}" / f"{self.signal}-descriptors.faiss"

    def get(self, bank_id: int) -> LocalFeatureIndex:
        """The bank's index at the catalog's current revision (loaded, caught up or rebuilt)."""
        with self._lock:
            wanted = self.catalog.revision(bank_id, self.signal)
            index = self._indexes.get(bank_id)
            if index is None or index.revision != wanted:
                index = index or self._load(bank_id)
                if index is None or index.revision != wanted:
                    index = self._catch_up(bank_id, index, wanted)
                self._indexes[bank_id] = index
            return index

    def _load(self, bank_id: int) -> LocalFeatureIndex | None:
        try:
            return LocalFeatureIndex.from_bytes(self.path(bank_id).read_bytes())
        except FileNotFoundError:
            return None
        except Exception:  # a damaged file is a cache miss: the catalog rebuilds it
            return None

    def _count(self, bank_id: int, up_to: int | None = None) -> int:
        with self.catalog.session() as s:
            q = select(func.count(Vector.id)).where(Vector.bank_id == bank_id,
                                                    Vector.signal == self.signal)
            if up_to is not None:
                q = q.where(Vector.id <= up_to)
            return int(s.scalar(q) or 0)

    def _catch_up(self, bank_id: int, index: LocalFeatureIndex | None, revision: int
                  ) -> LocalFeatureIndex:
        """Add what was written since ``index`` was built, or rebuild when that is not enough."""
        total = self._count(bank_id)
        usable = (index is not None
                  and self._count(bank_id, index.max_vector_id) == index.n_vectors
                  and not (index.is_ivf and total * local.MAX_KEYPOINTS
                           > RETRAIN_GROWTH * index.trained_for)
                  and not (not index.is_ivf and total * local.MAX_KEYPOINTS >= IVF_MIN_DESCRIPTORS)
                  and not (not index.is_pq and total * local.MAX_KEYPOINTS >= PQ_MIN_DESCRIPTORS))
        if not usable:
            index = LocalFeatureIndex.empty(total * local.MAX_KEYPOINTS,
                                            self._sample(bank_id, total))
        assert index is not None
        for ids, blobs in self._iter_vectors(bank_id, index.max_vector_id):
            index.add(ids, blobs)
        index.revision = revision
        write_atomically(self.path(bank_id), index.to_bytes())
        return index

    def _iter_vectors(self, bank_id: int, after: int, batch: int = 500
                      ) -> Iterator[tuple[np.ndarray, list[bytes]]]:
        """Packed vectors with ids above ``after``, in id order and in batches (bounded memory)."""
        last = after
        while True:
            with self.catalog.session() as s:
                rows = s.execute(select(Vector.id, Vector.data)
                                 .where(Vector.bank_id == bank_id, Vector.signal == self.signal,
                                        Vector.id > last)
                                 .order_by(Vector.id).limit(batch)).all()
            if not rows:
                return
            yield np.array([r[0] for r in rows], dtype=np.int64), [bytes(r[1]) for r in rows]
            last = int(rows[-1][0])

    def _sample(self, bank_id: int, total_vectors: int) -> np.ndarray | None:
        """RootSIFT rows from an even spread of the bank's images, to train the coarse quantizer."""
        if total_vectors * local.MAX_KEYPOINTS < IVF_MIN_DESCRIPTORS:
            return None
        wanted = TRAIN_PER_LIST * nlist_for(total_vectors * local.MAX_KEYPOINTS)
        per_image = max(8, int(np.ceil(wanted / max(total_vectors, 1))))
        rng = np.random.default_rng(_SEED)
        rows: list[np.ndarray] = []
        for _ids, blobs in self._iter_vectors(bank_id, 0):
            for blob in blobs:
                d = local.unpack(blob).rootsift()
                if len(d) > per_image:
                    d = d[rng.choice(len(d), per_image, replace=False)]
                rows.append(d)
        sample = np.concatenate(rows) if rows else np.zeros((0, local.DESCRIPTOR_DIM), np.float32)
        if len(sample) > wanted:
            sample = sample[rng.choice(len(sample), wanted, replace=False)]
        # Fewer rows than lists cannot train at all (the bank stays flat); between that and
        # 39 a list (a lowered threshold in tests) FAISS trains and warns.
        return sample if len(sample) >= nlist_for(total_vectors * local.MAX_KEYPOINTS, len(sample)) else None

    def forget_bank(self, bank_id: int) -> None:
        with self._lock:
            self._indexes.pop(bank_id, None)
            self.path(bank_id).unlink(missing_ok=True)


_PER_STORE: weakref.WeakKeyDictionary[Store, LocalIndexSet] = weakref.WeakKeyDictionary()


def for_store(store: Store) -> LocalIndexSet:
    """One descriptor-index set per open store, shared by the indexer and every Matcher on it."""
    if store not in _PER_STORE:
        _PER_STORE[store] = LocalIndexSet(store.data_dir, store.catalog)
    return _PER_STORE[store]


def update_after_ingest(store: Store, bank: Bank, signal_names: Iterable[str]) -> None:
    """Bring ``bank``'s descriptor index up to date (trained, filled, written) right after indexing.

    Why here: training the inverted file's k-means takes tens of seconds on a
    bank of a thousand photos; done lazily it lands on whichever query comes
    first. After an ingest run the catalog is complete, so the index is built
    (or caught up with the new vectors, or retrained when the bank has grown
    past :data:`RETRAIN_GROWTH`) once, by the process that just wrote it.
    """
    if local.SIFT.name in set(signal_names):
        for_store(store).get(bank.id)
