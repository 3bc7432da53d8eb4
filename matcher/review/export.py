"""Confirmed matches as a table to hand on: CSV or JSON, pseudonyms and opaque ids only.

An export leaves the system (a spreadsheet on a laptop, a mail to a
partner), so it carries nothing that names a person or a case: the subject
by pseudonym (``S-...``), its case by opaque ref (``C-...``), the query image
by SHA-256, the reference by item id, never a label, personal field, note or
reviewer's name. Whoever receives it asks the system (which keeps the audit
trail) for more. The caller records the export as an audit event
(:meth:`api.application.Application.export_confirmed`). Nothing here knows of HTTP.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from indexer.store.catalog import Bank, Catalog, Subject
from matcher.review.cases import Case, CaseSubject
from matcher.review.queue import CONFIRMED, ReviewDecision, StoredCandidate
from matcher.review.stats import evidence_families

FORMATS = ("csv", "json")


@dataclass(frozen=True)
class ConfirmedMatch:
    """One confirmed candidate, as exported."""

    candidate_id: int
    bank: str
    kind: str
    subject: str | None
    case: str | None
    query_sha256: str
    reference_item: int
    score: float
    tier: str
    signals: str
    reviews: int
    confirmed_at: str | None


FIELDS = tuple(ConfirmedMatch.__dataclass_fields__)


def confirmed(catalog: Catalog, bank_id: int | None = None) -> list[ConfirmedMatch]:
    """Every confirmed candidate (of one bank, or all), oldest confirmation first."""
    with catalog.session() as s:
        q = (select(StoredCandidate, Bank.name, Bank.kind, Subject.pseudonym, Case.ref)
             .join(Bank, Bank.id == StoredCandidate.bank_id)
             .outerjoin(Subject, Subject.id == StoredCandidate.subject_id)
             .outerjoin(CaseSubject, CaseSubject.subject_id == StoredCandidate.subject_id)
             .outerjoin(Case, Case.id == CaseSubject.case_id)
             .where(StoredCandidate.state == CONFIRMED))
        if bank_id is not None:
            q = q.where(StoredCandidate.bank_id == bank_id)
        rows = s.execute(q.order_by(StoredCandidate.id)).all()
        ids = [int(r[0].id) for r in rows]
        decisions: dict[int, list[ReviewDecision]] = {}
        for start in range(0, len(ids), 900):
            for d in s.scalars(select(ReviewDecision).where(
                    ReviewDecision.candidate_id.in_(ids[start:start + 900])).order_by(ReviewDecision.id)):
                decisions.setdefault(int(d.candidate_id), []).append(d)
        out = [_row(cand, bank, kind, pseudonym, case_ref, decisions.get(int(cand.id), []))
               for cand, bank, kind, pseudonym, case_ref in rows]
    out.sort(key=lambda m: (m.confirmed_at or "", m.candidate_id))
    return out


def _row(cand: StoredCandidate, bank: str, kind: str, pseudonym: str | None, case_ref: str | None,
         decisions: list[ReviewDecision]) -> ConfirmedMatch:
    # Only the confirmations since the last reopen or undo count: that is the path that confirmed it.
    since = max((n for n, d in enumerate(decisions) if d.action not in ("confirm", "reject", "escalate")),
                default=-1)
    current = decisions[since + 1:]
    at = next((d.at for d in reversed(current) if d.state_after == CONFIRMED), None)
    return ConfirmedMatch(
        candidate_id=int(cand.id), bank=bank, kind=kind, subject=pseudonym, case=case_ref,
        query_sha256=cand.query_sha256, reference_item=int(cand.ref_item_id), score=round(cand.score, 4),
        tier=cand.tier, signals=";".join(evidence_families(cand.evidence or {})),
        reviews=sum(1 for d in current if d.action == "confirm"),
        confirmed_at=at.replace(microsecond=0).isoformat() + "Z" if at else None)


def _cell(value: object) -> object:
    """A CSV cell that a spreadsheet will not run as a formula (bank names are typed by people)."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def render(matches: list[ConfirmedMatch], fmt: str) -> tuple[str, str]:
    """(body, media type) of ``matches`` as ``csv`` or ``json``."""
    if fmt == "json":
        body: dict[str, Any] = {"fields": list(FIELDS), "matches": [asdict(m) for m in matches]}
        return json.dumps(body, indent=1, ensure_ascii=False) + "\n", "application/json"
    if fmt != "csv":
        raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for m in matches:
        writer.writerow({k: _cell(v) for k, v in asdict(m).items()})
    return buf.getvalue(), "text/csv; charset=utf-8"
