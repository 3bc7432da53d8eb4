"""Consent at match time: a subject whose consent has expired is never a candidate.

One filter below every front end (CLI, HTTP, web pages, batch jobs) and after
every searcher, so that no caller can forget it: :meth:`matcher.search.query.Matcher.match_query`
and :func:`matcher.search.hashes.match_hashes` apply it before they cut the
ranking to ``top``. The rule itself (what "expired" means) is
:func:`indexer.enroll.consent_active`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from indexer.enroll import consent_active, utcnow
from indexer.store.catalog import Subject
from indexer.store.store import Store

if TYPE_CHECKING:
    from matcher.search.query import Candidate


def subject_consented(subject: Subject | None, now: dt.datetime | None = None) -> bool:
    """Whether a loaded subject row may be a candidate (items without a subject always may)."""
    return subject is None or consent_active(subject, now)


def expired_subjects(store: Store, subject_ids: set[int], now: dt.datetime | None = None) -> set[int]:
    """Those of ``subject_ids`` whose consent no longer holds."""
    if not subject_ids:
        return set()
    now = now or utcnow()
    with store.catalog.session() as s:
        rows = store.catalog.subjects(s, subject_ids)
    return {sid for sid, subject in rows.items() if not consent_active(subject, now)}


def drop_expired(store: Store, candidates: list[Candidate],
                 now: dt.datetime | None = None) -> list[Candidate]:
    """``candidates`` without those whose subject's consent has expired (order kept)."""
    expired = expired_subjects(store, {c.subject_id for c in candidates if c.subject_id is not None}, now)
    return [c for c in candidates if c.subject_id not in expired] if expired else candidates
