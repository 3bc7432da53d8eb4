"""The alert pages: confirmed matches, their webhook deliveries, and the owner's acknowledgement and outcome.

Reviewers and admins see every alert, failing deliveries first in mind (the
dashboard links here when any is failing); an investigator signs in to see
the alerts of the cases its key owns and to acknowledge them and record an
outcome, with the same rules as the API (:mod:`matcher.review.outbox`: once each,
owners only) and the same audit events (``alert.ack``, ``alert.outcome``,
with ``via=web``). The evidence report is served here as the printable page
the API gives with ``format=html``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api import evidence_report
from api.auth import ADMIN, INVESTIGATOR, REVIEWER
from api.http.routes.common import audit, service
from api.web.access import Refused, form_guard, prefix, signed_in
from api.web.render import page, qs
from api.web.sessions import Session
from matcher.review import outbox

router = APIRouter(include_in_schema=False)
READERS = frozenset({ADMIN, REVIEWER, INVESTIGATOR})
OWNERS = frozenset({ADMIN, INVESTIGATOR})
OUTCOME_LABELS = {"action_taken": "Action taken", "not_actionable": "Not actionable",
                  "duplicate": "Duplicate"}
DELIVERY_LABELS = {"delivered": "Delivered", "pending": "Waiting to be sent", "failing": "Failing (retrying)",
                   "failed": "Failed (gave up)", "no_owner": "No case owner", "no_subscriber": "No webhook"}
MESSAGES = {"acknowledged": "Alert acknowledged.", "closed": "Outcome recorded.",
            "already_acknowledged": "This alert was already acknowledged.",
            "outcome_recorded": "This alert already has an outcome."}


def _owned_by(session: Session) -> str | None:
    return session.principal.name if session.principal.role == INVESTIGATOR else None


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, session: Annotated[Session, signed_in("alert.list", READERS)],
                failing: bool = Query(False), done: str | None = Query(None, max_length=40)) -> HTMLResponse:
    """The alerts this session may see, newest first; ``failing=1`` keeps the undelivered ones."""
    svc = service(request)
    audit(request, "alerts", failing=failing, via="web")
    views = svc.alerts.list(owned_by=_owned_by(session), failing=failing, limit=500)
    return page(request, "alerts.html", alerts=views, failing=failing, outcomes=OUTCOME_LABELS,
                deliveries=DELIVERY_LABELS, message=MESSAGES.get(done or ""),
                may_act=session.principal.role in OWNERS)


def _back(request: Request, done: str) -> Response:
    return RedirectResponse(f"{prefix(request)}/alerts{qs({'done': done})}", status_code=303)


@router.post("/alerts/{alert_id}/ack")
def acknowledge(alert_id: int, request: Request,
                session: Annotated[Session, form_guard("alert.ack", OWNERS)]) -> Response:
    svc = service(request)
    audit(request, f"alert:{alert_id}", via="web")
    try:
        svc.alerts.acknowledge(alert_id, session.principal.name, _owned_by(session))
    except outbox.AlertError as exc:
        if exc.status == 404:
            raise Refused(404, f"There is no alert {alert_id}.") from None
        return _back(request, exc.code)
    return _back(request, "acknowledged")


@router.post("/alerts/{alert_id}/outcome")
def record_outcome(alert_id: int, request: Request,
                   session: Annotated[Session, form_guard("alert.outcome", OWNERS)],
                   outcome: Annotated[Literal["action_taken", "not_actionable", "duplicate"], Form()]
                   ) -> Response:
    svc = service(request)
    audit(request, f"alert:{alert_id}", outcome=outcome, via="web")
    try:
        svc.alerts.record_outcome(alert_id, outcome, session.principal.name, _owned_by(session))
    except outbox.AlertError as exc:
        if exc.status == 404:
            raise Refused(404, f"There is no alert {alert_id}.") from None
        return _back(request, exc.code)
    return _back(request, "closed")


@router.get("/alerts/{alert_id}/evidence", response_class=HTMLResponse)
def evidence(alert_id: int, request: Request,
             session: Annotated[Session, signed_in("alert.evidence", READERS)]) -> HTMLResponse:
    """The printable evidence report (the page of ``GET /v1/alerts/{id}/evidence?format=html``)."""
    svc = service(request)
    audit(request, f"alert:{alert_id}", format="html", via="web")
    try:
        report = evidence_report.build(svc, alert_id, session.principal.role, owned_by=_owned_by(session))
    except outbox.AlertError:
        raise Refused(404, f"There is no alert {alert_id}.") from None
    return HTMLResponse(evidence_report.to_html(report, stylesheet=f"{prefix(request)}/static/review.css"))
