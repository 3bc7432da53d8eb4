"""Keeps each (bank, signal) vector index loaded, current and saved.

The catalog is the source of truth. An index is trusted only when the revision
it was saved at equals the catalog's revision for its (bank, signal); anything
else (missing file, damaged file, a crash between a catalog commit and the
next save, another process that indexed meanwhile) triggers a rebuild from the
catalog's stored vectors. Rebuilding 100,000 hashes takes about a second.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from indexer.kinds import NARROW_HASH_KINDS
from indexer.signals import base as signals
from indexer.store.catalog import Catalog
from indexer.store.mih import MultiIndexHashIndex
from indexer.store.vectors import (
    FaissBinaryIndex,
    IndexChoice,
    VectorIndex,
    VectorOwners,
    load_saved,
    new_index,
    save_atomically,
)

# Index files saved at once by :meth:`IndexSet.save`.
SAVE_THREADS = 4


class IndexSet:
    """All vector indexes of one data folder."""

    def __init__(self, data_dir: Path, catalog: Catalog, choice: IndexChoice | None = None) -> None:
        self.root = Path(data_dir) / "indexes"
        self.catalog = catalog
        self.choice = choice or IndexChoice.from_env()
        self._indexes: dict[tuple[int, str], VectorIndex] = {}
        self._dirty: set[tuple[int, str]] = set()
        self._lock = threading.RLock()
        self._bank_kinds: dict[int, str | None] = {}

    @contextlib.contextmanager
    def writing(self, bank_id: int) -> Iterator[None]:
        """Held around a catalog write of the bank and its :meth:`apply`; nothing to hold here.

        In-process indexes need no lock across processes: another process's write
        is seen as a newer catalog revision and rebuilt. A shared server does
        (indexer.store.milvus_vectors).
        """
        yield

    def path(self, bank_id: int, signal: str) -> Path:
        return self.root / f"bank-{bank_id}" / f"{signal}.faiss"

    def get(self, bank_id: int, signal_name: str) -> VectorIndex:
        """The current index of (bank, signal), loaded or rebuilt as needed."""
        key = (bank_id, signal_name)
        if not signals.get(signal_name).vector_index:
            raise ValueError(f"signal {signal_name!r} is searched by its own index, not a vector index")
        with self._lock:
            wanted = self.catalog.revision(bank_id, signal_name)
            index = self._indexes.get(key)
            if (index is not None and index.revision == wanted
                    and not self._wrong_kind(bank_id, signal_name, index)):
                return index
            index = load_saved(signals.get(signal_name), self.path(bank_id, signal_name))
            if index is None or index.revision != wanted or self._wrong_kind(bank_id, signal_name, index):
                index = self._rebuild(bank_id, signal_name, wanted)
            self._indexes[key] = index
            return index

    def loaded(self, bank_id: int, signal_name: str) -> None:
        """Make sure (bank, signal)'s index is in memory, without asking the catalog's revision
        when it already is (a crawl's every batch asked it for each signal: 1.8 ms a signal).

        A loaded index that another process has made stale meanwhile is found so by
        :meth:`apply`, which compares its revision with the one the change started from,
        drops it and leaves the next :meth:`get` to rebuild it.
        """
        with self._lock:
            if (bank_id, signal_name) in self._indexes:
                return
        self.get(bank_id, signal_name)

    def _choice_for(self, bank_id: int) -> IndexChoice:
        """The configured choice, except that ``auto`` keeps wide-radius banks on the flat scan.

        Multi-index hashing pays only where the bank matches within its exact
        radius (:data:`indexer.kinds.NARROW_HASH_KINDS`); an ads bank of a million
        photos matches PDQ at 70 bits, which that index answers by reading everything.
        """
        if self.choice.mode != "auto":
            return self.choice
        if bank_id not in self._bank_kinds:
            from indexer.store.catalog import Bank
            with self.catalog.session() as s:
                bank = s.get(Bank, bank_id)
                self._bank_kinds[bank_id] = bank.kind if bank is not None else None
        if self._bank_kinds[bank_id] in NARROW_HASH_KINDS:
            return self.choice
        return IndexChoice("flat", self.choice.min_hashes)

    def _wrong_kind(self, bank_id: int, signal_name: str, index: VectorIndex) -> bool:
        """Whether an index is of the other kind than the configuration now chooses.

        A multi-index bank goes back to flat only below half the threshold, so that
        a bank hovering at the threshold is not re-sorted on every change.
        """
        signal = signals.get(signal_name)
        choice = self._choice_for(bank_id)
        if isinstance(index, MultiIndexHashIndex):
            if choice.mode == "auto":
                return not choice.wants_mih(signal, 2 * len(index))
            return not choice.wants_mih(signal, len(index))
        return isinstance(index, FaissBinaryIndex) and choice.wants_mih(signal, len(index))

    def _rebuild(self, bank_id: int, signal_name: str, revision: int) -> VectorIndex:
        signal = signals.get(signal_name)
        count = self.catalog.count_vectors(bank_id, signal_name)
        index = new_index(signal, count, self._choice_for(bank_id))
        if isinstance(index, MultiIndexHashIndex):  # one sort at the end, not one per batch
            index = self._rebuilt_multi_index(bank_id, signal_name, count) or index
        else:
            for batch in self.catalog.iter_vectors(bank_id, signal_name):
                ids = np.fromiter((vid for vid, _ in batch), dtype=np.int64, count=len(batch))
                data = np.frombuffer(b"".join(blob for _, blob in batch), dtype=signal.dtype)
                index.add(ids, data.reshape(len(batch), -1))
        # Vectors written after we read the revision bump it again, so a rebuild
        # that raced a writer is simply stale and rebuilt on the next get().
        index.revision = revision
        save_atomically(index, self.path(bank_id, signal_name))
        return index

    def _rebuilt_multi_index(self, bank_id: int, signal_name: str, count: int) -> MultiIndexHashIndex | None:
        """The (bank, signal)'s hashes and owners read into arrays sized for ``count`` and laid out
        in one sort (None: no hashes). Filled in place, not joined from parts: at ten million
        hashes parts and their join held 640 MB more at the peak."""
        signal = signals.get(signal_name)
        columns = _Columns(count, signal.dim // 8)
        for batch in self.catalog.iter_owned_vectors(bank_id, signal_name):
            columns.append(batch, signal.dtype)
        if not columns.n:
            return None
        ids, codes, owners = columns.arrays()
        return MultiIndexHashIndex.from_vectors(signal.dim, ids, codes, owners=owners)

    def apply(self, revisions_before: dict[tuple[int, str], int],
              revisions_after: dict[tuple[int, str], int],
              added: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]],
              removed: dict[tuple[int, str], np.ndarray] | None = None,
              owners: dict[tuple[int, str], VectorOwners] | None = None) -> None:
        """Mirror a committed catalog change into the loaded indexes.

        When an index was exactly at the revision the change started from, the
        change is applied in memory; otherwise the index is dropped and the next
        ``get`` reloads or rebuilds it. ``owners``: the added vectors' owners, for
        an index that keeps them (one without them for an add stops keeping any).
        """
        removed = removed or {}
        owners = owners or {}
        with self._lock:
            for key, after in revisions_after.items():
                index = self._indexes.get(key)
                if index is None:
                    continue
                if index.revision != revisions_before.get(key, -1):
                    del self._indexes[key]
                    continue
                if key in removed and len(removed[key]):
                    index.remove(removed[key])
                if key in added:
                    ids, vectors = added[key]
                    index.add(ids, vectors, owners.get(key))
                index = self._grown_up(key[0], key[1], index)
                self._indexes[key] = index
                index.revision = after
                self._dirty.add(key)

    def _grown_up(self, bank_id: int, signal_name: str, index: VectorIndex) -> VectorIndex:
        """A flat hash index that crossed the multi-index threshold, moved into one (same hashes)."""
        signal = signals.get(signal_name)
        if isinstance(index, FaissBinaryIndex) and self._choice_for(bank_id).wants_mih(signal, len(index)):
            # From the catalog, not index.export(): the flat index keeps no owners.
            return self._rebuild(bank_id, signal_name, index.revision)
        return index

    def save(self) -> None:
        """Persist every index changed since the last save.

        The files are written side by side (one thread each, a few at most): each save
        is two fsyncs that wait on the disk, and a crawl's run saves one index per
        hash signal (five for the ads defaults) at its end.
        """
        with self._lock:
            todo = [(index, self.path(*key)) for key in sorted(self._dirty)
                    if (index := self._indexes.get(key)) is not None]
            if len(todo) > 1:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(min(len(todo), SAVE_THREADS)) as pool:
                    list(pool.map(lambda job: save_atomically(*job), todo))  # re-raises a failure
            else:
                for index, path in todo:
                    save_atomically(index, path)
            self._dirty.clear()

    def forget_bank(self, bank_id: int) -> None:
        with self._lock:
            for key in [k for k in self._indexes if k[0] == bank_id]:
                del self._indexes[key]
            folder = self.root / f"bank-{bank_id}"
            if folder.exists():
                for f in folder.iterdir():
                    f.unlink()
                folder.rmdir()


class _Columns:
    """Growable arrays of a rebuild's (id, code, item, quality, subject) rows."""

    def __init__(self, capacity: int, width: int) -> None:
        capacity = max(capacity, 1)
        self.n = 0
        self.ids = np.empty(capacity, np.int64)
        self.codes = np.empty((capacity, width), np.uint8)
        self.items = np.empty(capacity, np.int64)
        self.qualities = np.empty(capacity, np.float64)
        self.subjects = np.empty(capacity, np.int64)

    def append(self, batch: list[tuple[int, bytes, int, float | None, int | None]], dtype: np.dtype) -> None:
        k = len(batch)
        if self.n + k > len(self.ids):  # vectors added since the count: grow
            grow = max(self.n + k, 2 * len(self.ids))
            for name in ("ids", "codes", "items", "qualities", "subjects"):
                old = getattr(self, name)
                new = np.empty((grow, *old.shape[1:]), old.dtype)
                new[:self.n] = old[:self.n]
                setattr(self, name, new)
        at = slice(self.n, self.n + k)
        self.ids[at] = [row[0] for row in batch]
        self.codes[at] = np.frombuffer(b"".join(row[1] for row in batch), dtype=dtype).reshape(k, -1)
        owners = VectorOwners.of_rows([row[2] for row in batch], [row[3] for row in batch],
                                      [row[4] for row in batch])
        self.items[at], self.qualities[at] = owners.items, owners.qualities
        self.subjects[at] = owners.subjects
        self.n += k

    def arrays(self) -> tuple[np.ndarray, np.ndarray, VectorOwners]:
        n = self.n
        owners = VectorOwners(self.items[:n], self.qualities[:n], self.subjects[:n])
        return self.ids[:n], self.codes[:n], owners
