"""Alerts: the case owner's confirmed matches, their webhook deliveries, acknowledgement and outcome.

An investigator sees only the alerts of cases its key owns (itself or one of
its teams); any other id answers 404 like one that does not exist. Reviewers
read every alert (the reviewer pages show failing deliveries), admins also
act on any. The rules (who owns what, once-only steps) are in
:mod:`matcher.review.outbox`; each request is one audit event (``alert.list``,
``alert.read``, ``alert.ack``, ``alert.outcome``, ``alert.evidence``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict

from api import evidence_report, visibility
from api.auth import ADMIN, INVESTIGATOR, REVIEWER, Principal, guard
from api.errors import GUARDED, ApiError, responses
from api.http.routes.common import audit, service
from api.http.schemas import MAX_ID
from matcher.review import outbox

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
AlertId = Annotated[int, Path(ge=1, le=MAX_ID)]


class DeliveryOut(BaseModel):
    subscriber: int
    host: str
    state: str
    attempts: int
    next_attempt_at: str | None
    delivered_at: str | None
    last_status: int | None
    last_error: str | None


class AlertOut(BaseModel):
    id: int
    event_id: str
    candidate_id: int
    bank: str
    kind: str
    case: str | None
    owner: str | None
    pseudonym: str | None
    delivery: str
    failing: bool
    timeline: dict[str, str | None]
    acked_by: str | None
    outcome: str | None
    outcome_by: str | None
    deliveries: list[DeliveryOut]


class AlertList(BaseModel):
    total: int
    alerts: list[AlertOut]


class OutcomeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["action_taken", "not_actionable", "duplicate"]


def alert_out(view: outbox.AlertView) -> AlertOut:
    iso = visibility.iso
    return AlertOut(
        id=view.id, event_id=view.event_id, candidate_id=view.candidate_id, bank=view.bank,
        kind=view.kind, case=view.case_ref, owner=view.owner, pseudonym=view.pseudonym,
        delivery=view.delivery, failing=view.failing,
        timeline={"first_seen": iso(view.first_seen_at), "candidate": iso(view.candidate_at),
                  "confirmed": iso(view.confirmed_at), "delivered": iso(view.delivered_at),
                  "acknowledged": iso(view.acked_at), "outcome": iso(view.outcome_at)},
        acked_by=view.acked_by, outcome=view.outcome, outcome_by=view.outcome_by,
        deliveries=[DeliveryOut(subscriber=d.subscriber, host=d.url_host, state=d.state,
                                attempts=d.attempts, next_attempt_at=iso(d.next_attempt_at),
                                delivered_at=iso(d.delivered_at), last_status=d.last_status,
                                last_error=d.last_error) for d in view.deliveries])


def owned_by(p: Principal) -> str | None:
    """The key whose cases bound what ``p`` sees: investigators their own, other roles everything."""
    return p.name if p.role == INVESTIGATOR else None


def _refused(exc: outbox.AlertError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.detail)


@router.get("", response_model=AlertList, responses=responses(*GUARDED))
def list_alerts(request: Request, failing: bool = Query(False, description="only undelivered ones"),
                limit: int = Query(100, ge=1, le=1000),
                p: Principal = guard("alert.list", ADMIN, INVESTIGATOR, REVIEWER)) -> AlertList:
    """Alerts newest first; ``failing=true`` lists those whose webhook has not gone through."""
    svc = service(request)
    audit(request, "alerts", failing=failing)
    views = svc.alerts.list(owned_by=owned_by(p), failing=failing, limit=limit)
    return AlertList(total=len(views), alerts=[alert_out(v) for v in views])


@router.get("/{alert_id}", response_model=AlertOut, responses=responses(*GUARDED, 404))
def read_alert(alert_id: AlertId, request: Request,
               p: Principal = guard("alert.read", ADMIN, INVESTIGATOR, REVIEWER)) -> AlertOut:
    """One alert with its timeline and deliveries (what a webhook receiver fetches with its own key)."""
    svc = service(request)
    audit(request, f"alert:{alert_id}")
    try:
        return alert_out(svc.alerts.get(alert_id, owned_by=owned_by(p)))
    except outbox.AlertError as exc:
        raise _refused(exc) from None


@router.post("/{alert_id}/ack", response_model=AlertOut, responses=responses(*GUARDED, 404, 409))
def acknowledge(alert_id: AlertId, request: Request,
                p: Principal = guard("alert.ack", ADMIN, INVESTIGATOR)) -> AlertOut:
    """The owner has seen the alert (once; a second acknowledgement is 409 ``already_acknowledged``)."""
    svc = service(request)
    audit(request, f"alert:{alert_id}")
    try:
        return alert_out(svc.alerts.acknowledge(alert_id, p.name, owned_by(p)))
    except outbox.AlertError as exc:
        raise _refused(exc) from None


@router.post("/{alert_id}/outcome", response_model=AlertOut, responses=responses(*GUARDED, 404, 409))
def record_outcome(alert_id: AlertId, body: OutcomeIn, request: Request,
                   p: Principal = guard("alert.outcome", ADMIN, INVESTIGATOR)) -> AlertOut:
    """What came of it: ``action_taken``, ``not_actionable`` or ``duplicate`` (once)."""
    svc = service(request)
    audit(request, f"alert:{alert_id}", outcome=body.outcome)
    try:
        return alert_out(svc.alerts.record_outcome(alert_id, body.outcome, p.name, owned_by(p)))
    except outbox.AlertError as exc:
        raise _refused(exc) from None


@router.get("/{alert_id}/evidence", responses={
    **responses(*GUARDED, 404),
    200: {"content": {"application/json": {}, "text/html": {}},
          "description": "The evidence report (JSON, or printable HTML with format=html)"}})
def evidence(alert_id: AlertId, request: Request, format: Literal["json", "html"] = "json",
             p: Principal = guard("alert.evidence", ADMIN, INVESTIGATOR, REVIEWER)) -> Any:
    """The evidence report of the confirmed match: hashes, evidence in words, reviews, audit chain."""
    svc = service(request)
    audit(request, f"alert:{alert_id}", format=format)
    try:
        report = evidence_report.build(svc, alert_id, p.role, owned_by=owned_by(p))
    except outbox.AlertError as exc:
        raise _refused(exc) from None
    if format == "html":
        return HTMLResponse(evidence_report.to_html(report))
    return JSONResponse(report)
