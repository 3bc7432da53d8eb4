"""Banks: create (admin) and list / read (every role that works with references)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.auth import ADMIN, INGEST, INVESTIGATOR, REVIEWER, Principal, guard
from api.errors import GUARDED, ApiError, responses
from api.http.routes.common import audit, bank_or_404, service
from api.http.schemas import BankIn, BankList, BankOut
from api.service import Service
from indexer.crypto import KEY_ENV
from indexer.signals import base as signals
from indexer.store.catalog import Bank
from indexer.store.photos import needs_encryption
from indexer.text import with_article

router = APIRouter(prefix="/v1/banks", tags=["banks"])
READERS = (ADMIN, INVESTIGATOR, REVIEWER, INGEST)


def bank_out(svc: Service, bank: Bank) -> BankOut:
    return BankOut(name=bank.name, kind=bank.kind, policy=dict(bank.policy or {}),
                   items=svc.store.catalog.count_items(bank.id),
                   created_at=bank.created_at.isoformat() if bank.created_at else None)


@router.post("", status_code=201, response_model=BankOut, responses=responses(*GUARDED, 409))
def create_bank(body: BankIn, request: Request,
                _p: Principal = guard("bank.create", ADMIN)) -> BankOut:
    svc = service(request)
    audit(request, f"bank:{body.name}", kind=body.kind)
    policy = body.policy.model_dump(exclude_none=True, mode="json")
    if needs_encryption(body.kind, policy) and svc.cipher is None:
        raise ApiError(409, "encryption_key_required",
                       f"{with_article(body.kind)} bank is encrypted at rest: "
                       f"start the service with {KEY_ENV} set")
    try:  # watch keys (matcher/search/watch.py): `watches` on watchers, `keep_photos` on ads banks
        from matcher.search.watch import check_policy
        check_policy(body.kind, policy)
    except ValueError as exc:
        raise ApiError(422, "bad_policy", str(exc)) from None
    if body.policy.signals:
        try:
            signals.select(body.policy.signals)
        except KeyError as exc:
            raise ApiError(422, "unknown_signal", str(exc.args[0])) from None
    if svc.store.catalog.bank(body.name) is not None:
        raise ApiError(409, "bank_exists", "a bank by that name already exists")
    try:
        bank = svc.store.catalog.ensure_bank(body.name, body.kind, policy)
    except ValueError as exc:
        raise ApiError(409, "bank_exists", str(exc)) from None
    return bank_out(svc, bank)


@router.get("", response_model=BankList, responses=responses(*GUARDED))
def list_banks(request: Request, _p: Principal = guard("bank.list", *READERS)) -> BankList:
    svc = service(request)
    return BankList(banks=[bank_out(svc, b) for b in svc.store.catalog.banks()])


@router.get("/{bank}", response_model=BankOut, responses=responses(*GUARDED, 404))
def read_bank(bank: str, request: Request, _p: Principal = guard("bank.read", *READERS)) -> BankOut:
    svc = service(request)
    audit(request, f"bank:{bank}")
    return bank_out(svc, bank_or_404(svc, bank))
