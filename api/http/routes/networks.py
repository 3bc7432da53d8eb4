"""Networks: ads of the ads banks grouped by shared photos, faces, phones and e-mails (investigators).

Each request first links what was ingested since the last one, so the
answer is current without a separate job. New images are linked from their
pictures, read back from the photo store where the HTTP ingest kept them (or
from the indexed file, when it is unchanged): the common-template test needs
the picture, and an image linked by its stored hashes alone would let
screenshots of one web page join unrelated ads. One lock per process
serialises that update; reading the networks themselves is a pass over the
link table.
"""

from __future__ import annotations

import threading
import weakref
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel

from api.auth import ADMIN, INVESTIGATOR, Principal, guard
from api.enrollment import PHOTO_ATTR
from api.errors import GUARDED, ApiError, responses
from api.http.routes.common import audit, bank_or_404, service
from api.service import Service
from indexer.crypto import DecryptionFailed, KeyProblem
from indexer.store.catalog import Bank, Item
from indexer.store.photos import bank_namespace
from matcher.networks import components as networks
from matcher.networks.links import ImageReader, Linker, file_reader

router = APIRouter(prefix="/v1/networks", tags=["networks"])
NetworkId = Annotated[str, Path(pattern=r"^N-[0-9a-f]{12}$", description="A network id (N-...).")]
MinStrength = Query(networks.DEFAULT_MIN_STRENGTH, ge=0.0, le=1.0,
                    description="Weakest link that groups ads (0.8: the match tier).")
_update_lock = threading.Lock()
# One Linker per service: it keeps each bank's link-print keys in memory, so an
# update costs the new images only, not a reload of every print.
_linkers: weakref.WeakKeyDictionary[Service, Linker] = weakref.WeakKeyDictionary()


class NetworkOut(BaseModel):
    """One network and its summary (see matcher.networks.components)."""

    id: str
    bank: str
    ads: list[str]
    size: int
    links: int
    evidence: dict[str, int]
    sites: list[str]
    first_seen: str | None
    last_seen: str | None
    growth_7d: int
    phones: list[str]
    emails: list[str]
    locations: list[str]
    photos: int
    candidates: list[dict[str, Any]]


class NetworkList(BaseModel):
    total: int
    networks: list[NetworkOut]


def _ads_banks(svc: Service, name: str | None) -> list[Bank]:
    if name:
        bank = bank_or_404(svc, name)
        if bank.kind != "ads":
            raise ApiError(404, "bank_not_found", "no ads bank by that name")
        return [bank]
    return [b for b in svc.store.catalog.banks() if b.kind == "ads"]


def stored_pictures(svc: Service, bank: Bank) -> ImageReader:
    """Bytes of an ad image: the photo the HTTP ingest stored, else the unchanged indexed file."""
    namespace = bank_namespace(bank.id)
    from_files = file_reader()

    def read(item: Item) -> bytes | None:
        token = (item.attributes or {}).get(PHOTO_ATTR)
        if token:
            try:
                return svc.photos.get(namespace, str(token))
            except (OSError, DecryptionFailed, KeyProblem):
                pass  # gone or unreadable: the file, else the stored hashes
        return from_files(item)

    return read


def _current(svc: Service, banks: list[Bank]) -> None:
    with _update_lock:
        linker = _linkers.get(svc)
        if linker is None:
            linker = _linkers[svc] = Linker(svc.store, svc.matcher)
        for bank in banks:
            linker.update(bank, read=stored_pictures(svc, bank))
    svc.maybe_checkpoint()


@router.get("", response_model=NetworkList, responses=responses(*GUARDED, 404))
def list_networks(request: Request, bank: str | None = Query(None, max_length=120),
                  min_size: int = Query(2, ge=1, le=100_000), min_strength: float = MinStrength,
                  limit: int = Query(100, ge=1, le=1000),
                  _p: Principal = guard("networks.list", ADMIN, INVESTIGATOR)) -> NetworkList:
    """Networks of one ads bank (or of all), largest first."""
    svc = service(request)
    audit(request, f"bank:{bank}" if bank else "networks", min_size=min_size)
    banks = _ads_banks(svc, bank)
    _current(svc, banks)
    found = [NetworkOut(bank=b.name, **net.summary())
             for b in banks for net in networks.find_networks(svc.store.catalog, b, min_size=min_size,
                                                              min_strength=min_strength)]
    found.sort(key=lambda n: (-n.size, n.id))
    return NetworkList(total=len(found), networks=found[:limit])


@router.get("/{network_id}", response_model=NetworkOut, responses=responses(*GUARDED, 404))
def read_network(network_id: NetworkId, request: Request, min_strength: float = MinStrength,
                 _p: Principal = guard("networks.read", ADMIN, INVESTIGATOR)) -> NetworkOut:
    """One network by id (ids stay the same while a network grows)."""
    svc = service(request)
    audit(request, f"network:{network_id}")
    banks = _ads_banks(svc, None)
    _current(svc, banks)
    for bank in banks:
        net = networks.find_network(svc.store.catalog, bank, network_id, min_strength=min_strength)
        if net is not None:
            return NetworkOut(bank=bank.name, **net.summary())
    raise ApiError(404, "network_not_found", "no network by that id")
