"""Cases for their owners: the case's subjects, confirmed matches, network context and timeline.

An investigator lists and reads the cases its key owns (directly or through a
team, :mod:`matcher.review.cases`); another case answers 404 like a missing one.
Cases are made and given owners by admins on the command line
(``reunite cases ...``). The network context of a confirmed match is the ad
network (:mod:`matcher.networks.components`) that holds the ad the matched photo was
indexed in: the other ads linked to it by shared photos, phones, e-mails,
faces or rooms.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel
from sqlalchemy import select

from api import visibility
from api.auth import ADMIN, INVESTIGATOR, Principal, guard
from api.errors import GUARDED, ApiError, responses
from api.http.routes.alerts import AlertOut, alert_out, owned_by
from api.http.routes.common import audit, service
from api.http.routes.networks import _current as link_new_ads
from api.service import Service
from indexer.store.catalog import Bank, Item
from matcher.networks import components as networks
from matcher.review.cases import CaseError, CaseView

router = APIRouter(prefix="/v1/cases", tags=["cases"])
CaseRef = Annotated[str, Path(pattern=r"^C-[0-9a-f]{12}$", description="A case ref (C-...).")]


class CaseSummary(BaseModel):
    ref: str
    title: str
    owner: str
    subjects: list[str]
    created_at: str | None


class CaseList(BaseModel):
    total: int
    cases: list[CaseSummary]


class MatchOut(BaseModel):
    alert: AlertOut
    network: dict[str, Any] | None


class CaseOut(CaseSummary):
    matches: list[MatchOut]
    timeline: list[dict[str, Any]]


def _summary(c: CaseView) -> dict[str, Any]:
    return {"ref": c.ref, "title": c.title, "owner": c.owner, "subjects": c.subjects,
            "created_at": visibility.iso(c.created_at)}


@router.get("", response_model=CaseList, responses=responses(*GUARDED))
def list_cases(request: Request, p: Principal = guard("case.list", ADMIN, INVESTIGATOR)) -> CaseList:
    """The caller's cases (an admin: every case)."""
    svc = service(request)
    audit(request, "cases")
    found = svc.alerts.cases.list(owned_by=owned_by(p))
    return CaseList(total=len(found), cases=[CaseSummary(**_summary(c)) for c in found])


def network_of(svc: Service, query_sha256: str) -> dict[str, Any] | None:
    """The network summary of the ad the matched photo was indexed in (None: not an indexed ad)."""
    with svc.store.catalog.session() as s:
        hits = s.execute(select(Item.subject_id, Bank).join(Bank, Bank.id == Item.bank_id)
                         .where(Item.sha256 == query_sha256, Bank.kind == "ads")).all()
    if hits:  # link what was ingested since the last look, as GET /v1/networks does
        link_new_ads(svc, [bank for _sid, bank in hits])
    for subject_id, bank in hits:
        for net in networks.find_networks(svc.store.catalog, bank, min_size=1, with_candidates=False):
            if any(ad.subject_id == subject_id for ad in net.ads):
                return {"bank": bank.name, **net.summary()}
    return None


@router.get("/{case_ref}", response_model=CaseOut, responses=responses(*GUARDED, 404))
def read_case(case_ref: CaseRef, request: Request,
              p: Principal = guard("case.read", ADMIN, INVESTIGATOR)) -> CaseOut:
    """One case: its confirmed matches (alerts) with their ad networks, and the timeline of every step."""
    svc = service(request)
    audit(request, f"case:{case_ref}")
    try:
        case = svc.alerts.cases.get(case_ref, owned_by=owned_by(p))
    except CaseError as exc:
        raise ApiError(404, exc.code, exc.detail) from None
    views = [v for v in svc.alerts.list(limit=100_000) if v.case_ref == case.ref]
    matches = [MatchOut(alert=alert_out(v), network=network_of(svc, v.query_sha256)) for v in views]
    steps: list[dict[str, Any]] = []
    for v in views:
        for step, at in (("first_seen", v.first_seen_at), ("candidate", v.candidate_at),
                         ("confirmed", v.confirmed_at), ("delivered", v.delivered_at),
                         ("acknowledged", v.acked_at), ("outcome", v.outcome_at)):
            if at is not None:
                steps.append({"at": visibility.iso(at), "alert": v.id, "step": step,
                              "pseudonym": v.pseudonym,
                              **({"outcome": v.outcome} if step == "outcome" else {})})
    steps.sort(key=lambda e: (e["at"], e["alert"]))
    return CaseOut(**_summary(case), matches=matches, timeline=steps)
