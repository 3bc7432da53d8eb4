"""The queue page and what a reviewer does to several candidates at once.

The page lists open candidates in the application's priority order
(:class:`matcher.review.stats.QueueFilter`: protected children, missing
persons, venues, then score), optionally grouped by query image or by case,
with a thumbnail of each side. The thumbnails go through the same rules as
the candidate page's pictures: the query image is audited
(``review.query_image``), a missing person's reference is only ever sent
blurred here (the sharp one needs the audited reveal on the candidate page),
and a protected child's query image is blurred too.

Bulk reject, undo / reopen and the export of confirmed matches are calls to
:class:`api.application.Application`, which writes one audit event per
candidate decided (``review.decide``), per reopen (``review.reopen``) and per
export (``review.export``); the request itself is audited by the service
middleware like every page (``review.bulk_reject``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from api import visibility
from api.application import Actor
from api.enrollment import PHOTO_ATTR
from api.http.routes.common import audit, service
from api.service import Service
from api.web import photos, thumbs
from api.web.access import Refused, form_guard, prefix, signed_in
from api.web.pages import (
    ORDER_LABELS,
    PAGE_SIZE,
    STATE_LABELS,
    Filters,
    _context,
    _flash,
    _row_or_404,
    filters,
)
from api.web.render import page, qs
from api.web.sessions import Session
from indexer.store.catalog import Item, utcnow
from matcher.review import queue as review
from matcher.review import stats as review_stats
from matcher.review.cases import Case, CaseSubject
from matcher.review.stats import FAMILY_LABELS

router = APIRouter(include_in_schema=False)
GROUPS = {"": "No grouping", "query": "By query image", "case": "By case"}
REOPEN_ERRORS = {
    "not_your_decision": "Only the reviewer who took the latest decision may undo it; an administrator "
                         "may reopen the candidate.",
    "undo_window_passed": "A decision can be undone within "
                          f"{int(review.UNDO_WINDOW.total_seconds() // 60)} minutes. Ask an administrator "
                          "to reopen the candidate.",
    "nothing_to_undo": "This candidate has no decision to undo.",
    "already_open": "This candidate is already pending.",
    "alert_sent": "The alert of this confirmed match has been sent or acknowledged, so it cannot be "
                  "reopened here; its owner records the outcome on the alert.",
    "decided_meanwhile": "Someone decided this candidate meanwhile. Look at its new state and try again.",
    "bad_reason": "Write why the decision is undone or reopened (up to 4,000 characters).",
}
BULK_ERRORS = {"minor_policy": "a protected child's candidate (decide it on its own page)",
               "already_decided": "already decided", "decided_meanwhile": "decided by someone else meanwhile",
               "candidate_not_found": "no longer exists"}


def _actor(session: Session) -> Actor:
    return Actor(session.principal.name, session.principal.role)


def _cases(svc: Service, subject_ids: list[int]) -> dict[int, str]:
    """Case ref (opaque ``C-...``) of each subject that has one; titles are not shown to reviewers."""
    if not subject_ids:
        return {}
    with svc.store.catalog.session() as s:
        rows = s.execute(select(CaseSubject.subject_id, Case.ref).join(Case, Case.id == CaseSubject.case_id)
                         .where(CaseSubject.subject_id.in_(subject_ids))).all()
    return {int(sid): str(ref) for sid, ref in rows}


def row_summary(svc: Service, row: review.StoredCandidate, role: str) -> dict[str, Any]:
    """What the queue lists of one candidate: the role's view minus personal fields, plus thumbnails."""
    bank, subject, item = _context(svc, row)
    view = visibility.candidate_view(row, bank, subject, role)
    view.pop("personal", None)  # never listed: a queue of names is not needed to pick the next one
    view["families"] = [FAMILY_LABELS[f] for f in review_stats.evidence_families(view["evidence"])]
    view["people"] = bank.kind in visibility.PEOPLE_KINDS
    view["query_thumb"] = bool(row.query_photo)
    view["reference_thumb"] = item is not None and bool((item.attributes or {}).get(PHOTO_ATTR))
    view["subject_id"] = row.subject_id
    return view


def _grouped(svc: Service, rows: list[dict[str, Any]], group: str) -> list[dict[str, Any]]:
    """Consecutive groups in order of their first (highest-priority) member."""
    if not group:
        return [{"key": "", "title": None, "rows": rows}]
    cases = _cases(svc, [r["subject_id"] for r in rows if r["subject_id"] is not None]) \
        if group == "case" else {}
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if group == "query":
            key, title = r["query_sha256"], f"Query image {r['query_sha256'][:12]}\u2026"
        else:
            ref = cases.get(r["subject_id"]) if r["subject_id"] is not None else None
            key, title = (ref, f"Case {ref}") if ref else ("", "No case")
        out.setdefault(key, {"key": key, "title": title, "rows": [], "first": r["id"]})["rows"].append(r)
    return list(out.values())


@router.get("/", response_class=HTMLResponse)
def queue(request: Request, session: Annotated[Session, signed_in("review.list")],
          f: Annotated[Filters, Depends(filters)], offset: int = Query(0, ge=0, le=10_000_000),
          group: str | None = Query(None, max_length=10),
          decided: int | None = Query(None, ge=1), outcome: str | None = Query(None, max_length=20),
          bulk: str | None = Query(None, max_length=2000), done: str | None = Query(None, max_length=40)
          ) -> HTMLResponse:
    """The queue: open candidates in priority order unless asked otherwise, filtered, grouped and paged."""
    svc = service(request)
    group = group if group in GROUPS else ""
    audit(request, f"bank:{f.bank}" if f.bank else "queue", via="web", state=f.state, offset=offset,
          group=group or None)
    rows, total = review_stats.queue_page(svc.store.catalog, f.queue_filter(svc), offset, PAGE_SIZE)
    role = session.principal.role
    summaries = [row_summary(svc, r, role) for r in rows]
    params = {**f.params(), **({"group": group} if group else {})}
    return page(request, "queue.html", f=f, params=params, filter_params=f.params(), group=group,
                groups=GROUPS, offset=offset, page_size=PAGE_SIZE, total=total,
                grouped=_grouped(svc, summaries, group), rows=summaries,
                banks=review_stats.queue_length_per_bank(svc.store.catalog),
                counts=svc.review.counts(), families=FAMILY_LABELS, tiers=review.QUEUED_TIERS,
                states=STATE_LABELS, orders=ORDER_LABELS, flash=_flash(decided, outcome),
                decided=decided if outcome in review.STATES else None,
                bulk=_bulk_message(bulk), done=REOPEN_DONE.get(done or ""),
                may_reopen=role in review.REOPEN_ROLES)


REOPEN_DONE = {"undone": "The decision was undone.", "reopened": "The candidate was reopened."}


def _bulk_message(text: str | None) -> str | None:
    """The flash after a bulk reject, from ``rejected:N,skipped:code=N,...`` (counts only)."""
    if not text:
        return None
    parts = dict(p.split(":", 1) for p in text.split(",") if ":" in p)
    try:
        rejected = int(parts.pop("rejected", "0"))
    except ValueError:
        return None
    line = f"{rejected} candidate{'' if rejected == 1 else 's'} rejected."
    skipped = []
    for code, n in parts.items():
        if code in BULK_ERRORS and n.isdigit():
            skipped.append(f"{n} not rejected: {BULK_ERRORS[code]}")
    return line + (" " + "; ".join(skipped) + "." if skipped else "")


@router.post("/bulk/reject")
def bulk_reject(request: Request, session: Annotated[Session, form_guard("review.bulk_reject")],
                ids: Annotated[list[int], Form()] = [],  # noqa: B006 - FastAPI copies defaults
                note: Annotated[str, Form(max_length=review.MAX_NOTE)] = "",
                back: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """Reject the ticked candidates: each one decided and audited on its own."""
    svc = service(request)
    audit(request, "queue", via="web", count=len(ids))
    if not ids:
        raise Refused(400, "Tick at least one candidate to reject.")
    try:
        outcomes = svc.bulk_reject(_actor(session), ids, note.strip(), via="web")
    except ValueError as exc:  # too many, or a note the text rules refuse
        raise Refused(400, str(exc)) from None
    rejected = sum(1 for o in outcomes if o.error is None)
    skipped: dict[str, int] = {}
    for o in outcomes:
        if o.error:
            skipped[o.error] = skipped.get(o.error, 0) + 1
    audit(request, rejected=rejected, refused=sum(skipped.values()))
    summary = ",".join([f"rejected:{rejected}", *(f"{k}:{v}" for k, v in skipped.items())])
    target = back if back.startswith(prefix(request) + "/") and "//" not in back else prefix(request) + "/"
    joiner = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{joiner}{qs({'bulk': summary})[1:]}", status_code=303)


@router.get("/candidates/{candidate_id}/reopen", response_class=HTMLResponse)
def reopen_form(candidate_id: int, request: Request, session: Annotated[Session, signed_in("review.read")],
                error: str | None = Query(None, max_length=40)) -> HTMLResponse:
    """Undo one's own decision (within the window) or, for an admin, reopen: asks for the reason."""
    svc = service(request)
    audit(request, f"candidate:{candidate_id}", via="web", purpose="reopen")
    row = _row_or_404(svc, candidate_id)
    _row, decisions = svc.review.get(candidate_id)
    role = session.principal.role
    last = decisions[-1] if decisions else None
    admin = role in review.REOPEN_ROLES
    undoable = (last is not None and last.reviewer == session.principal.name and last.action in review.ACTIONS
                and utcnow() - last.at <= review.UNDO_WINDOW)
    return page(request, "reopen.html", c=row, states=STATE_LABELS, admin=admin,
                decisions=[visibility.decision_view(d, role) for d in decisions],
                allowed=row.state != review.PENDING if admin else undoable,
                window=int(review.UNDO_WINDOW.total_seconds() // 60), error=REOPEN_ERRORS.get(error or ""))


@router.post("/candidates/{candidate_id}/reopen")
def reopen(candidate_id: int, request: Request, session: Annotated[Session, form_guard("review.reopen")],
           reason: Annotated[str, Form(max_length=review.MAX_NOTE)] = "") -> Response:
    """Apply the undo or reopen; the application layer writes its audit event (``review.reopen``)."""
    svc = service(request)
    request.state.audit_action = None  # Application.reopen records the event, refusals included
    try:
        row = svc.reopen(_actor(session), candidate_id, reason, via="web")
    except review.NotFound:
        raise Refused(404, f"There is no candidate {candidate_id}.") from None
    except (review.ReviewError, ValueError) as exc:
        code = getattr(exc, "code", "bad_reason")
        return RedirectResponse(f"{prefix(request)}/candidates/{candidate_id}/reopen{qs({'error': code})}",
                                status_code=303)
    done = "reopened" if session.principal.role in review.REOPEN_ROLES else "undone"
    return RedirectResponse(f"{prefix(request)}/{qs({'state': row.state, 'done': done})}", status_code=303)


@router.get("/export/confirmed.{fmt}")
def export(fmt: str, request: Request, session: Annotated[Session, signed_in("review.export")],
           bank: str | None = Query(None, max_length=120)) -> Response:
    """Confirmed matches as CSV or JSON (pseudonyms and opaque ids only: matcher.review.export)."""
    svc = service(request)
    request.state.audit_action = None  # Application.export_confirmed records the event
    chosen = svc.store.catalog.bank(bank) if bank else None
    if bank and chosen is None:
        raise Refused(404, "There is no bank by that name.")
    try:
        body, media, _n = svc.export_confirmed(_actor(session), fmt, chosen, via="web")
    except ValueError:
        raise Refused(404, "Exports are CSV or JSON.") from None
    name = f"confirmed-matches{'-' + chosen.name if chosen else ''}.{fmt}"
    return Response(content=body, media_type=media,
                    headers={"content-disposition": f'attachment; filename="{name}"',
                             "cache-control": "no-store"})


# --- thumbnails -------------------------------------------------------------------------


def _jpeg(data: bytes) -> Response:
    return Response(content=data, media_type="image/jpeg", headers={"cache-control": "no-store"})


@router.get("/candidates/{candidate_id}/thumb/query")
def query_thumb(candidate_id: int, request: Request,
                _session: Annotated[Session, signed_in("review.query_image")]) -> Response:
    """The query image, small; audited as a view of it. A protected child's is blurred (not audited)."""
    svc = service(request)
    row = _row_or_404(svc, candidate_id)
    audit(request, f"candidate:{candidate_id}", via="web", thumb=True)
    try:
        data = photos.query_bytes(svc, row)
        if row.minor_policy:
            request.state.audit_action = None  # the blurred stand-in shows no one
            return _jpeg(photos.blurred(data))
        return _jpeg(thumbs.thumbnail(data))
    except photos.PhotoUnavailable as exc:
        raise Refused(404, exc.reason) from None


@router.get("/candidates/{candidate_id}/thumb/reference")
def reference_thumb(candidate_id: int, request: Request,
                    _session: Annotated[Session, signed_in("review.reference_image")]) -> Response:
    """The reference, small: a missing person's only blurred (the sharp one needs the reveal)."""
    svc = service(request)
    row = _row_or_404(svc, candidate_id)
    bank, subject, item = _context(svc, row)
    audit(request, f"subject:{subject.pseudonym}" if subject else f"candidate:{candidate_id}",
          candidate=candidate_id, via="web", thumb=True)
    if item is None:
        raise Refused(404, "The reference photo was removed.")
    try:
        data = photos.reference_bytes(svc, item)
        if bank.kind in visibility.PEOPLE_KINDS or row.minor_policy:
            request.state.audit_action = None
            return _jpeg(photos.blurred(data))
        return _jpeg(thumbs.thumbnail(data))
    except photos.PhotoUnavailable as exc:
        raise Refused(404, exc.reason) from None


def item_photo(svc: Service, item_id: int) -> tuple[Item, bytes] | None:
    """An item and its kept photo, or None (for the search page's reference thumbnails)."""
    with svc.store.catalog.session() as s:
        item = s.get(Item, item_id)
    if item is None:
        return None
    try:
        return item, photos.reference_bytes(svc, item)
    except photos.PhotoUnavailable:
        return None
