"""``GET /v1/search?phone=|email=|handle=``: the ads and photos that carry a contact (investigators).

The same search as ``reunite search`` (:mod:`matcher.search.contacts`), over
ads banks only, after linking what was ingested since the last request (the
linking step reads the contacts painted on new photos). The contact is
audited by a digest, never in clear.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from api.auth import ADMIN, INVESTIGATOR, Principal, guard
from api.errors import GUARDED, ApiError, responses
from api.http.routes.common import audit, service
from api.http.routes.networks import _ads_banks, _current
from matcher.networks import contacts
from matcher.search import contacts as contact_search

router = APIRouter(prefix="/v1/search", tags=["search"])


class AdHitOut(BaseModel):
    """One ad carrying the contact: in its text columns, on its photos (box and text read), or both."""

    bank: str
    ad: str
    subject: str
    in_text: bool
    photos: list[dict[str, Any]]


class SearchOut(BaseModel):
    kind: str
    value: str
    total: int
    ads: list[AdHitOut]


@router.get("", response_model=SearchOut, responses=responses(*GUARDED, 404, 422))
def search_contact(request: Request,
                   phone: str | None = Query(None, max_length=64),
                   email: str | None = Query(None, max_length=254),
                   handle: str | None = Query(None, max_length=120),
                   bank: str | None = Query(None, max_length=120),
                   region: str = Query(contacts.DEFAULT_REGION, min_length=2, max_length=2),
                   _p: Principal = guard("search.contact", ADMIN, INVESTIGATOR)) -> SearchOut:
    """Ads (and their photos, with the box the text was read in) carrying one phone, e-mail or handle."""
    given = [(k, v) for k, v in (("phone", phone), ("email", email), ("handle", handle)) if v is not None]
    if len(given) != 1:
        raise ApiError(422, "validation_error", "give exactly one of phone, email, handle")
    kind, raw = given[0]
    try:
        region = contacts.check_region(region)
        value = contact_search.normalise_query(kind, raw, region)
    except ValueError as exc:
        raise ApiError(422, "bad_contact", str(exc)) from None
    audit(request, f"contact:{kind}", ref=contact_search.query_ref(kind, value))
    svc = service(request)
    banks = _ads_banks(svc, bank)
    _current(svc, banks)
    hits = contact_search.search(svc.store.catalog, kind, value, banks)
    audit(request, ads=len(hits))
    return SearchOut(kind=kind, value=value, total=len(hits), ads=[AdHitOut(**h.to_json()) for h in hits])
