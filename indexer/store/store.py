"""One data folder: the catalog plus its vector indexes, kept in step.

Writes go to the catalog first (one transaction per batch) and then into the
in-memory indexes; indexes are saved at checkpoints. A crash between the two
loses nothing: the catalog is ahead, the saved index is stale, and the next
open rebuilds it.

Several writers on one bank (two ``reunite index`` runs over one crawl, a run
beside the service's batch upload) are safe: a batch checks which sha256 are
already stored and inserts the rest, and when another writer committed the
same image, subject or revision row between that check and the insert, the
catalog's unique constraints refuse the batch (IntegrityError; on PostgreSQL
also a deadlock between two such batches), it is rolled back as a whole and
tried again, and the second try finds the other writer's
rows and stores only what is still missing. This works alike on SQLite and
PostgreSQL, with no lock held while images are decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from indexer.pipeline import Extraction
from indexer.signals import base as signals
from indexer.store.annotations import add_annotations
from indexer.store.catalog import Bank, Catalog, Item, Subject, Vector, lost_a_race
from indexer.store.milvus_vectors import milvus_uri, open_index_set
from indexer.store.vectors import VectorOwners

# Where an image came from is shown in reports; a longer path or URL is cut to the column (PostgreSQL
# refuses what does not fit, SQLite would keep it), as nothing looks an item up by it.
SOURCE_MAX = Item.__table__.c.source.type.length
# Tries of one batch when other writers keep storing the same rows first; each
# lost try means they committed, so the next one has less to insert.
BATCH_ATTEMPTS = 8


@dataclass(frozen=True)
class NewImage:
    """An extracted image ready to be stored, with where it came from."""

    extraction: Extraction
    label: str
    source: str = ""
    attributes: dict[str, Any] | None = None
    subject_fields: dict[str, Any] | None = None


class Store:
    """Catalog + indexes of one data folder.

    ``vectors_url``: None or ``faiss`` for the embedded FAISS indexes (files in
    the data folder, the default), ``milvus://HOST:PORT`` for collections in a
    Milvus server shared by every process (indexer.store.milvus_vectors).
    """

    def __init__(self, data_dir: Path | str, catalog_url: str | None = None,
                 vectors_url: str | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.catalog = Catalog.open(self.data_dir, catalog_url)
        # Whether every read of a lookup stays in this process (a SQLite file, index files): then a
        # lookup waits on no network, only on the CPU and SQLite's short write lock.
        self.in_process = self.catalog.url.startswith("sqlite") and milvus_uri(vectors_url) is None
        try:
            self.indexes = open_index_set(self.data_dir, self.catalog, vectors_url)
        except BaseException:
            self.catalog.engine.dispose()
            raise

    def add_images(self, bank: Bank, batch: list[NewImage]) -> list[tuple[Item, bool]]:
        """Store a batch in one transaction; returns (item, created) per image.

        An image whose sha256 is already in the bank is not stored again
        (idempotent re-runs, concurrent writers); its existing item is returned
        with created=False.
        """
        # Load (or rebuild) the indexes first so that this change is applied in
        # memory and saved at the next checkpoint instead of forcing a rebuild.
        for name in sorted({v.signal for new in batch for v in new.extraction.vectors}):
            if signals.get(name).vector_index:
                self.indexes.loaded(bank.id, name)
        with self.indexes.writing(bank.id):  # a shared vector server: the commit and its mirror together
            for attempt in range(1, BATCH_ATTEMPTS + 1):
                try:
                    return self._add_batch(bank, batch)
                except DBAPIError as exc:
                    if attempt == BATCH_ATTEMPTS or not lost_a_race(exc):
                        raise
        raise AssertionError("unreachable")

    def _add_batch(self, bank: Bank, batch: list[NewImage]) -> list[tuple[Item, bool]]:
        """One transaction, and one read of the batch's items and subjects, for the whole batch.

        The new subjects, items and vectors are each inserted with one bulk INSERT
        ... RETURNING (SQLAlchemy's insertmanyvalues, ids in the rows' order) instead
        of through the ORM's unit of work: building, flushing and registering one
        object per row was most of the cost of storing a small photo (issue 21:
        ~15 ms of a 250x250 photo's parent-side time on a loaded machine).
        """
        results: list[tuple[Item, bool]] = []
        added: dict[tuple[int, str], tuple[list[int], list[np.ndarray]]] = {}
        # (item id, quality, subject id) of each added vector: the multi-index keeps them beside its ids.
        owned: dict[tuple[int, str], tuple[list[int], list[float | None], list[int | None]]] = {}
        with self.catalog.session() as s:
            info = s.info
            shas = sorted({new.extraction.sha256 for new in batch})
            known: dict[str, Item] = {}
            for start in range(0, len(shas), 900):  # SQLite's bound-parameter limit
                known.update((str(i.sha256), i) for i in s.scalars(select(Item).where(
                    Item.bank_id == bank.id, Item.sha256.in_(shas[start:start + 900]))))
            fresh: list[NewImage] = []
            first: set[str] = set()
            for new in batch:  # the same image twice in one batch is stored once
                sha = new.extraction.sha256
                if sha not in known and sha not in first:
                    first.add(sha)
                    fresh.append(new)
            subjects = self._subject_ids(s, bank, fresh)
            items = _insert_returning(s, Item, [{
                "bank_id": bank.id, "subject_id": subjects[new.label], "sha256": new.extraction.sha256,
                "source": new.source[:SOURCE_MAX], "width": new.extraction.width,
                "height": new.extraction.height, "format": new.extraction.format,
                "attributes": new.attributes or {}} for new in fresh])
            created = {str(item.sha256): item for item in items}
            for new in batch:
                sha = new.extraction.sha256
                if sha in created and sha in first:
                    first.discard(sha)
                    results.append((created[sha], True))
                else:
                    results.append((known.get(sha) or created[sha], False))
            rows = [{"item_id": item.id, "bank_id": bank.id, "signal": v.signal, "data": v.vector.tobytes(),
                     "quality": v.quality, "box": list(v.box) if v.box is not None else None,
                     "extra": {**v.extra, "ordinal": ordinal}}
                    for item, new in zip(items, fresh, strict=True)
                    for ordinal, v in enumerate(new.extraction.vectors)]
            vector_ids = _insert_ids(s, Vector, rows)
            vectors = [(item, v) for item, new in zip(items, fresh, strict=True)
                       for v in new.extraction.vectors]
            for vid, (item, vec) in zip(vector_ids, vectors, strict=True):
                ids, vecs = added.setdefault((bank.id, vec.signal), ([], []))
                ids.append(vid)
                vecs.append(vec.vector)
                owner_items, qualities, owner_subjects = owned.setdefault((bank.id, vec.signal), ([], [], []))
                owner_items.append(item.id)
                qualities.append(None if vec.quality is None else float(vec.quality))
                owner_subjects.append(item.subject_id)
            info.setdefault("touched", set()).update((bank.id, v.signal) for _item, v in vectors)
            for item, new in zip(items, fresh, strict=True):
                add_annotations(s, item, new.extraction.annotations)
        before = dict(info.get("revisions_before", {}))
        after = dict(info.get("revisions", {}))
        self.indexes.apply(before, after, {
            key: (np.asarray(ids, dtype=np.int64), np.stack(vecs))
            for key, (ids, vecs) in added.items()
        }, owners={key: VectorOwners.of_rows(*columns) for key, columns in owned.items()})
        return results

    @staticmethod
    def _subject_ids(s: Session, bank: Bank, fresh: list[NewImage]) -> dict[str, int]:
        """{label: subject id} for the new images' labels, the missing subjects inserted in bulk."""
        labels = sorted({new.label for new in fresh})
        ids: dict[str, int] = {}
        for start in range(0, len(labels), 900):
            ids.update((str(label), int(sid)) for label, sid in s.execute(
                select(Subject.label, Subject.id).where(Subject.bank_id == bank.id,
                                                        Subject.label.in_(labels[start:start + 900]))))
        # The first image of a label gives its subject's fields (as one flush per image did).
        missing: dict[str, dict[str, Any]] = {}
        for new in fresh:
            if new.label not in ids and new.label not in missing:
                missing[new.label] = {"bank_id": bank.id, "label": new.label, **(new.subject_fields or {})}
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in missing.values():  # one INSERT per set of columns: an omitted one takes its default
            groups.setdefault(tuple(sorted(row)), []).append(row)
        for rows in groups.values():
            for row, sid in zip(rows, _insert_ids(s, Subject, rows), strict=True):
                ids[row["label"]] = sid
        return ids

    def delete_items(self, s: Session, item_ids: list[int]) -> None:
        """Delete items inside the caller's transaction (indexes follow on next get)."""
        self.catalog.delete_items(s, item_ids)

    def subject_items(self, s: Session, subject_id: int) -> list[Item]:
        return list(s.scalars(select(Item).where(Item.subject_id == subject_id)))

    def bank_or_error(self, name: str) -> Bank:
        bank = self.catalog.bank(name)
        if bank is None:
            known = ", ".join(b.name for b in self.catalog.banks()) or "none yet"
            raise LookupError(f"no bank named {name!r} (banks: {known})")
        return bank

    def index_signals(self, bank: Bank) -> list[str]:
        """Signals with a vector index that have vectors in ``bank`` (registered in this process)."""
        names = {s.name for s in signals.all_signals() if s.vector_index}
        return [n for n in self.catalog.signals_in_bank(bank.id) if n in names]

    def checkpoint(self) -> None:
        self.indexes.save()

    def subject(self, s: Session, subject_id: int) -> Subject | None:
        return s.get(Subject, subject_id)


def _insert_ids(s: Session, model: type, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` (Core, in bulk) and return their ids in the rows' order."""
    if not rows:
        return []
    table = model.__table__  # type: ignore[attr-defined]
    if s.get_bind().dialect.name == "sqlite":
        return _insert_numbered(s, table, rows)
    stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return [int(r[0]) for r in s.execute(stmt, rows)]


def _insert_returning(s: Session, model: type, rows: list[dict[str, Any]]) -> list[Any]:
    """Insert ``rows`` as ORM objects in bulk (one INSERT ... RETURNING) and return them in order."""
    if not rows:
        return []
    if s.get_bind().dialect.name == "sqlite":
        ids = _insert_numbered(s, model.__table__, rows)  # type: ignore[attr-defined]
        id_column = model.id  # type: ignore[attr-defined]
        held = s.scalars(select(model).where(id_column.between(ids[0], ids[-1])))
        loaded = {int(row.id): row for row in held}
        return [loaded[i] for i in ids]
    return list(s.scalars(insert(model).returning(model, sort_by_parameter_order=True), rows))


def _insert_numbered(s: Session, table: Any, rows: list[dict[str, Any]]) -> list[int]:
    """SQLite: insert ``rows`` with ids numbered here (one executemany) and return the ids.

    Why: SQLite does not promise RETURNING's row order, so SQLAlchemy's ordered bulk insert
    ran one INSERT per row there (13,515 statements for a crawl of 1,900 photos, most of
    the catalog's time). The ids are the next after the table's largest, contiguous, in the
    rows' order; a writer that took one of them first makes the insert fail on the primary
    key, which :meth:`Store.add_images` runs again as a lost race.
    """
    first = int(s.execute(select(func.max(table.c.id))).scalar() or 0) + 1
    ids = list(range(first, first + len(rows)))
    s.execute(insert(table), [{**row, "id": i} for row, i in zip(rows, ids, strict=True)])
    return ids
