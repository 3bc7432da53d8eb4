"""Publishable statistics over HTTP (admins): the ledger, one release, a new release.

``POST /v1/stats`` publishes a differentially private release (it spends privacy
budget, so it is not a GET: a crawler, a prefetch or a retry must never drain
the budget); ``GET /v1/stats`` lists the ledger and the budget left;
``GET /v1/stats/{release_id}`` reprints one release as published, at no cost.
The rules are :mod:`matcher.privacy.dp_stats` and :mod:`matcher.privacy.ledger`, the
same as ``reunite stats``; every call is audited by the request middleware.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.auth import ADMIN, Principal, guard
from api.errors import GUARDED, ApiError, responses
from api.http.routes.common import audit, service
from api.http.schemas import MAX_ID
from matcher.privacy import dp_stats
from matcher.privacy import ledger as privacy_ledger

router = APIRouter(prefix="/v1/stats", tags=["stats"])


Key = Annotated[str, StringConstraints(min_length=1, max_length=dp_stats.MAX_KEY_LENGTH)]


class ReleaseIn(BaseModel):
    """What a release asks for (see README, *Publishable statistics*)."""

    model_config = ConfigDict(extra="forbid")
    epsilon: float = Field(default=1.0, ge=dp_stats.MIN_EPSILON, le=10,
                           description="privacy loss of this release")
    weeks: int = Field(default=12, ge=1, le=dp_stats.MAX_WEEKS)
    until: dt.date | None = Field(default=None, ge=dp_stats.EARLIEST, le=dp_stats.LATEST,
                                  description="last day of the period (default today)")
    contributions: int = Field(default=1, ge=1, le=50, description="rows one subject may add per table")
    threshold: int = Field(default=10, ge=0, le=1000, description="noisy counts below it are suppressed")
    sites: list[Key] = Field(default_factory=list, max_length=dp_stats.MAX_KEYS,
                             description="also publish by site: the hosts to name (public list; every "
                                         "other site, or none, is counted as '(other)')")
    regions: list[Key] = Field(default_factory=list, max_length=dp_stats.MAX_KEYS,
                               description="also publish by region: the regions to name (venue or ad "
                                           "manifest column 'region'; others are '(other)')")


class ReleaseOut(BaseModel):
    id: int
    at: str
    actor: str
    epsilon: float
    spent_after: float
    budget: float
    params: dict[str, Any]
    epsilons: dict[str, float]
    library: str
    mechanisms: dict[str, str]
    suppression: str
    tables: dict[str, Any] | None = None


class LedgerOut(BaseModel):
    budget: float
    spent: float
    left: float
    releases: list[ReleaseOut]


def _budget(request: Request) -> privacy_ledger.Budget:
    svc = service(request)
    try:
        return privacy_ledger.budget(svc.store.catalog, svc.environ)
    except ValueError as exc:
        raise ApiError(500, "bad_budget", str(exc)) from None


@router.get("", response_model=LedgerOut, responses=responses(*GUARDED))
def ledger(request: Request, _p: Principal = guard("stats.ledger", ADMIN)) -> LedgerOut:
    """The releases of this data folder (without their tables) and the privacy budget left."""
    svc = service(request)
    audit(request, "stats")
    left = _budget(request)
    rows = privacy_ledger.entries(svc.store.catalog)
    return LedgerOut(budget=left.total, spent=round(left.spent, 6), left=round(left.left, 6),
                     releases=[ReleaseOut(**privacy_ledger.to_json(r, with_tables=False)) for r in rows])


@router.get("/{release_id}", response_model=ReleaseOut, responses=responses(*GUARDED, 404))
def show(request: Request, release_id: int = Path(ge=1, le=MAX_ID),
         _p: Principal = guard("stats.show", ADMIN)) -> ReleaseOut:
    """One release exactly as it was published: no new noise, no budget spent."""
    svc = service(request)
    audit(request, f"stats:{release_id}")
    row = privacy_ledger.entry(svc.store.catalog, release_id)
    if row is None:
        raise ApiError(404, "release_not_found", "no release by that id in the ledger")
    return ReleaseOut(**privacy_ledger.to_json(row))


@router.post("", status_code=201, response_model=ReleaseOut, responses=responses(*GUARDED, 409))
def release(body: ReleaseIn, request: Request, p: Principal = guard("stats.release", ADMIN)) -> ReleaseOut:
    """Publish a differentially private release and record it; 409 when over the budget."""
    svc = service(request)
    audit(request, "stats", epsilon=body.epsilon, weeks=body.weeks, contributions=body.contributions,
          threshold=body.threshold, sites=len(body.sites), regions=len(body.regions))
    params = dp_stats.ReleaseParams(epsilon=body.epsilon, weeks=body.weeks, until=body.until,
                                    contributions=body.contributions, threshold=body.threshold,
                                    sites=tuple(body.sites), regions=tuple(body.regions))
    try:
        row = privacy_ledger.publish(svc.store.catalog, params, p.name, svc.environ)
    except privacy_ledger.OverBudget as exc:
        raise ApiError(409, exc.code, str(exc)) from None
    except ValueError as exc:
        raise ApiError(422, "bad_parameters", str(exc)) from None
    audit(request, f"stats:{row.id}", release=row.id, spent=round(row.epsilon, 6),
          spent_after=round(row.spent_after, 6))
    return ReleaseOut(**privacy_ledger.to_json(row))
