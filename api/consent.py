"""Withdrawing consent: everything of one subject leaves every place it was kept.

A family that withdraws consent must be able to trust that their relative is
no longer searchable and no longer stored. In one catalog transaction the
subject's items, vectors, personal fields and candidates (with their review
notes) are deleted; then the loaded vector indexes drop the vectors and are
saved at once (the files on disk held them too), the photo files are
overwritten and removed, and the SQLite write-ahead log is checkpointed and
truncated so that no old page copy survives in it (the catalog runs with
``secure_delete``, so freed pages are zeroed). What remains are audit events
(the withdrawal with its counts, and the earlier reads, matches and reveals),
none of which holds the pseudonym or any personal data: the log names a
subject by a keyed ref (:meth:`api.audit.AuditLog.subject_ref`), which links
back only for someone holding both the pseudonym and the audit key.

The CLI (`reunite withdraw`) and the HTTP route call :func:`withdraw` on the
same application object, so a withdrawal purges the same places either way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from api.application import Application
from api.enrollment import PHOTO_ATTR
from indexer.signals import base as signals
from indexer.store.catalog import Bank, Subject
from indexer.store.photos import QUERY_NAMESPACE, bank_namespace

log = logging.getLogger("reunite.consent")


@dataclass(frozen=True)
class Withdrawal:
    pseudonym: str
    photos: int
    vectors: int
    candidates: int


def withdraw(svc: Application, pseudonym: str) -> Withdrawal | None:
    """Purge the subject ``pseudonym``; None when there is no such subject.

    The bank's vector lock is held from before the purge's transaction until the
    vector indexes dropped the vectors (a shared Milvus server: no other process
    sees the catalog without them and Milvus still with them, and rebuilds).
    """
    store = svc.store
    with store.catalog.session() as s:
        bank_id = s.scalar(select(Subject.bank_id).where(Subject.pseudonym == pseudonym))
    if bank_id is None:
        return None
    with store.indexes.writing(int(bank_id)):
        return _purge(svc, pseudonym)


def _purge(svc: Application, pseudonym: str) -> Withdrawal | None:
    store = svc.store
    with store.catalog.session() as s:
        subject = s.scalar(select(Subject).where(Subject.pseudonym == pseudonym))
        if subject is None:
            return None
        bank = s.get(Bank, subject.bank_id)
        assert bank is not None
        items = store.subject_items(s, subject.id)
        tokens = [str(it.attributes.get(PHOTO_ATTR)) for it in items if (it.attributes or {}).get(PHOTO_ATTR)]
        from matcher.review.queue import StoredCandidate
        n_candidates = len(list(s.scalars(select(StoredCandidate.id)
                                          .where(StoredCandidate.subject_id == subject.id))))
        query_tokens = svc.review.purge_subject(s, subject.id)
        removed = store.catalog.delete_items(s, [it.id for it in items])
        s.delete(subject)
        before = dict(s.info.get("revisions_before", {}))
        after = dict(s.info.get("revisions", {}))
        bank_id, bank_ns = bank.id, bank_namespace(bank.id)
    store.indexes.apply(before, after, {}, {
        (bank_id, signal): np.asarray(ids, dtype=np.int64) for signal, ids in removed.items()})
    for signal in removed:  # make sure the saved file no longer holds the vectors
        if signals.get(signal).vector_index:
            store.indexes.get(bank_id, signal)
    store.checkpoint()
    for token in tokens:
        svc.photos.delete(bank_ns, token)
    for token in query_tokens:
        svc.photos.delete(QUERY_NAMESPACE, token)
    truncate_wal(svc)
    return Withdrawal(pseudonym, len(tokens), sum(len(v) for v in removed.values()), n_candidates)


def truncate_wal(svc: Application) -> None:
    """Fold the SQLite write-ahead log into the database and empty it."""
    engine = svc.store.catalog.engine
    if engine.dialect.name != "sqlite":
        return
    for _attempt in range(10):
        with engine.connect() as conn:
            busy, _log_frames, _done = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        if not busy:
            return
    log.warning("the write-ahead log could not be truncated (busy readers); "
                "it will be at the next checkpoint")
