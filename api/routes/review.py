"""Review: the queue, one candidate with its evidence, decisions, and the query image."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response

from api import visibility
from api.auth import ADMIN, INVESTIGATOR, REVIEWER, Principal, guard
from api.errors import GUARDED, ApiError, responses
from api.routes.common import audit, bank_or_404, service
from api.routes.subjects import IMAGE_RESPONSE
from api.schemas import MAX_ID, CandidateList, CandidateOut, DecisionIn
from api.service import Service
from indexer.crypto import DecryptionFailed, MissingKey
from indexer.store.catalog import Bank, Subject
from indexer.store.photos import QUERY_NAMESPACE
from matcher import review

router = APIRouter(prefix="/v1/review/candidates", tags=["review"])
CandidateId = Annotated[int, Path(ge=1, le=MAX_ID)]


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
