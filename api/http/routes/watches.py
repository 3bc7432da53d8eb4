"""A watcher bank's watched ads banks over HTTP: read and set them (admin), as `reunite watches` does.

``PUT /v1/banks/{bank}/watches`` calls :func:`api.watching.set_watches`, the
one application-layer path the CLI takes too: the same checks as a policy
given at creation and one ``bank.watches`` audit event naming the bank and
how many banks it now watches (the request itself is recorded by the
middleware as every request is). Who watches what decides which new ads are
matched against a family's missing person, so only admins read or change it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from api.application import Actor
from api.auth import ADMIN, Principal, guard
from api.errors import GUARDED, ApiError, responses
from api.http.routes.common import audit, bank_or_404, service
from indexer.store.catalog import Bank

router = APIRouter(prefix="/v1/banks", tags=["banks"])
BankName = Annotated[str, Path(min_length=1, max_length=120, description="The bank's name.")]
WatchedName = Annotated[str, Field(min_length=1, max_length=120, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")]


class WatchesIn(BaseModel):
    """``watches``: the ads banks to watch; ``null`` for every ads bank (the default), ``[]`` for none."""

    model_config = ConfigDict(extra="forbid")
    watches: list[WatchedName] | None = Field(max_length=200)


class WatchesOut(BaseModel):
    bank: str
    kind: str
    watches: list[str] | None = Field(
        description="The policy: the ads banks named (null: every ads bank; only watcher banks have one).")
    watching: list[str] = Field(description="The ads banks it watches now (names that are no bank yet "
                                            "watch nothing).")
    watched_by: list[str] = Field(description="For an ads bank: the banks that watch it.")


def watches_out(request: Request, bank: Bank) -> WatchesOut:
    from matcher.search.watch import WATCHES_KEY, watched_by, watchers_of

    catalog = service(request).store.catalog
    stored = (bank.policy or {}).get(WATCHES_KEY)
    return WatchesOut(bank=bank.name, kind=bank.kind, watches=None if stored is None else list(stored),
                      watching=[b.name for b in watched_by(catalog, bank)],
                      watched_by=[b.name for b in watchers_of(catalog, bank)])


@router.get("/{bank}/watches", response_model=WatchesOut, responses=responses(*GUARDED, 404))
def read_watches(bank: BankName, request: Request,
                 _p: Principal = guard("bank.watches.read", ADMIN)) -> WatchesOut:
    audit(request, f"bank:{bank}")
    return watches_out(request, bank_or_404(service(request), bank))


@router.put("/{bank}/watches", response_model=WatchesOut, responses=responses(*GUARDED, 404, 422))
def set_bank_watches(bank: BankName, body: WatchesIn, request: Request,
                     principal: Principal = guard("bank.watches.set", ADMIN)) -> WatchesOut:
    from api.watching import WatchPolicyError, set_watches

    svc = service(request)
    audit(request, f"bank:{bank}", watches="all" if body.watches is None else len(body.watches))
    try:
        updated = set_watches(svc, Actor(principal.name, principal.role), bank, body.watches, via="http")
    except WatchPolicyError as exc:
        if exc.code == "unknown_bank":
            raise ApiError(404, "bank_not_found", str(exc)) from None
        raise ApiError(422, "bad_policy", str(exc)) from None
    return watches_out(request, updated)
