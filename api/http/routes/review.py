"""Review: the queue, one candidate with its evidence, decisions, and the query image."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api import visibility
from api.application import MAX_BULK, Actor
from api.auth import ADMIN, INVESTIGATOR, REVIEWER, Principal, guard
from api.errors import GUARDED, ApiError, responses
from api.http.routes.common import audit, bank_or_404, service
from api.http.routes.subjects import IMAGE_RESPONSE
from api.http.schemas import MAX_ID, CandidateList, CandidateOut, DecisionIn
from api.service import Service
from indexer.crypto import DecryptionFailed, MissingKey
from indexer.store.catalog import Bank, Subject
from indexer.store.photos import QUERY_NAMESPACE
from matcher.review import queue as review

router = APIRouter(prefix="/v1/review/candidates", tags=["review"])
CandidateId = Annotated[int, Path(ge=1, le=MAX_ID)]


class ReopenIn(BaseModel):
    """Why a decision is undone (its reviewer, within the undo window) or reopened (an admin)."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=4000)


class BulkRejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    candidate_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, max_length=MAX_BULK)
    note: str = Field(default="", max_length=4000)


class BulkResult(BaseModel):
    candidate_id: int
    state: str | None = Field(description="the new state; null when this candidate was refused")
    error: str | None = Field(description="why it was refused: already_decided, minor_policy (a protected "
                                          "child is decided on its own), candidate_not_found, ...")


class BulkRejectOut(BaseModel):
    rejected: int
    results: list[BulkResult]


def _out(svc: Service, row: review.StoredCandidate, p: Principal,
         decisions: list[review.DecisionView] | None = None, *, one: bool = False) -> CandidateOut:
    """``one``: a single candidate read by ``p`` (says whether ``p`` revealed its reference)."""
    with svc.store.catalog.session() as s:
        bank = s.get(Bank, row.bank_id)
        subject = s.get(Subject, row.subject_id) if row.subject_id is not None else None
    assert bank is not None
    revealed = svc.review.has_revealed(row.id, p.name) if one else None
    return CandidateOut(**visibility.candidate_view(row, bank, subject, p.role, decisions, viewer=p.name,
                                                    revealed=revealed))


@router.get("", response_model=CandidateList, responses=responses(*GUARDED, 404))
def list_queue(request: Request, bank: str | None = Query(None, max_length=120),
               tier: Literal["match", "review"] | None = None,
               state: Literal["pending", "awaiting_second", "escalated", "confirmed",
                              "rejected"] | None = None,
               offset: int = Query(0, ge=0, le=10_000_000), limit: int = Query(50, ge=1, le=200),
               p: Principal = guard("review.list", REVIEWER, ADMIN)) -> CandidateList:
    """One page of the queue, oldest first; filter by bank, tier and state."""
    svc = service(request)
    audit(request, f"bank:{bank}" if bank else "queue", state=state, tier=tier, offset=offset)
    bank_id = bank_or_404(svc, bank).id if bank else None
    rows, total = svc.review.list(bank_id=bank_id, tier=tier, state=state, offset=offset, limit=limit)
    return CandidateList(total=total, offset=offset, limit=limit,
                         candidates=[_out(svc, r, p) for r in rows])


@router.get("/export", response_class=Response, responses={
    200: {"content": {"text/csv": {}, "application/json": {}},
          "description": "confirmed matches: pseudonyms and opaque ids only (matcher/review/export.py)"},
    **responses(*GUARDED, 404)})
def export_confirmed(request: Request, format: Literal["csv", "json"] = "csv",  # noqa: A002 - the API's word
                     bank: str | None = Query(None, max_length=120),
                     p: Principal = guard("review.export", REVIEWER, ADMIN)) -> Response:
    """Every confirmed match as CSV or JSON; each export is an audit event with its row count."""
    svc = service(request)
    chosen = bank_or_404(svc, bank) if bank else None
    request.state.audit_action = None  # the application layer records review.export (CLI and web too)
    body, media, _n = svc.export_confirmed(Actor(p.name, p.role), format, chosen, via="api")
    return Response(content=body, media_type=media, headers={"Cache-Control": "no-store"})


@router.post("/bulk/reject", response_model=BulkRejectOut, responses=responses(*GUARDED))
def bulk_reject(body: BulkRejectIn, request: Request,
                p: Principal = guard("review.bulk_reject", REVIEWER, ADMIN)) -> BulkRejectOut:
    """Reject several candidates: each decided on its own and audited as ``review.decide``."""
    svc = service(request)
    audit(request, "queue", count=len(body.candidate_ids))
    try:
        outcomes = svc.bulk_reject(Actor(p.name, p.role), body.candidate_ids, body.note, via="api")
    except ValueError as exc:  # a note the text rules refuse
        raise ApiError(422, "validation_error", str(exc)) from None
    rejected = sum(1 for o in outcomes if o.error is None)
    audit(request, rejected=rejected)
    return BulkRejectOut(rejected=rejected, results=[BulkResult(candidate_id=o.candidate_id, state=o.state,
                                                                error=o.error) for o in outcomes])


@router.get("/{candidate_id}", response_model=CandidateOut, responses=responses(*GUARDED, 404))
def read_candidate(candidate_id: CandidateId, request: Request,
                   p: Principal = guard("review.read", REVIEWER, ADMIN, INVESTIGATOR)) -> CandidateOut:
    """One candidate with its evidence and decisions.

    Investigators see the outcome only, and only of candidates their own
    matches produced; any other id answers 404 like one that does not exist.
    """
    svc = service(request)
    audit(request, f"candidate:{candidate_id}")
    own = p.name if visibility.reads_own_candidates_only(p.role) else None
    try:
        row, decisions = svc.review.get(candidate_id, requested_by=own)
    except review.NotFound as exc:
        raise ApiError(404, exc.code, exc.detail) from None
    return _out(svc, row, p, decisions, one=True)


@router.post("/{candidate_id}/decision", response_model=CandidateOut, responses=responses(*GUARDED, 404, 409))
def decide(candidate_id: CandidateId, body: DecisionIn, request: Request,
           p: Principal = guard("review.decide", REVIEWER, ADMIN)) -> CandidateOut:
    """Confirm, reject or escalate with a note; recorded with the reviewer and time.

    Confirming a missing person's (or a protected child's) candidate needs its
    reference photo revealed first by the one confirming, through the audited
    ``GET /v1/subjects/{pseudonym}/photos/{ref_item}``; otherwise 409
    ``reveal_required``. While a candidate awaits its second reviewer, that
    reviewer is shown no earlier decision until they have decided (blind review).
    """
    svc = service(request)
    audit(request, f"candidate:{candidate_id}", decision=body.action)
    try:
        row, _view = svc.review.decide(candidate_id, p.name, p.role, body.action, body.note)
    except review.NotFound as exc:
        raise ApiError(404, exc.code, exc.detail) from None
    except review.Conflict as exc:
        raise ApiError(409, exc.code, exc.detail) from None
    audit(request, state=row.state)
    _row, decisions = svc.review.get(candidate_id)
    return _out(svc, row, p, decisions, one=True)


@router.get("/{candidate_id}/query-image", response_class=Response,
            responses={**IMAGE_RESPONSE, **responses(*GUARDED, 404, 409)})
def query_image(candidate_id: CandidateId, request: Request,
                _p: Principal = guard("review.query_image", REVIEWER, ADMIN)) -> Response:
    """The image that was matched; every view is an audit event."""
    svc = service(request)
    audit(request, f"candidate:{candidate_id}")
    try:
        row, _decisions = svc.review.get(candidate_id)
    except review.NotFound as exc:
        raise ApiError(404, exc.code, exc.detail) from None
    if not row.query_photo:
        raise ApiError(404, "photo_not_found", "no image was kept for this candidate (hash-only query)")
    try:
        data = svc.photos.get(QUERY_NAMESPACE, row.query_photo)
    except FileNotFoundError:
        raise ApiError(404, "photo_not_found", "the image file is missing") from None
    except (MissingKey, DecryptionFailed):
        raise ApiError(409, "encryption_key_mismatch",
                       "the configured key does not open this image") from None
    return Response(content=data, media_type=_sniff(data), headers={"Cache-Control": "no-store"})


def _sniff(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:3] == b"GIF":
        return "image/gif"
    if data[:2] == b"BM":
        return "image/bmp"
    if data[:4] in (b"II*\0", b"MM\0*"):
        return "image/tiff"
    return "image/jpeg"


@router.post("/{candidate_id}/reopen", response_model=CandidateOut, responses=responses(*GUARDED, 404, 409))
def reopen(candidate_id: CandidateId, body: ReopenIn, request: Request,
           p: Principal = guard("review.reopen", REVIEWER, ADMIN)) -> CandidateOut:
    """Undo one's own latest decision within the undo window, or (admins) reopen to pending.

    403 ``not_your_decision`` / ``undo_window_passed``; 409 ``nothing_to_undo``,
    ``already_open``, ``alert_sent`` (the owner was told) or ``decided_meanwhile``.
    """
    svc = service(request)
    request.state.audit_action = None  # the application layer records review.reopen
    try:
        row = svc.reopen(Actor(p.name, p.role), candidate_id, body.reason, via="api")
    except review.NotFound as exc:
        raise ApiError(404, exc.code, exc.detail) from None
    except review.NotAllowed as exc:
        raise ApiError(403, exc.code, exc.detail) from None
    except review.Conflict as exc:
        raise ApiError(409, exc.code, exc.detail) from None
    except ValueError as exc:
        raise ApiError(422, "validation_error", str(exc)) from None
    _row, decisions = svc.review.get(candidate_id)
    return _out(svc, row, p, decisions, one=True)
