"""Search from the browser: upload (or drop) an image, pick banks, see the ranked candidates.

The page posts a real multipart form and runs the call ``POST /v1/match``
runs (:meth:`api.application.Application.match_image` after the same upload
limits and bank choice), so what it finds is queued for review exactly as
an API search would be, under the searcher's name. It is for the roles that
may search over the API (investigators, admins), and shows each candidate
as :func:`api.visibility.match_view` allows: an investigator sees
pseudonyms, scores and evidence, never a missing person's case code or any
reference photo; an admin also sees reference thumbnails (a missing
person's blurred) and opens the candidate pages from here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import HTMLResponse

from api import budgets, hash_matching, visibility
from api.auth import ADMIN, INVESTIGATOR
from api.bank_names import bank_names
from api.errors import ApiError
from api.http.routes.common import audit, service
from api.uploads import api_error, read_uploads
from api.web import evidence, photos, thumbs
from api.web.access import WEB_ROLES, Refused, form_guard, signed_in
from api.web.queue import item_photo
from api.web.render import page
from api.web.sessions import Session
from indexer import images
from indexer.store.catalog import Bank
from matcher.review import queue as review
from matcher.review import stats as review_stats
from matcher.review.stats import FAMILY_LABELS

router = APIRouter(include_in_schema=False)
SEARCH_ROLES = frozenset({ADMIN, INVESTIGATOR})  # as POST /v1/match
THUMB_ROLES = frozenset({ADMIN})  # of the searchers, those visibility lets see reference photos
TOPS = (5, 10, 25, 50)


def _banks(request: Request) -> list[Bank]:
    return hash_matching.searchable_banks(service(request), partner=False)


def _form(request: Request, status: int = 200, **context: Any) -> HTMLResponse:
    defaults: dict[str, Any] = {"banks": _banks(request), "chosen": [], "top": 10, "tops": TOPS,
                                "results": None, "error": None}
    return page(request, "search.html", status=status, **{**defaults, **context})


@router.get("/search", response_class=HTMLResponse)
def search_form(request: Request,
                _session: Annotated[Session, signed_in(None, SEARCH_ROLES)]) -> HTMLResponse:
    """The empty search form (not audited: it shows bank names only, as GET /v1/banks does)."""
    return _form(request)


@router.post("/search", response_class=HTMLResponse)
def search(request: Request, session: Annotated[Session, form_guard("match", SEARCH_ROLES)],
           image: Annotated[UploadFile, File()], banks: Annotated[list[str], Form()] = [],  # noqa: B006
           top: Annotated[int, Form(ge=1, le=100)] = 10) -> HTMLResponse:
    """Match the uploaded image and list the candidates; those at match or review go to the queue."""
    svc = service(request)
    p = session.principal
    names = bank_names(banks)
    try:  # a search costs what an API match costs: the same per-key request budget (api.budgets)
        budgets.charge_key(request, p)
    except budgets.RateLimited as exc:
        audit(request, "search", error="rate_limited", via="web")
        response = _form(request, status=429, chosen=names, top=top,
                         error=f"Too many searches with this key; try again in {exc.retry_after} s.")
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    try:
        [upload] = read_uploads([image], "image")
        audit(request, f"query:{upload.sha256}", via="web")
        chosen = hash_matching.choose_banks(svc, names, partner=False)
        try:
            candidates, queued = svc.match_image(upload.data, upload.sha256, chosen, top, p.name)
        except images.ImageError as exc:
            raise api_error(exc, "image") from None
    except ApiError as exc:
        audit(request, error=exc.code)
        return _form(request, status=exc.status, chosen=names, top=top, error=_message(exc))
    kinds = {b.name: b.kind for b in chosen}
    policies = {b.name: b.policy for b in chosen}
    audit(request, candidates=len(candidates), queued=len(queued),
          best=candidates[0].decision if candidates else "none")
    size = _size(upload.data)
    results = []
    for n, c in enumerate(candidates):
        view = visibility.match_view(c, kinds[c.bank], p.role, queued.get(n))
        view["kind"] = kinds[c.bank]
        view["families"] = [FAMILY_LABELS[f] for f in review_stats.evidence_families(c.evidence)]
        # The evidence on the query, drawn as on the candidate page (the reference side is the
        # candidate page's, for the roles that may see references): what was compared, where.
        view["explained"] = evidence.explain(view.get("evidence") or {}, c.score, c.decision,
                                             policy=policies[c.bank])
        results.append(view)
    return _form(request, chosen=names, top=top, results=results, searched=[b.name for b in chosen],
                 query_sha256=upload.sha256, thumbs=p.role in THUMB_ROLES,
                 opens_candidates=p.role in WEB_ROLES, query_size=size)


def _size(data: bytes) -> tuple[int, int] | None:
    """The upload's displayed size, or None when the header cannot say (nothing is drawn then)."""
    try:
        return photos.describe(data)[0]
    except photos.PhotoUnavailable:
        return None


@router.get("/search/candidates/{candidate_id}/query")
def queued_query(candidate_id: int, request: Request,
                 session: Annotated[Session, signed_in("review.query_image", SEARCH_ROLES)]) -> Response:
    """The searched image behind a queued result, for drawing its evidence on the results page.

    An investigator gets only the query of a candidate their own search queued (as
    ``GET /v1/review/candidates/{id}``: any other id is 404); it is the image they sent.
    Audited like every view of a query image.
    """
    svc = service(request)
    p = session.principal
    audit(request, f"candidate:{candidate_id}", via="web", search=True)
    own = p.name if visibility.reads_own_candidates_only(p.role) else None
    try:
        row, _decisions = svc.review.get(candidate_id, requested_by=own)
        data = photos.query_bytes(svc, row)
        _size_, mime = photos.describe(data)
    except review.NotFound:
        raise Refused(404, "No such candidate.") from None
    except photos.PhotoUnavailable as exc:
        raise Refused(404, exc.reason) from None
    return Response(content=data, media_type=mime, headers={"cache-control": "no-store"})


def _message(exc: ApiError) -> str:
    if exc.code == "bank_not_found":
        return f"{exc.detail[:1].upper()}{exc.detail[1:]}. Pick banks from the list."
    return f"The image was not searched: {exc.detail}."


@router.get("/search/items/{item_id}/thumb")
def reference_thumb(item_id: int, request: Request,
                    _session: Annotated[Session, signed_in("review.reference_image", THUMB_ROLES)]
                    ) -> Response:
    """A search result's reference, small (audited); a missing person's only blurred."""
    svc = service(request)
    audit(request, f"item:{item_id}", via="web", thumb=True)
    found = item_photo(svc, item_id)
    if found is None:
        raise Refused(404, "No photo was kept for this reference.")
    item, data = found
    with svc.store.catalog.session() as s:
        bank = s.get(Bank, item.bank_id)
    try:
        if bank is None or bank.kind in visibility.PEOPLE_KINDS:
            request.state.audit_action = None  # the blurred stand-in shows no one
            data = photos.blurred(data)
        else:
            data = thumbs.thumbnail(data)
    except photos.PhotoUnavailable as exc:
        raise Refused(404, exc.reason) from None
    return Response(content=data, media_type="image/jpeg", headers={"cache-control": "no-store"})
