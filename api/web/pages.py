"""The pages a reviewer reads: the queue, one candidate, the dashboard, and the pictures.

Everything shown about a candidate goes through :func:`api.visibility.candidate_view`,
the one place that decides what a role may see; the queue page drops even
the personal fields that view would allow, because a list of names is what a
shoulder-surfer would want. Reading pages is audited like the API
(``review.list``, ``review.read``, ``review.query_image``), with ``via=web``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse

from api import visibility
from api.enrollment import PHOTO_ATTR
from api.http.routes.common import audit, service
from api.service import Service
from api.web import context as facts
from api.web import evidence, photos
from api.web.access import Refused, signed_in
from api.web.render import page
from api.web.sessions import Session
from indexer.store.catalog import Bank, Item, Subject
from matcher.review import queue as review
from matcher.review import stats as review_stats
from matcher.review.stats import FAMILY_LABELS, ORDERS, QueueFilter

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 25
STATE_CHOICES = ("open", *review.STATES)
STATE_LABELS = {"open": "Open (pending, awaiting second, escalated)", "pending": "Pending",
                "awaiting_second": "Awaiting a second reviewer", "escalated": "Escalated",
                "confirmed": "Confirmed", "rejected": "Rejected"}
ORDER_LABELS = {"priority": "Priority (children, missing persons, venues, then by score)",
                "score": "Highest score first", "newest": "Newest first", "oldest": "Oldest first"}
ERRORS = {"already_decided": "This candidate was already decided by someone else.",
          "already_escalated": "This candidate is already escalated.",
          "decided_meanwhile": "Another reviewer decided this candidate while you were deciding; "
                               "your decision was not recorded. Look at its new state.",
          "second_reviewer_required": "You gave the first confirmation; a different reviewer must "
                                      "give the second.",
          "bad_note": "The note is too long (at most 4,000 characters).",
          "reveal_reason_required": "This is a protected child: write why the photo must be seen "
                                    "before revealing it. The reason is kept in the audit log.",
          "reveal_required": "Reveal the reference photo before confirming: a person is named only "
                             "by a reviewer who has seen both photos. Your decision was not recorded."}


@dataclass(frozen=True)
class Filters:
    """The queue filters, carried from the queue to each candidate and back."""

    bank: str | None = None
    tier: str | None = None
    signal: str | None = None
    state: str = "open"
    order: str = "priority"

    def params(self) -> dict[str, str]:
        """Query parameters that differ from the defaults."""
        return {k: v for k, v in asdict(self).items()
                if v not in (None, "") and not (k == "state" and v == "open")
                and not (k == "order" and v == "priority")}

    def queue_filter(self, svc: Service) -> QueueFilter:
        bank = svc.store.catalog.bank(self.bank) if self.bank else None
        return QueueFilter(bank_id=bank.id if bank else (-1 if self.bank else None), tier=self.tier,
                           family=self.signal,
                           states=review.OPEN_STATES if self.state == "open" else (self.state,),
                           order=self.order)


def filters(bank: str | None = Query(None, max_length=120), tier: str | None = Query(None, max_length=20),
            signal: str | None = Query(None, max_length=20), state: str | None = Query(None, max_length=20),
            order: str | None = Query(None, max_length=20)) -> Filters:
    """Filters from the query string; unknown values are ignored rather than refused."""
    return Filters(bank=bank or None, tier=tier if tier in review.QUEUED_TIERS else None,
                   signal=signal if signal in FAMILY_LABELS else None,
                   state=state if state in STATE_CHOICES else "open",
                   order=order if order in ORDERS else "priority")


def _context(svc: Service, row: review.StoredCandidate) -> tuple[Bank, Subject | None, Item | None]:
    with svc.store.catalog.session() as s:
        bank = s.get(Bank, row.bank_id)
        subject = s.get(Subject, row.subject_id) if row.subject_id is not None else None
        item = s.get(Item, row.ref_item_id)
    assert bank is not None
    return bank, subject, item


# The queue page itself is api/web/queue.py (thumbnails, grouping, bulk actions).


def _flash(decided: int | None, outcome: str | None) -> str | None:
    if decided is None or outcome not in review.STATES:
        return None
    return f"Candidate {decided} is now {STATE_LABELS[str(outcome)].lower()}."


@router.get("/candidates/{candidate_id}", response_class=HTMLResponse)
def candidate(candidate_id: int, request: Request, session: Annotated[Session, signed_in("review.read")],
              f: Annotated[Filters, Depends(filters)], decided: int | None = Query(None, ge=1),
              outcome: str | None = Query(None, max_length=20),
              error: str | None = Query(None, max_length=40)) -> HTMLResponse:
    """One candidate: both pictures with the evidence drawn on them, the facts, the decision."""
    svc = service(request)
    audit(request, f"candidate:{candidate_id}", via="web")
    try:
        row, decisions = svc.review.get(candidate_id)
    except review.NotFound:
        return page(request, "message.html", status=404, title="No such candidate",
                    message=f"There is no candidate {candidate_id}. It may have been removed when "
                            "consent was withdrawn.")
    bank, subject, item = _context(svc, row)
    role, me = session.principal.role, session.principal.name
    revealed_by_me = svc.review.has_revealed(candidate_id, me)
    view = visibility.candidate_view(row, bank, subject, role, decisions, viewer=me, revealed=revealed_by_me)
    people = bank.kind in visibility.PEOPLE_KINDS or bool(row.minor_policy)
    ev = view["evidence"]
    face_item = ev.get("reference_item", row.ref_item_id)
    ref_box, ref_landmarks = photos.reference_face(svc, row.ref_item_id, ev.get("face_signal")) \
        if face_item == row.ref_item_id else (None, None)
    # Contacts painted on an ad's photo (OCR, matcher.networks.photo_contacts): never for a reference bank.
    ref_contacts = _photo_contacts(svc, row.ref_item_id) if bank.kind == "ads" else []
    qf = f.queue_filter(svc)
    # The confirmation that put it into awaiting_second (the latest; an undone one no longer counts).
    opened_second = [d for d in sorted(decisions, key=lambda d: d.at)
                     if d.state_after == review.AWAITING_SECOND]
    last_opener = opened_second[-1] if opened_second else None
    mine_first = (row.state == review.AWAITING_SECOND and last_opener is not None
                  and last_opener.reviewer == session.principal.name and last_opener.action == "confirm")
    explained = evidence.explain(ev, row.score, row.tier, ref_box, bank.policy, ref_contacts,
                                 reference_face_landmarks=ref_landmarks)
    query = _picture_facts(lambda: photos.query_bytes(svc, row))
    reference = _reference_facts(svc, item)
    pairs = explained.correspondences((query["width"], query["height"]) if query["ok"] else None,
                                      (reference["width"], reference["height"]) if reference["ok"] else None)
    return page(request, "candidate.html", c=view, bank=bank, people=people,
                revealed=not people or candidate_id in session.revealed,
                must_reveal=view["reveal_before_confirm"] and not revealed_by_me,
                explained=explained, pairs=pairs, query=query, reference=reference,
                ad=facts.ad_facts(svc.store.catalog, bank, subject, item),
                venue=facts.venue_facts(bank, subject, item, ev.get("venue")),
                network_url=_network_url(request),
                next_id=review_stats.neighbour(svc.store.catalog, qf, candidate_id, forward=True),
                prev_id=review_stats.neighbour(svc.store.catalog, qf, candidate_id, forward=False),
                params=f.params(), can_decide=row.state in review.OPEN_STATES and not mine_first,
                mine_first=mine_first, states=STATE_LABELS, flash=_flash(decided, outcome),
                error=ERRORS.get(error or ""))


def _network_url(request: Request) -> str | None:
    """Where one network's page lives, when these pages have one (``/networks/{id}``), else None."""
    for route in request.app.routes:
        path = getattr(route, "path", "")
        if path.startswith("/networks/{") and path.count("{") == 1 and path.endswith("}"):
            return request.scope.get("root_path", "").rstrip("/") + "/networks/"
    return None


def _photo_contacts(svc: Any, item_id: int | None) -> list[dict[str, Any]]:
    from matcher.networks import photo_contacts

    if item_id is None:
        return []
    with svc.store.catalog.session() as s:
        return photo_contacts.on_item(s, item_id)


def _picture_facts(fetch: Any) -> dict[str, Any]:
    try:
        (width, height), _mime = photos.describe(fetch())
    except photos.PhotoUnavailable as exc:
        return {"ok": False, "reason": exc.reason}
    return {"ok": True, "width": width, "height": height}


def _reference_facts(svc: Service, item: Item | None) -> dict[str, Any]:
    if item is None:
        return {"ok": False, "reason": "the reference photo was removed"}
    if item.width and item.height and (item.attributes or {}).get(PHOTO_ATTR):
        return {"ok": True, "width": item.width, "height": item.height}
    return _picture_facts(lambda: photos.reference_bytes(svc, item))


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request, _session: Annotated[Session, signed_in("review.dashboard")]) -> HTMLResponse:
    """Queue length per bank, decisions per day, the median response time, and sighting-to-action times."""
    svc = service(request)
    catalog = svc.store.catalog
    audit(request, "dashboard", via="web")
    banks = review_stats.queue_length_per_bank(catalog)
    days = review_stats.decisions_per_day(catalog, 14)
    timings = review_stats.alert_timings(catalog)
    action = review_stats.summarise(timings)
    return page(request, "dashboard.html", banks=banks, days=days,
                action=action, action_banks=review_stats.grouped(timings, "bank"),
                action_cases=review_stats.grouped(timings, "case"), stage_labels=review_stats.STAGE_LABELS,
                longest=max((x.p90_s or 0 for x in action), default=0) or 1,
                failing_alerts=svc.alerts.failing_count(),
                busiest=max((d.total for d in days), default=0),
                overall=review_stats.response_times(catalog),
                per_bank={b.bank_id: review_stats.response_times(catalog, b.bank_id) for b in banks},
                states=STATE_LABELS, open_states=review.OPEN_STATES)


# --- pictures ------------------------------------------------------------------------


def _image(data: bytes) -> Response:
    try:
        _size, mime = photos.describe(data)
    except photos.PhotoUnavailable:
        mime = "application/octet-stream"
    return Response(content=data, media_type=mime, headers={"cache-control": "no-store"})


def _row_or_404(svc: Service, candidate_id: int) -> review.StoredCandidate:
    try:
        row, _decisions = svc.review.get(candidate_id)
    except review.NotFound:
        raise Refused(404, f"There is no candidate {candidate_id}.") from None
    return row


@router.get("/candidates/{candidate_id}/query-image")
def query_image(candidate_id: int, request: Request,
                _session: Annotated[Session, signed_in("review.query_image")]) -> Response:
    """The image that was matched (every view audited, as in the API)."""
    svc = service(request)
    audit(request, f"candidate:{candidate_id}", via="web")
    try:
        return _image(photos.query_bytes(svc, _row_or_404(svc, candidate_id)))
    except photos.PhotoUnavailable as exc:
        raise Refused(404, exc.reason) from None


def _reference(svc: Service, row: review.StoredCandidate) -> tuple[Bank, Subject | None, bytes]:
    bank, subject, item = _context(svc, row)
    if item is None:
        raise Refused(404, "The reference photo was removed.")
    try:
        return bank, subject, photos.reference_bytes(svc, item)
    except photos.PhotoUnavailable as exc:
        raise Refused(404, exc.reason) from None


@router.get("/candidates/{candidate_id}/reference-image")
def reference_image(candidate_id: int, request: Request,
                    session: Annotated[Session, signed_in("review.reference_image")]) -> Response:
    """The sharp reference photo: for a missing person only after this session revealed it."""
    svc = service(request)
    row = _row_or_404(svc, candidate_id)
    bank, subject, _item = _context(svc, row)
    audit(request, f"subject:{subject.pseudonym}" if subject else f"candidate:{candidate_id}",
          candidate=candidate_id, via="web")
    if bank.kind in visibility.PEOPLE_KINDS and candidate_id not in session.revealed:
        raise Refused(403, "Reveal the reference photo on the candidate page first.")
    return _image(_reference(svc, row)[2])


@router.get("/candidates/{candidate_id}/reference-blurred")
def reference_blurred(candidate_id: int, request: Request,
                      _session: Annotated[Session, signed_in(None)]) -> Response:
    """The blurred stand-in: made from a dozen pixels, it shows no one, so it is not audited."""
    svc = service(request)
    try:
        data = photos.blurred(_reference(svc, _row_or_404(svc, candidate_id))[2])
    except photos.PhotoUnavailable as exc:
        raise Refused(404, exc.reason) from None
    return Response(content=data, media_type="image/jpeg", headers={"cache-control": "no-store"})
