"""Hash-only lookups: the one path that `/v1/match/hashes` and the HMA-compatible API share.

A partner (or an HMA client) sends hashes, never an image. Whatever the HTTP
dialect, the same rules must apply to the answer, so they live here and not
in a route module: which banks a role may search (partners only those with
``partner_lookup``), that subjects whose consent has expired are never
returned, that partners hear of hits only (not of distant neighbours), and
that every hit enters the review queue under one query id, so the same hash
asked through either API is one query in the queue.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import func, select

from api import budgets, visibility
from api.audit import PlannedEvent
from api.auth import PARTNER, Principal
from api.errors import ApiError
from api.service import Service
from indexer import pipeline
from indexer.store.catalog import Bank, Item, Vector
from matcher.review.queue import QUEUED_TIERS
from matcher.search.hashes import match_hashes
from matcher.search.query import Candidate


@dataclass(frozen=True)
class HashLookup:
    """What one lookup found: the banks it searched, its candidates and their queue ids."""

    query_id: str
    banks: dict[str, Bank]
    candidates: list[Candidate]
    queued: dict[int, int]


def searchable_banks(svc: Service, partner: bool) -> list[Bank]:
    """Every bank the caller may search: partners only those that allow partner lookups."""
    every = svc.store.catalog.banks()
    if partner:
        every = [b for b in every if visibility.partner_may_search(b)]
    return every


def choose_banks(svc: Service, names: list[str], partner: bool) -> list[Bank]:
    """The named banks (all searchable ones when none is named); 404 when one may not be searched.

    The detail names the refused names (the caller's own words, so nothing is
    disclosed) in one list, unknown and closed alike: a partner must not learn
    that a bank closed to partners exists.
    """
    every = searchable_banks(svc, partner)
    if not names:
        return every
    by_name = {b.name: b for b in every}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ApiError(404, "bank_not_found", f"unknown bank(s): {', '.join(dict.fromkeys(missing))}")
    return [by_name[n] for n in dict.fromkeys(names)]


def query_id(hashes: dict[str, str]) -> str:
    """A stable id of a hash query (audit object, review-queue key); never the hashes themselves."""
    canonical = json.dumps({k: v.lower() for k, v in hashes.items()}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def lookup(svc: Service, principal: Principal, query: pipeline.Extraction, banks: list[Bank],
           top: int, qid: str, event: PlannedEvent | None = None, *, hits_only: bool = False
           ) -> HashLookup:
    """Search ``banks`` for the hashes of ``query`` as ``principal`` may, and queue the hits.

    The search and its rules (revisions, items, consent, minors) read through one
    catalog session (:meth:`indexer.store.catalog.Catalog.unit`). Queueing is one
    transaction, retried whole when it loses a race; with ``event``, the audit event
    of the lookup is appended in that same transaction (one commit,
    :meth:`api.audit.AuditLog.append_after`), so the hits are never queued without it.
    Partners, and every caller with ``hits_only`` (HMA's lookups, which answer matches
    only), get the candidates at a queued tier only; the event counts what is answered.
    """
    catalog = svc.store.catalog
    with catalog.unit():
        candidates = match_hashes(svc.matcher, query, banks, top)  # consent: matcher.privacy.consent
        if hits_only or principal.role == PARTNER:  # partners learn of hits only, not of distant neighbours
            candidates = [c for c in candidates if c.decision in QUEUED_TIERS]
        budgets.charge_queue_insertions(svc, principal, candidates)  # 429 before a partner floods the queue
        by_name = {b.name: b for b in banks}
        if event is None:
            queued = svc.review.record(candidates, by_name, qid, principal.name, None)
        else:
            queued, _event = svc.audit.append_after(
                lambda conn: svc.review.record_in(conn, candidates, by_name, qid, principal.name),
                event.actor, event.role, event.action, event.obj, event.result,
                lambda q: {**event.detail, "candidates": len(candidates), "queued": len(q or {})})
    return HashLookup(qid, by_name, candidates, queued or {})


@dataclass(frozen=True)
class IndexStatus:
    """One signal's index over the banks a caller may search."""

    present: bool  # some searchable bank holds vectors of the signal
    size: int  # vectors in those banks' indexes (what a lookup searches)
    newest: dt.datetime | None  # when the newest of those vectors' images was indexed (UTC)


def index_status(svc: Service, banks: list[Bank], signal: str) -> IndexStatus:
    """How much a lookup of ``signal`` searches in ``banks``, and how recent it is.

    The indexes are rebuilt from the catalog whenever they are stale, so what is
    searched is always the catalog as committed: the newest indexed image is the
    honest "built to" time.
    """
    holding = [b for b in banks if signal in svc.store.index_signals(b)]
    if not holding:
        return IndexStatus(False, 0, None)
    size = sum(len(svc.store.indexes.get(b.id, signal)) for b in holding)
    with svc.store.catalog.session() as s:
        newest = s.scalar(select(func.max(Item.created_at)).join(Vector, Vector.item_id == Item.id)
                          .where(Vector.bank_id.in_([b.id for b in holding]), Vector.signal == signal))
    return IndexStatus(True, size, newest)
