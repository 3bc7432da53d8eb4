"""Operations: health, readiness, metrics (public) and the audit log (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.auth import ADMIN, INGEST, INVESTIGATOR, PARTNER, REVIEWER, Principal, guard, public
from api.errors import GUARDED, responses
from api.routes.common import audit, service
from api.schemas import AuditEventOut, AuditList, AuditVerifyOut, Health, WhoAmI

router = APIRouter(tags=["admin"])


@router.get("/healthz", response_model=Health, dependencies=[public()])
def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, dependencies=[public()],
            responses={503: {"model": Health, "description": "not ready"}})
def readyz(request: Request) -> Response:
    """Readiness: the catalog answers and every vector index is loaded at its current revision."""
    svc = service(request)
    try:
        with svc.store.catalog.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        sizes = {}
        for bank in svc.store.catalog.banks():
            for name in svc.store.index_signals(bank):
                sizes[f"{bank.name}/{name}"] = len(svc.store.indexes.get(bank.id, name))
    except Exception as exc:  # any failure means: do not send traffic here
        return JSONResponse(Health(status="unavailable", detail={"reason": type(exc).__name__})
                            .model_dump(), status_code=503)
    return JSONResponse(Health(status="ready", detail={"indexes": sizes}).model_dump())


@router.get("/metrics", dependencies=[public()], response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
def metrics(request: Request) -> Response:
    """Prometheus metrics: requests, latency, index sizes, queue length (no personal data)."""
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
