"""Operations: health and readiness (public, bare), metrics (admins and the scraper), the audit log."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import text

from api import budgets
from api.auth import (
    ADMIN,
    HEADER,
    INGEST,
    INVESTIGATOR,
    PARTNER,
    REVIEWER,
    Principal,
    authenticate,
    guard,
    public,
)
from api.errors import GUARDED, ApiError, responses
from api.http.routes.common import audit, service
from api.http.schemas import AuditEventOut, AuditList, AuditVerifyOut, Health, WhoAmI

router = APIRouter(tags=["admin"])
log = logging.getLogger("reunite.api")


@router.get("/healthz", response_model=Health, dependencies=[public()])
def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, dependencies=[public()],
            responses={503: {"model": Health, "description": "not ready"}})
def readyz(request: Request) -> Response:
    """Readiness: the catalog answers and every vector index is loaded at its current revision.

    Public (load balancers send no key), so it says ready or not and nothing
    else: bank names and sizes are for admins, on ``/metrics``.
    """
    svc = service(request)
    try:
        with svc.store.catalog.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        for bank in svc.store.catalog.banks():
            for name in svc.store.index_signals(bank):
                svc.store.indexes.get(bank.id, name)
    except Exception as exc:  # any failure means: do not send traffic here
        log.warning("not ready: %s", type(exc).__name__)
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ready"})


def metrics_reader() -> Any:
    """Admits an admin key (X-API-Key) or the scraper token (``Authorization: Bearer``).

    The metrics name every bank and count its vectors and queue, which tells
    an outsider what the service holds: only admins and the configured
    Prometheus scraper (``REUNITE_METRICS_TOKEN``) may read them. Scrapes are
    not audited (one every few seconds would drown the log); wrong keys and
    tokens count against the failed-authentication budget like any other.
    """

    def dependency(request: Request, key: str | None = Security(_key_header),
                   bearer: HTTPAuthorizationCredentials | None = Security(_bearer)) -> None:
        token = service(request).config.metrics_token
        if bearer is not None and token and hmac.compare_digest(
                bearer.credentials.encode("utf-8", "replace"), token.encode()):
            return
        presented = key or (bearer.credentials if bearer is not None else None)
        budgets.refuse_if_locked_out(request, presented)
        principal = authenticate(service(request).store.catalog, key) if key else None
        if principal is None:
            budgets.record_failed_key(request, presented)
            raise ApiError(401, "unauthorized", f"send an admin key in the {HEADER} header or the "
                           "metrics token as a Bearer token")
        request.state.principal = principal
        budgets.charge_key(request, principal)
        if principal.role != ADMIN:
            raise ApiError(403, "forbidden", f"the {principal.role} role may not read the metrics")

    dependency.allowed_roles = frozenset({ADMIN})  # type: ignore[attr-defined]
    dependency.audit_action = None  # type: ignore[attr-defined]
    return Depends(dependency)


_key_header = APIKeyHeader(name=HEADER, auto_error=False, description="An admin API key.")
_bearer = HTTPBearer(auto_error=False, description="REUNITE_METRICS_TOKEN, for Prometheus scrapers.")


@router.get("/metrics", dependencies=[metrics_reader()], response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
                       **responses(401, 403, 429)})
def metrics(request: Request) -> Response:
    """Prometheus metrics: requests, latency, index sizes, queue length (admins and the scraper)."""
    body, content_type = request.app.state.metrics.render()
    return Response(content=body, media_type=content_type)


@router.get("/v1/whoami", response_model=WhoAmI, responses=responses(*GUARDED))
def whoami(p: Principal = guard(None, ADMIN, INVESTIGATOR, REVIEWER, INGEST, PARTNER)) -> WhoAmI:
    """The caller's key name and role."""
    return WhoAmI(name=p.name, role=p.role)


@router.get("/v1/audit/events", response_model=AuditList, responses=responses(*GUARDED))
def audit_events(request: Request, offset: int = Query(0, ge=0, le=10_000_000),
                 limit: int = Query(100, ge=1, le=1000), action: str | None = Query(None, max_length=64),
                 _p: Principal = guard("audit.read", ADMIN)) -> AuditList:
    svc = service(request)
    audit(request, "audit", offset=offset)
    events = svc.audit.events(offset, limit, action)
    return AuditList(total=svc.audit.count(), events=[AuditEventOut(**e.to_json()) for e in events])


@router.get("/v1/audit/verify", response_model=AuditVerifyOut, responses=responses(*GUARDED))
def audit_verify(request: Request, _p: Principal = guard("audit.verify", ADMIN)) -> AuditVerifyOut:
    svc = service(request)
    audit(request, "audit")
    report = svc.audit.verify()
    return AuditVerifyOut(ok=report.ok, events=report.events, problems=report.problems)
