"""The per-bank room index: a vocabulary trained on the bank and the VLAD of every reference.

Kept beside the other indexes (``indexes/bank-N/scene-vlad.*``) and, like
them, a cache of the catalog: it records the catalog revision of the bank's
``scene`` vectors it reflects, and when the catalog moved on it catches up
incrementally (new vectors encoded with the current vocabulary, deleted ones
removed), so enrolling a venue costs one encoding, not a rebuild.

The vocabulary is trained the first time the bank is searched, on whatever
the bank holds then, and retrained automatically when the bank has grown to
:data:`RETRAIN_GROWTH` times the number of references it was trained on (or
on demand, :meth:`SceneBankIndex.retrain`, ``reunite venues retrain --bank NAME``); a retrain re-encodes every
reference from the stored local features. Small vocabularies are stable, so
between retrains the index stays good, and each retrain at least doubles the
bank, which keeps the total retraining cost linear in the bank's size.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from indexer import progress_hooks
from indexer.scene import storage, vlad
from indexer.scene.features import LocalFeatures
from indexer.signals.base import VectorKind
from indexer.store.atomic import write_atomically
from indexer.store.catalog import Catalog
from indexer.store.vectors import FaissFloatIndex, Hit, load_saved, save_atomically

RETRAIN_GROWTH = 2.0
# Descriptors sampled per reference for vocabulary training; a small bank gives
# more of each photo's, up to vlad.MAX_TRAINING_POINTS in all (see indexer.scene.vlad).
TRAIN_SAMPLE_PER_IMAGE = 300


# How vocabularies are trained (indexer.scene.vlad). A saved index trained under
# another rule is retrained on load: the venue decision is calibrated on the
# similarities this rule gives (rule 2: 64 words in small banks too).
VOCABULARY_RULE = 2


@dataclass
class _Meta:
    revision: int = -1
    trained_on: int = 0  # references in the bank when the vocabulary was trained
    words: int = 0
    rule: int = VOCABULARY_RULE


class SceneBankIndex:
    """VLAD index of one bank's ``scene`` vectors (ids are catalog vector ids)."""

    def __init__(self, catalog: Catalog, folder: Path, bank_id: int, signal: str) -> None:
        self.catalog = catalog
        self.folder = Path(folder)
        self.bank_id = bank_id
        self.signal = signal
        self.vocabulary: np.ndarray | None = None
        self.index: FaissFloatIndex | None = None
        self.meta = _Meta()
        self._lock = threading.RLock()
        self._load()

    # files ---------------------------------------------------------------
    @property
    def _paths(self) -> tuple[Path, Path, Path]:
        base = self.folder / f"{self.signal}-vlad"
        return base.with_suffix(".vocab.npy"), base.with_suffix(".faiss"), base.with_suffix(".json")

    def _load(self) -> None:
        vocab_path, index_path, meta_path = self._paths
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            vocabulary = np.load(vocab_path)
        except (OSError, ValueError):
            return
        shape = SimpleNamespace(kind=VectorKind.FLOAT, dim=int(vocabulary.size))
        if int(meta.get("rule", 1)) != VOCABULARY_RULE:
            return  # trained under an older rule: the next search retrains
        index = load_saved(shape, index_path)  # type: ignore[arg-type]
        if index is None or index.revision != int(meta.get("revision", -2)):
            return
        self.vocabulary = vocabulary.astype(np.float32)
        self.index = index  # type: ignore[assignment]
        self.meta = _Meta(int(meta["revision"]), int(meta["trained_on"]), int(meta["words"]))

    def _save(self) -> None:
        assert self.vocabulary is not None and self.index is not None
        vocab_path, index_path, meta_path = self._paths
        self.folder.mkdir(parents=True, exist_ok=True)
        # The meta goes first and comes back last: a crash in between leaves no
        # meta, hence a rebuild, never a vocabulary that does not fit the index.
        meta_path.unlink(missing_ok=True)
        write_atomically(vocab_path, _npy_bytes(self.vocabulary))
        self.index.revision = self.meta.revision
        save_atomically(self.index, index_path)
        write_atomically(meta_path, json.dumps(self.meta.__dict__).encode())

    # keeping current -----------------------------------------------------
    def current(self) -> SceneBankIndex:
        """Bring the index up to the catalog's revision (train, catch up or retrain)."""
        with self._lock:
            wanted = self.catalog.revision(self.bank_id, self.signal)
            if self.index is not None and self.meta.revision == wanted:
                return self
            ids = storage.bank_vector_ids(self.catalog, self.bank_id, self.signal)
            if self.vocabulary is None or len(ids) >= RETRAIN_GROWTH * max(1, self.meta.trained_on) \
                    or self.meta.words < vlad.DEFAULT_WORDS and len(ids) > self.meta.trained_on:
                self._retrain(ids, wanted)
            else:
                self._catch_up(ids, wanted)
            self._save()
            return self

    def retrain(self) -> SceneBankIndex:
        """Train a new vocabulary on the bank as it is now and re-encode every reference."""
        with self._lock:
            wanted = self.catalog.revision(self.bank_id, self.signal)
            self._retrain(storage.bank_vector_ids(self.catalog, self.bank_id, self.signal), wanted)
            self._save()
            return self

    def _retrain(self, ids: list[int], revision: int) -> None:
        """Sample the bank's descriptors, train the vocabulary, encode every reference.

        A search waits for all of it (a minute on a bank of a few dozen venues), so
        each phase reports its progress (:mod:`indexer.progress_hooks`): the
        references read, the k-means, the references encoded.
        """
        rng = np.random.default_rng(7)
        per_image = max(TRAIN_SAMPLE_PER_IMAGE, vlad.MAX_TRAINING_POINTS // max(1, len(ids)))
        sample: list[np.ndarray] = []
        reading = progress_hooks.track("vocabulary sample", "ref", len(ids))
        try:
            for batch in storage.iter_bank_features(self.catalog, self.bank_id, self.signal):
                for _vid, feats in batch:
                    desc = feats.rootsift
                    if len(desc) > per_image:
                        desc = desc[np.sort(rng.choice(len(desc), per_image, replace=False))]
                    sample.append(desc)
                    reading.update(len(sample))
        except BaseException:
            reading.close(completed=False)
            raise
        reading.close()
        pooled = np.concatenate(sample) if sample else np.zeros((0, 128), np.float32)
        if len(pooled) == 0:
            # An empty bank (or one of featureless pictures): a one-word
            # vocabulary keeps every code path alike until references arrive.
            self.vocabulary = np.full((1, 128), 1.0 / np.sqrt(128), np.float32)
        else:
            training = progress_hooks.track("vocabulary k-means", "step", 1)
            training.note(f"{min(vlad.words_for(len(pooled)), len(pooled))} words from "
                          f"{min(len(pooled), vlad.MAX_TRAINING_POINTS)} descriptors of {len(sample)} refs")
            self.vocabulary = vlad.train_vocabulary(pooled)
            training.update(1)
            training.close()
        self.index = FaissFloatIndex(self.vocabulary.size)
        encoding = progress_hooks.track("vocabulary encode", "ref", len(ids))
        try:
            self._add(ids, encoding)
        except BaseException:
            encoding.close(completed=False)
            raise
        encoding.close()
        self.meta = _Meta(revision, len(ids), int(self.vocabulary.shape[0]))

    def _catch_up(self, ids: list[int], revision: int) -> None:
        assert self.index is not None
        have = set(_ids_of(self.index))
        wanted = set(ids)
        gone = np.array(sorted(have - wanted), dtype=np.int64)
        if len(gone):
            self.index.remove(gone)
        self._add(sorted(wanted - have))
        self.meta.revision = revision

    def _add(self, ids: list[int], tracker: progress_hooks.Tracker | None = None) -> None:
        assert self.index is not None and self.vocabulary is not None
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            found = storage.load_features(self.catalog, chunk)
            keep = [vid for vid in chunk if vid in found]
            if keep:
                codes = np.stack([self.encode(found[vid]) for vid in keep])
                self.index.add(np.asarray(keep, dtype=np.int64), codes)
            if tracker is not None:
                tracker.update(start + len(chunk))

    # searching -----------------------------------------------------------
    def encode(self, feats: LocalFeatures) -> np.ndarray:
        assert self.vocabulary is not None
        return vlad.encode(feats.rootsift, self.vocabulary)

    def search(self, feats: LocalFeatures, k: int) -> list[Hit]:
        """The ``k`` references most similar to ``feats`` (distance = 1 - cosine)."""
        with self._lock:
            if self.index is None or len(self.index) == 0:
                return []
            return self.index.search(self.encode(feats)[None, :], k)[0]

    def __len__(self) -> int:
        return 0 if self.index is None else len(self.index)


def _ids_of(index: FaissFloatIndex) -> list[int]:
    import faiss
    return [int(i) for i in faiss.vector_to_array(index.index.id_map)]


def _npy_bytes(array: np.ndarray) -> bytes:
    import io
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


